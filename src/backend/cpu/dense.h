// Dense fp32 matrix-vector product for decode steps. OpenBLAS's sgemv runs on its own pthreads,
// which then compete for the cores with our OpenMP threads while they spin between parallel
// regions; a decode step that mixes the two loses more than half its speed on two cores. This
// one runs on the same OpenMP threads as the quantized kernels.
#pragma once

#include <cstdint>

namespace gptq::backend {

// y[n] = W[n, k] x[k] (row-major W). Split over rows, so the result does not depend on the
// thread count.
void dense_gemv(const float* w, int64_t n, int64_t k, const float* x, float* y);

}  // namespace gptq::backend
