// gptq/runtime.h: which kernels OpenBLAS runs (core/gemm.cpp corrects a fallback at load).
#include <string>

#include "core/gemm.h"
#include "gptq/runtime.h"

namespace gptq {

std::string blas_kernels() { return core::blas_core_name(); }

std::string blas_kernels_replaced() { return core::blas_core_replaced(); }

}  // namespace gptq
