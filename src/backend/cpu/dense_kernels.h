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

// ---- AMX-BF16 (dense_amx.cpp): the prefill/calibration GEMM for fp32 weights ----
// fp32 W [n, k] is split once into bf16 parts hi = bf16(w) and, unless every weight is a bf16
// value (weights read from a bf16 checkpoint are), lo = bf16(w - hi); x likewise per call. The
// kernel sums x_hi w_hi + x_lo w_hi (+ x_hi w_lo) with tdpbf16ps: each product within ~2^-16 of
// x w relative (qgemm_amx.cpp has the argument), fp32 sums. Columns never mix, so the result does
// not depend on the thread count.
//
// Panel layout: [ceil(n / 16) column tiles][ceil(k / 32) steps][parts][16 input pairs][16 columns]
// uint32, each holding the bf16 part of inputs 2q (low half) and 2q + 1 of its column; columns
// past n and inputs past k are zero.
struct AmxDenseView {
  int64_t n = 0, k = 0;
  int parts = 1;                      // 1: W exactly bf16; 2: hi and lo
  const uint32_t* panels = nullptr;
};
inline constexpr int64_t kAmxDenseMinRows = 32;  // below this the sgemm path is kept
// uint32 elements of the panels of an [n, k] W with `parts` parts.
int64_t amx_dense_panel_elems(int64_t n, int64_t k, int parts);
// Fills panels (amx_dense_panel_elems of them) from w [n, k].
void amx_dense_pack(const float* w, int64_t n, int64_t k, int parts, uint32_t* panels);
// bf16 elements of scratch that amx_dense_gemm needs for m rows.
int64_t amx_dense_scratch_elems(int64_t m, int64_t k);
// y [m, n] = x [m, k] W^T, m >= 1; the caller holds the tile permission
// (request_amx_tile_permission). Overwrites y.
void amx_dense_gemm(const AmxDenseView& w, const float* x, int64_t m, float* y, uint16_t* xa);

}  // namespace gptq::backend::detail
