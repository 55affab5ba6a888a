// The bf16 x^T x tile of hessian_kernels.h with vdpbf16ps (AVX512-BF16).
//
// Compiled with the AVX-512 flags plus -mavx512bf16; internal linkage for everything but the
// entry point (backend/cpu/qgemm_kernels.h explains why). Per 8 output rows and 32 columns: per
// token pair two loads of 16 column pairs (one from each panel), one broadcast per row and
// 16 vdpbf16ps (32 multiply-adds each) into 16 zmm sums.

#include <immintrin.h>

#include <cstdint>

#include "quant/hessian_kernels.h"

namespace gptq::quant::detail {
namespace {

constexpr int kRows = 8;

inline __m512 dot(__m512 acc, __m512i a, __m512i b) {
  return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

}  // namespace

void bf16_xtx_tile_avx512bf16(const uint32_t* p, int64_t pairs, int64_t k, int64_t i0, int64_t i1,
                              int64_t j0, int64_t j1, double* sum) {
  // j0 and i0 are multiples of kBf16Tile, so the two column panels start at j0 and j0 + 16 and
  // every group of 8 rows lies in one panel; panels past K do not exist, padding inside the last
  // one is zero.
  const bool two = j0 + kBf16Panel < k;
  const uint32_t* b0p = p + (j0 / kBf16Panel) * pairs * kBf16Panel;
  const uint32_t* b1p = two ? b0p + pairs * kBf16Panel : b0p;
  alignas(64) float out[kRows][32];
  for (int64_t ib = i0; ib < i1; ib += kRows) {
    const uint32_t* ap = p + (ib / kBf16Panel) * pairs * kBf16Panel + ib % kBf16Panel;
    __m512 acc0[kRows], acc1[kRows];
    for (int r = 0; r < kRows; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
    for (int64_t t = 0; t < pairs; ++t) {
      const __m512i b0 = _mm512_loadu_si512(b0p + t * kBf16Panel);
      const __m512i b1 = _mm512_loadu_si512(b1p + t * kBf16Panel);
      const uint32_t* at = ap + t * kBf16Panel;
      for (int r = 0; r < kRows; ++r) {
        const __m512i a = _mm512_set1_epi32(static_cast<int32_t>(at[r]));
        acc0[r] = dot(acc0[r], a, b0);
        if (two) acc1[r] = dot(acc1[r], a, b1);
      }
    }
    for (int r = 0; r < kRows; ++r) {
      _mm512_store_ps(out[r], acc0[r]);
      _mm512_store_ps(out[r] + 16, acc1[r]);
    }
    for (int r = 0; r < kRows && ib + r < i1; ++r) {
      const int64_t i = ib + r;
      double* dst = sum + i * k;
      for (int64_t j = i > j0 ? i : j0; j < j1; ++j) dst[j] += out[r][j - j0];
    }
  }
}

}  // namespace gptq::quant::detail
