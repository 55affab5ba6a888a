// AVX-512 prefill GEMM for 3-bit GPTQ linears in the packed layout of qgemm_kernels.h (2-, 4- and
// 8-bit ones take the int16 prefill of qgemv_avx512.cpp at these levels).
//
// Compiled with the AVX-512 F/BW/VL/DQ/VNNI flags (src/CMakeLists.txt); internal linkage for
// everything but the entry point, as in qgemm_avx2.cpp (whose notes on shared inline code apply).
//
// The loop nest and the weight tiles are the AVX2 kernel's (qgemm_dequant_avx2.inc: 16 columns x
// 256 inputs dequantized to fp32, bit for bit the reference weights); the microkernel holds one
// row's 16 columns in one zmm instead of two ymm, and with 32 registers runs 12 rows per pass
// instead of 6. Each output still sums x[k] * W[k] by one fused multiply-add per input, in input
// order, from zero per 256-input chunk, and the chunks are added to y in order: the results equal
// the AVX2 kernel's bit for bit, whatever the ISA or the thread count.

#include <immintrin.h>

#include <cstdint>
#include <utility>

#include "backend/cpu/qgemm_kernels.h"
#include "core/parallel.h"

namespace gptq::backend::detail {
namespace {

#include "backend/cpu/qgemm_common_avx2.inc"
#include "backend/cpu/qgemm_dequant_avx2.inc"

constexpr int kMr512 = 12;  // rows per microkernel call
using kRowSeq = std::make_integer_sequence<int, kMr512>;

// y[0:MR, 0:16 or 32] (+)= x[0:MR, 0:len] * [ta | tb][0:len, ...]: one tile (TWO false: 16
// columns, for a thread's odd last pair) or two (32 columns: pairs p and p+1). With two, 24
// accumulators, and each broadcast of x feeds two FMAs: 14 loads per 24 FMAs instead of 13 per
// 12 (one tile is load-bound on Sapphire Rapids' two 512-bit load ports). x rows ldx apart, y
// rows ldy apart; named accumulators (see qgemm_avx2.cpp on why not an array).
template <int MR, bool TWO>
void microkernel512(const float* x, int64_t ldx, const float* ta, const float* tb, int64_t len, float* y,
                    int64_t ldy, bool accumulate) {
  static_assert(MR >= 1 && MR <= 12);
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
  __m512 a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
  [[maybe_unused]] __m512 b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0;
  [[maybe_unused]] __m512 b6 = a0, b7 = a0, b8 = a0, b9 = a0, b10 = a0, b11 = a0;
  if (accumulate) {
    for (int r = 0; r < MR; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(y + r * ldy), _MM_HINT_T0);
      if constexpr (TWO) _mm_prefetch(reinterpret_cast<const char*>(y + r * ldy + kPairN), _MM_HINT_T0);
    }
  }
#define GPTQ_ROW(i)                                         \
  if constexpr (MR > i) {                                   \
    const __m512 xi = _mm512_set1_ps(x[(i) * ldx + k]);     \
    a##i = _mm512_fmadd_ps(xi, wa, a##i);                   \
    if constexpr (TWO) b##i = _mm512_fmadd_ps(xi, wb, b##i); \
  }
  for (int64_t k = 0; k < len; ++k) {
    const __m512 wa = _mm512_load_ps(ta + k * kPairN);
    [[maybe_unused]] const __m512 wb = TWO ? _mm512_load_ps(tb + k * kPairN) : wa;
    GPTQ_ROW(0)
    GPTQ_ROW(1)
    GPTQ_ROW(2)
    GPTQ_ROW(3)
    GPTQ_ROW(4)
    GPTQ_ROW(5)
    GPTQ_ROW(6)
    GPTQ_ROW(7)
    GPTQ_ROW(8)
    GPTQ_ROW(9)
    GPTQ_ROW(10)
    GPTQ_ROW(11)
  }
#undef GPTQ_ROW
#define GPTQ_STORE(i)                                                    \
  if constexpr (MR > i) {                                                \
    float* yr = y + (i) * ldy;                                           \
    if (accumulate) {                                                    \
      a##i = _mm512_add_ps(_mm512_loadu_ps(yr), a##i);                   \
      if constexpr (TWO) b##i = _mm512_add_ps(_mm512_loadu_ps(yr + kPairN), b##i); \
    }                                                                    \
    _mm512_storeu_ps(yr, a##i);                                          \
    if constexpr (TWO) _mm512_storeu_ps(yr + kPairN, b##i);              \
  }
  GPTQ_STORE(0)
  GPTQ_STORE(1)
  GPTQ_STORE(2)
  GPTQ_STORE(3)
  GPTQ_STORE(4)
  GPTQ_STORE(5)
  GPTQ_STORE(6)
  GPTQ_STORE(7)
  GPTQ_STORE(8)
  GPTQ_STORE(9)
  GPTQ_STORE(10)
  GPTQ_STORE(11)
#undef GPTQ_STORE
}

template <bool TWO, int... Rows>
void microkernel512_rows(int64_t rows, const float* x, int64_t ldx, const float* ta, const float* tb, int64_t len,
                         float* y, int64_t ldy, bool accumulate, std::integer_sequence<int, Rows...>) {
  using Fn = void (*)(const float*, int64_t, const float*, const float*, int64_t, float*, int64_t, bool);
  static constexpr Fn kFns[] = {&microkernel512<Rows + 1, TWO>...};
  kFns[rows - 1](x, ldx, ta, tb, len, y, ldy, accumulate);
}

template <int BITS>
void gemm512(const PackedLayer& w, const float* xp, int64_t m, float* y) {
  const int64_t n_pairs = w.n_blocks / 2;  // N is a multiple of 32
  core::parallel_for(n_pairs, [&](int64_t p0, int64_t p1) {
    alignas(64) float tile[kTileK * kPairN];   // 16 KB each: 32 KB of the 48 KB L1 with both
    alignas(64) float tile2[kTileK * kPairN];
    for (int64_t u0 = 0; u0 < w.n_units; u0 += kKcUnits) {
      const int64_t u1 = u0 + kKcUnits < w.n_units ? u0 + kKcUnits : w.n_units;
      const int64_t len = (u1 - u0) * kUnitK;
      for (int64_t p = p0; p < p1; p += 2) {
        const bool two = p + 1 < p1;
        dequant_pair<BITS>(w, p, u0, u1, tile);
        if (two) dequant_pair<BITS>(w, p + 1, u0, u1, tile2);
        for (int64_t r = 0; r < m; r += kMr512) {
          const int64_t rows = m - r < kMr512 ? m - r : kMr512;
          const float* xr = xp + r * w.kp + u0 * kUnitK;
          float* yr = y + r * w.n + p * kPairN;
          if (two) {
            microkernel512_rows<true>(rows, xr, w.kp, tile, tile2, len, yr, w.n, u0 != 0, kRowSeq{});
          } else {
            microkernel512_rows<false>(rows, xr, w.kp, tile, nullptr, len, yr, w.n, u0 != 0, kRowSeq{});
          }
        }
      }
    }
  });
}

}  // namespace

void qgemm_avx512(const PackedLayer& w, const float* xp, int64_t m, float* y) {
  // QLinear sends only 3-bit layers here: the others take the int16 prefill (qgemv_avx512.cpp),
  // 1.5x this kernel's speed.
  if (w.bits != 3) return qgemm_avx2(w, xp, m, y);
  gemm512<3>(w, xp, m, y);
}

}  // namespace gptq::backend::detail
