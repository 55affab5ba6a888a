// gptq/runtime.h: which kernels OpenBLAS chose, and the OPENBLAS_CORETYPE that fixes a fallback.
#include <cstdlib>
#include <string>

#include "backend/cpu/isa.h"
#include "core/gemm.h"
#include "gptq/runtime.h"

namespace gptq {

std::string blas_kernels() { return core::blas_core_name(); }

std::string blas_coretype_fix() {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return {};  // the user's choice stands
  using backend::Isa;
  return core::blas_coretype_for(core::blas_core_name(), backend::cpu_supports(Isa::kAvx2),
                                 backend::cpu_supports(Isa::kAvx512));
}

}  // namespace gptq
