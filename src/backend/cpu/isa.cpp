#include "backend/cpu/isa.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "core/log.h"
#include "gptq/error.h"

namespace gptq::backend {
namespace {

// -1 until the first call of active_isa(); then the Isa as int.
std::atomic<int> g_isa{-1};

// What CPUID and XCR0 report, read once.
struct CpuFeatures {
  bool avx512 = false;       // F, BW, VL, DQ, VNNI, and the OS saves opmask/zmm state
  bool avx512_bf16 = false;  // AVX512-BF16 (with avx512)
  bool amx = false;          // AMX-TILE, -BF16, -INT8 and the OS enabled XTILECFG/XTILEDATA
};

#if defined(__x86_64__) || defined(__i386__)
uint64_t read_xcr0() {
  uint32_t lo = 0, hi = 0;
  // xgetbv with ECX = 0; the caller has checked OSXSAVE.
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t{hi} << 32) | lo;
}
#endif

CpuFeatures read_features() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid(1, a, b, c, d);
  const bool osxsave = (c >> 27) & 1u;
  if (!osxsave) return f;
  const uint64_t xcr0 = read_xcr0();
  // SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM state (bits 1, 2, 5, 6, 7).
  const bool os_zmm = (xcr0 & 0xE6u) == 0xE6u;
  // XTILECFG and XTILEDATA (bits 17, 18).
  const bool os_tiles = ((xcr0 >> 17) & 3u) == 3u;
  __cpuid_count(7, 0, a, b, c, d);
  const bool f_ = (b >> 16) & 1u, dq = (b >> 17) & 1u, bw = (b >> 30) & 1u, vl = (b >> 31) & 1u;
  const bool vnni = (c >> 11) & 1u;
  const bool amx_bf16 = (d >> 22) & 1u, amx_tile = (d >> 24) & 1u, amx_int8 = (d >> 25) & 1u;
  const unsigned max_sub = a;
  bool bf16 = false;
  if (max_sub >= 1) {
    __cpuid_count(7, 1, a, b, c, d);
    bf16 = (a >> 5) & 1u;
  }
  f.avx512 = os_zmm && f_ && dq && bw && vl && vnni;
  f.avx512_bf16 = f.avx512 && bf16;
  f.amx = f.avx512_bf16 && os_tiles && amx_tile && amx_bf16 && amx_int8;
#endif
  return f;
}

const CpuFeatures& features() {
  static const CpuFeatures f = read_features();
  return f;
}

Isa detect() {
  const char* env = std::getenv("GPTQ_FORCE_ISA");
  if (env != nullptr && *env != '\0') {
    const Isa isa = isa_from_env_value(env);
    core::log_debug("CPU kernels: {} (forced by GPTQ_FORCE_ISA)", isa_name(isa));
    return isa;
  }
  Isa isa = Isa::kScalar;
  for (Isa c : {Isa::kAmx, Isa::kAvx512Bf16, Isa::kAvx512, Isa::kAvxVnni, Isa::kAvx2}) {
    if (cpu_supports(c)) {
      isa = c;
      break;
    }
  }
  core::log_debug("CPU kernels: {}", isa_name(isa));
  return isa;
}

const char* lacks_message(Isa isa) {
  switch (isa) {
    case Isa::kAvxVnni:
      return " but this CPU lacks AVX2, FMA, F16C or AVX-VNNI";
    case Isa::kAvx512:
      return " but this CPU (or OS) lacks AVX2, FMA, F16C or AVX-512 F/BW/VL/DQ/VNNI";
    case Isa::kAvx512Bf16:
      return " but this CPU (or OS) lacks AVX2, FMA, F16C or AVX-512 F/BW/VL/DQ/VNNI/BF16";
    case Isa::kAmx:
      return " but this CPU (or OS) lacks AVX-512 F/BW/VL/DQ/VNNI/BF16 or AMX-TILE/BF16/INT8 "
             "(or the OS does not enable the tile state)";
    default:
      return " but this CPU lacks AVX2, FMA or F16C";
  }
}

}  // namespace

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvxVnni:
      return "avxvnni";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx512Bf16:
      return "avx512bf16";
    case Isa::kAmx:
      return "amx";
  }
  return "?";
}

bool cpu_supports(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
#if defined(__x86_64__) || defined(__i386__)
      // The AVX2 kernels also use FMA (vfmadd) and F16C (vcvtph2ps for the fp16 scales); every
      // CPU with AVX2 that we know of has both, but a hypervisor may mask them separately.
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
#else
      return false;
#endif
    case Isa::kAvxVnni:
#if defined(__x86_64__) || defined(__i386__)
      return cpu_supports(Isa::kAvx2) && __builtin_cpu_supports("avxvnni");
#else
      return false;
#endif
    case Isa::kAvx512:
      return cpu_supports(Isa::kAvx2) && features().avx512;
    case Isa::kAvx512Bf16:
      return cpu_supports(Isa::kAvx2) && features().avx512_bf16;
    case Isa::kAmx:
      // CPUID and XCR0 only: Linux also wants a per-process permission for the tile data
      // state, which request_amx_tile_permission() asks for when an AMX kernel first runs.
      return cpu_supports(Isa::kAvx2) && features().amx;
  }
  return false;
}

bool request_amx_tile_permission() {
  static std::once_flag once;
  static bool granted = false;
  std::call_once(once, [] {
    if (!features().amx) return;
#if defined(__linux__) && defined(__x86_64__)
    constexpr long kArchReqXcompPerm = 0x1023;  // ARCH_REQ_XCOMP_PERM (asm/prctl.h)
    constexpr long kXfeatureXtiledata = 18;     // XFEATURE_XTILEDATA
    granted = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
    if (!granted) core::log_debug("AMX: the kernel refused the tile data permission");
#endif
  });
  return granted;
}

Isa isa_from_env_value(std::string_view value) {
  Isa isa;
  if (value == "scalar") {
    isa = Isa::kScalar;
  } else if (value == "avx2") {
    isa = Isa::kAvx2;
  } else if (value == "avxvnni") {
    isa = Isa::kAvxVnni;
  } else if (value == "avx512") {
    isa = Isa::kAvx512;
  } else if (value == "avx512bf16") {
    isa = Isa::kAvx512Bf16;
  } else if (value == "amx") {
    isa = Isa::kAmx;
  } else {
    throw Error(ErrorKind::kArgument,
                "GPTQ_FORCE_ISA='" + std::string(value) +
                    "' is not a known instruction set (expected scalar, avx2, avxvnni, avx512, "
                    "avx512bf16 or amx)");
  }
  if (!cpu_supports(isa)) {
    throw Error(ErrorKind::kUnsupported, "GPTQ_FORCE_ISA=" + std::string(value) + lacks_message(isa));
  }
  return isa;
}

Isa active_isa() {
  int v = g_isa.load(std::memory_order_relaxed);
  if (v < 0) {
    // Racing first calls all compute the same answer; the first store wins.
    const int detected = static_cast<int>(detect());
    int expected = -1;
    g_isa.compare_exchange_strong(expected, detected);
    v = g_isa.load();
  }
  return static_cast<Isa>(v);
}

void set_isa_for_testing(Isa isa) {
  if (!cpu_supports(isa)) {
    throw Error(ErrorKind::kUnsupported, "cannot select the " + std::string(isa_name(isa)) +
                                             " kernels: this CPU lacks them");
  }
  g_isa.store(static_cast<int>(isa));
}

}  // namespace gptq::backend
