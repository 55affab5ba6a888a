// Instruction-set selection for the CPU kernels. The set is chosen once, on first use, from CPU
// detection and the environment variable GPTQ_FORCE_ISA (scalar | avx2 | avxvnni); every kernel dispatcher
// reads active_isa() per call, so tests may switch paths inside one process.
#pragma once

#include <string_view>

namespace gptq::backend {

enum class Isa {
  kScalar,  // plain C++ reference kernels, any x86-64 (or any CPU at all)
  kAvx2,    // AVX2 + FMA + F16C (Haswell and later, Zen and later)
  kAvxVnni, // kAvx2 plus AVX-VNNI (Alder Lake, Sapphire Rapids, Zen 5 and later): the AVX2
            // kernels, except the int16 decode GEMV, which uses vpdpwssd
};

// "scalar", "avx2" or "avxvnni".
std::string_view isa_name(Isa isa);

// True when this CPU can run the kernels of `isa`.
bool cpu_supports(Isa isa);

// True for the ISAs that run the AVX2 kernels (kAvx2 and its supersets).
inline bool uses_avx2(Isa isa) { return isa != Isa::kScalar; }

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
