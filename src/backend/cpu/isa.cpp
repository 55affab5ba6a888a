#include "backend/cpu/isa.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include "core/log.h"
#include "gptq/error.h"

namespace gptq::backend {
namespace {

// -1 until the first call of active_isa(); then the Isa as int.
std::atomic<int> g_isa{-1};

Isa detect() {
  const char* env = std::getenv("GPTQ_FORCE_ISA");
  if (env != nullptr && *env != '\0') {
    const Isa isa = isa_from_env_value(env);
    core::log_debug("CPU kernels: {} (forced by GPTQ_FORCE_ISA)", isa_name(isa));
    return isa;
  }
  const Isa isa = cpu_supports(Isa::kAvxVnni) ? Isa::kAvxVnni
                  : cpu_supports(Isa::kAvx2)  ? Isa::kAvx2
                                              : Isa::kScalar;
  core::log_debug("CPU kernels: {}", isa_name(isa));
  return isa;
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
  }
  return false;
}

Isa isa_from_env_value(std::string_view value) {
  Isa isa;
  if (value == "scalar") {
    isa = Isa::kScalar;
  } else if (value == "avx2") {
    isa = Isa::kAvx2;
  } else if (value == "avxvnni") {
    isa = Isa::kAvxVnni;
  } else {
    throw Error(ErrorKind::kArgument,
                "GPTQ_FORCE_ISA='" + std::string(value) +
                    "' is not a known instruction set (expected scalar, avx2 or avxvnni)");
  }
  if (!cpu_supports(isa)) {
    throw Error(ErrorKind::kUnsupported,
                "GPTQ_FORCE_ISA=" + std::string(value) +
                    (isa == Isa::kAvxVnni ? " but this CPU lacks AVX2, FMA, F16C or AVX-VNNI"
                                          : " but this CPU lacks AVX2, FMA or F16C"));
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
