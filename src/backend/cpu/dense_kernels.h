// Internal interface between dense.cpp (checks, dispatch, threading) and the per-ISA kernels of
// 16-bit dense weights.
//
// Included by dense_avx2.cpp, which is compiled with -mavx2 -mfma -mf16c: like qgemm_kernels.h it
// holds declarations only. An inline function or template defined here would be emitted by both
// an AVX2 and a baseline translation unit, and the linker could keep the AVX2 copy for everyone.
#pragma once

#include <cstdint>

namespace gptq::backend::detail {

// The two 16-bit float formats, as the kernels see them.
enum class Half : int {
  kBF16 = 0,  // bfloat16: the top half of an fp32 (widening is a 16-bit left shift)
  kF16 = 1,   // IEEE binary16 (widening is vcvtph2ps, or core::fp16_to_fp32)
};

// Rows [r0, r1) of y = W x, W [*, k] row-major 16-bit, x [k], fp32 accumulation. Each row's result
// depends only on that row and k (not on r0, r1), so any split of the rows gives the same y.
void dense16_rows_scalar(Half h, const uint16_t* w, int64_t k, const float* x, int64_t r0,
                         int64_t r1, float* y);
void dense16_rows_avx2(Half h, const uint16_t* w, int64_t k, const float* x, int64_t r0,
                       int64_t r1, float* y);

// dst[i] = widen(src[i]), i < count.
void widen16_scalar(Half h, const uint16_t* src, int64_t count, float* dst);
void widen16_avx2(Half h, const uint16_t* src, int64_t count, float* dst);

}  // namespace gptq::backend::detail
