// Instruction-set selection for the CPU kernels. The set is chosen once, on first use, from CPU
// detection and the environment variable GPTQ_FORCE_ISA (scalar | avx2 | avxvnni | avx512 |
// avx512bf16 | amx); every kernel dispatcher reads active_isa() per call, so tests may switch
// paths inside one process.
#pragma once

#include <string_view>

namespace gptq::backend {

enum class Isa {
  kScalar,      // plain C++ reference kernels, any x86-64 (or any CPU at all)
  kAvx2,        // AVX2 + FMA + F16C (Haswell and later, Zen and later)
  kAvxVnni,     // kAvx2 plus AVX-VNNI (Alder Lake, Sapphire Rapids, Zen 5 and later): the AVX2
                // kernels, except the int16 decode GEMV, which uses vpdpwssd
  kAvx512,      // kAvx2 plus AVX-512 F, BW, VL, DQ and VNNI (Ice Lake, Sapphire Rapids, Zen 4 and
                // later; the OS must save the zmm and mask state). The quantized prefill GEMM
                // and the int16 decode GEMV are the AVX-512 ones: for 2/4/8 bits an int16 GEMM
                // with vpdpwssd (qgemv_avx512.cpp, each row equal to its decode result; 1.5x the
                // fp32 GEMM on an Intel AVX-512 VM), for 3 bits the fp32 one (qgemm_avx512.cpp,
                // equal to the AVX2 GEMM); the decode GEMV on zmm (+5-14% decode there, equal to
                // the AVX2 one); every other kernel is the AVX2 one
  kAvx512Bf16,  // kAvx512 plus AVX512-BF16 (vdpbf16ps; Cooper Lake, Sapphire Rapids, Zen 4):
                // the kAvx512 kernels, and bf16 calibration (the Hessian) with vdpbf16ps
  kAmx,         // kAvx512Bf16 plus AMX-TILE, AMX-BF16 and AMX-INT8 with the tile state enabled
                // in XCR0 (Sapphire Rapids and later): the kAvx512Bf16 kernels, except that
                // prefill GEMMs of 32 rows or more run on the tiles (qgemm_amx.cpp for GPTQ
                // linears, dense_amx.cpp for fp32 ones, the calibration forward passes
                // included), with x and W split in two bf16 parts each (~1e-5 relative of the
                // fp32 kernels). Those kernels call request_amx_tile_permission() first.
};

// "scalar", "avx2", "avxvnni", "avx512", "avx512bf16" or "amx".
std::string_view isa_name(Isa isa);

// True when this CPU (and OS) can run the kernels of `isa`.
bool cpu_supports(Isa isa);

// True for the ISAs that run the AVX2 kernels (kAvx2 and its supersets; the AVX-512 levels
// take the AVX-512 prefill GEMM and decode GEMV instead, uses_avx512).
inline bool uses_avx2(Isa isa) { return isa != Isa::kScalar; }
// True for the ISAs whose quantized prefill GEMM and int16 decode GEMV are the AVX-512 ones
// (qgemm_avx512.cpp, qgemv_avx512.cpp).
inline bool uses_avx512(Isa isa) { return isa == Isa::kAvx512 || isa == Isa::kAvx512Bf16 || isa == Isa::kAmx; }
// True for the ISAs with vdpbf16ps (bf16 products with fp32 sums).
inline bool has_bf16(Isa isa) { return isa == Isa::kAvx512Bf16 || isa == Isa::kAmx; }

// Asks Linux for permission to use the AMX tile data state in this process
// (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)), once; later calls return the first
// answer. An AMX kernel must call it before its first tile instruction (without the permission
// the instruction raises SIGILL). False when the CPU lacks AMX or the kernel refuses.
bool request_amx_tile_permission();

// Parses a GPTQ_FORCE_ISA value. Throws Error(kArgument) for an unknown value and
// Error(kUnsupported) for an ISA this CPU lacks; both messages name the variable and the value.
Isa isa_from_env_value(std::string_view value);

// The ISA the kernels use. The first call detects the CPU (or applies GPTQ_FORCE_ISA) and may
// throw as isa_from_env_value does; later calls return the cached choice.
Isa active_isa();

// Overrides the choice for the rest of the process (tests run both paths in one process).
// Throws Error(kUnsupported) when the CPU cannot run `isa`.
void set_isa_for_testing(Isa isa);

}  // namespace gptq::backend
