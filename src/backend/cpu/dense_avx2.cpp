// AVX2 + FMA + F16C kernels for dense weights stored in 16 bits (bf16 or fp16): y = W x and the
// widening of W to fp32 that the prefill path feeds to sgemm.
//
// Compiled with -mavx2 -mfma -mf16c. Everything here except the entry points has internal
// linkage, and nothing from a header that a baseline file also uses is instantiated here (no
// std::vector, std::min, core fp16 helpers): a shared inline function compiled with AVX2 could be
// the copy the linker keeps for the baseline code too.
//
// The GEMV is bound by memory, not arithmetic: per 16 weights of one row (32 bytes) it issues two
// widening loads and two FMAs, while DRAM delivers 32 bytes to a core in several cycles. What
// matters is keeping enough reads in flight: four rows are read side by side (four sequential
// streams the hardware prefetcher follows), each with two accumulators, so eight independent FMA
// chains hide the FMA latency, and x is loaded once for the four rows.

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "backend/cpu/dense_kernels.h"

namespace gptq::backend::detail {
namespace {

// Rows read side by side in one pass over x.
constexpr int kRows = 4;

// Eight weights at p (16 bytes, any alignment) widened to fp32. bf16 is the top half of an fp32:
// zero-extend each to 32 bits and shift left by 16 (exact). fp16: vcvtph2ps (exact, including
// subnormals, Inf and NaN).
template <Half H>
inline __m256 load8(const uint16_t* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if constexpr (H == Half::kBF16) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
  } else {
    return _mm256_cvtph_ps(v);
  }
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// y[0..R) = rows w[0..R) (stride k) times x. xt is x[k8 .. k) zero-padded to 8 floats, where
// k8 = k rounded down to a multiple of 8. Every row follows the same order of operations whatever
// R is (acc0 takes even 8-blocks, acc1 odd ones, the padded tail goes to acc1, then one
// horizontal sum), so a row's result does not depend on which rows it was grouped with.
template <Half H, int R>
inline void rows_pass(const uint16_t* w, int64_t k, const float* x, const float* xt, float* y) {
  __m256 acc0[R], acc1[R];
  for (int r = 0; r < R; ++r) {
    acc0[r] = _mm256_setzero_ps();
    acc1[r] = _mm256_setzero_ps();
  }
  int64_t j = 0;
  for (; j + 16 <= k; j += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + j), x1 = _mm256_loadu_ps(x + j + 8);
    for (int r = 0; r < R; ++r) {
      const uint16_t* p = w + r * k + j;
      acc0[r] = _mm256_fmadd_ps(load8<H>(p), x0, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(load8<H>(p + 8), x1, acc1[r]);
    }
  }
  if (j + 8 <= k) {
    const __m256 x0 = _mm256_loadu_ps(x + j);
    for (int r = 0; r < R; ++r) acc0[r] = _mm256_fmadd_ps(load8<H>(w + r * k + j), x0, acc0[r]);
    j += 8;
  }
  if (j < k) {
    // Fewer than 8 left: copy them into a zero-padded block (a full load could cross the end of
    // W, into an unmapped page); padded weights meet padded x = 0 and add nothing.
    const __m256 x0 = _mm256_loadu_ps(xt);
    for (int r = 0; r < R; ++r) {
      uint16_t tail[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      std::memcpy(tail, w + r * k + j, static_cast<size_t>(k - j) * sizeof(uint16_t));
      acc1[r] = _mm256_fmadd_ps(load8<H>(tail), x0, acc1[r]);
    }
  }
  for (int r = 0; r < R; ++r) y[r] = hsum(_mm256_add_ps(acc0[r], acc1[r]));
}

template <Half H>
void rows_impl(const uint16_t* w, int64_t k, const float* x, int64_t r0, int64_t r1, float* y) {
  float xt[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const int64_t k8 = k / 8 * 8;
  std::memcpy(xt, x + k8, static_cast<size_t>(k - k8) * sizeof(float));
  int64_t r = r0;
  for (; r + kRows <= r1; r += kRows) rows_pass<H, kRows>(w + r * k, k, x, xt, y + r);
  for (; r < r1; ++r) rows_pass<H, 1>(w + r * k, k, x, xt, y + r);
}

inline float widen1(Half h, uint16_t v) {
  if (h == Half::kBF16) {
    const uint32_t bits = static_cast<uint32_t>(v) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  return _cvtsh_ss(v);
}

}  // namespace

void dense16_rows_avx2(Half h, const uint16_t* w, int64_t k, const float* x, int64_t r0,
                       int64_t r1, float* y) {
  if (h == Half::kBF16) {
    rows_impl<Half::kBF16>(w, k, x, r0, r1, y);
  } else {
    rows_impl<Half::kF16>(w, k, x, r0, r1, y);
  }
}

void widen16_avx2(Half h, const uint16_t* src, int64_t count, float* dst) {
  int64_t i = 0;
  if (h == Half::kBF16) {
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, load8<Half::kBF16>(src + i));
  } else {
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, load8<Half::kF16>(src + i));
  }
  for (; i < count; ++i) dst[i] = widen1(h, src[i]);
}

}  // namespace gptq::backend::detail
