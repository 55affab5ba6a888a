// Internal interface between ops.cpp (dispatch) and the per-ISA kernels of the executor's
// element-wise and row ops. Declarations only (see dense_kernels.h for why): ops_avx2.cpp is
// compiled with -mavx2 -mfma.
#pragma once

#include <cstdint>

namespace gptq::backend::detail {

// Rows of n: y = x / sqrt(mean(x^2) + eps) * (offset + w). Sums of squares in double.
void rms_norm_scalar(const float* x, const float* w, float offset, int64_t rows, int64_t n, float eps, float* y);
void rms_norm_avx2(const float* x, const float* w, float offset, int64_t rows, int64_t n, float eps, float* y);
// Rows of n: y = (x - mean) / sqrt(var + eps) * w + b (b may be null). Moments in double.
void layer_norm_scalar(const float* x, const float* w, const float* b, int64_t rows, int64_t n, float eps, float* y);
void layer_norm_avx2(const float* x, const float* w, const float* b, int64_t rows, int64_t n, float eps, float* y);
void add_scalar(float* x, const float* y, int64_t n);
void add_avx2(float* x, const float* y, int64_t n);
void scale_scalar(float* x, int64_t n, float s);
void scale_avx2(float* x, int64_t n, float s);
// Softmax over s[lo, hi) in place (max subtracted first); the rest of the row is left as is.
// The AVX2 kernel's exp is a degree-6 polynomial after range reduction by ln 2 (within 2 ulp of
// std::exp), its sum in eight float lanes.
void softmax_scalar(float* s, int64_t lo, int64_t hi);
void softmax_avx2(float* s, int64_t lo, int64_t hi);
// One head vector v of a rotation: for j < half, the pair (a, b) = (v[lo(j)], v[hi(j)]) becomes
// (a c - b s, b c + a s); lo/hi are (j, j + half) when interleaved is false, else (2j, 2j+1).
void rotate_scalar(float* v, const float* cs, const float* sn, int64_t half, bool interleaved);
void rotate_avx2(float* v, const float* cs, const float* sn, int64_t half, bool interleaved);

}  // namespace gptq::backend::detail
