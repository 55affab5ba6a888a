// Dense matrix products for the unquantized linears, embeddings and lm_head.
//
// fp32 weights: dense_gemv below. OpenBLAS's sgemv runs on its own pthreads, which then compete
// for the cores with the library's pool threads while they spin between parallel loops; a decode step
// that mixes the two loses more than half its speed on two cores. This one runs on the same
// pool threads as the quantized kernels.
//
// 16-bit weights (bf16 or fp16, as checkpoints store them): a decode step is bound by the bytes of
// weights it reads, so keeping W in 16 bits and widening each element in registers halves the
// time of a dense GEMV against fp32 weights. Accumulation is fp32 throughout.
#pragma once

#include <cstdint>

#include "gptq/tensor.h"

namespace gptq::backend {

// y[n] = W[n, k] x[k] (row-major W). Split over rows, so the result does not depend on the
// thread count.
void dense_gemv(const float* w, int64_t n, int64_t k, const float* x, float* y);

// y[m, n] = x[m, k] W^T with fp32 W [n, k] row-major, any m >= 0: dense_gemv for m == 1,
// OpenBLAS sgemm (from the calling thread) otherwise. y must not alias x.
void dense_gemm(const float* w, int64_t n, int64_t k, const float* x, int64_t m, float* y);

// y[i, j] += bias[j] for i < m, j < n (the bias of a linear layer).
void add_bias(float* y, const float* bias, int64_t m, int64_t n);

// y[n] = W[n, k] x[k] with W [n, k] row-major in `dtype` (DType::kBF16 or DType::kF16, raw bits),
// x and y fp32, fp32 accumulation. Runs on the library's pool threads, split over contiguous rows, so the
// result does not depend on the thread count. Uses the kernels of active_isa(). Throws
// Error(kArgument) for another dtype or a negative size. y must not alias x.
void dense16_gemv(DType dtype, const uint16_t* w, int64_t n, int64_t k, const float* x, float* y);

// y[m, n] = x[m, k] W^T with W as for dense16_gemv, any m >= 0. m == 1 is dense16_gemv; larger m
// widens W to fp32 a panel of rows at a time and calls OpenBLAS sgemm on each panel from the
// calling thread. The result matches sgemm on the whole widened W to fp32 rounding, usually
// bit for bit; not always, because OpenBLAS may pick another kernel (another order of additions)
// for a small panel than for the whole matrix. Throws as dense16_gemv does.
void dense16_gemm(DType dtype, const uint16_t* w, int64_t n, int64_t k, const float* x, int64_t m,
                  float* y);

// dst[i] = src[i] widened to fp32 (exact) for i < count; dtype as above. Single-threaded.
void widen16(DType dtype, const uint16_t* src, int64_t count, float* dst);

}  // namespace gptq::backend
