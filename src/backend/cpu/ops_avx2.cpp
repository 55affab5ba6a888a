// AVX2 + FMA versions of the hot row and element-wise ops (compiled with -mavx2 -mfma alone).
// Reductions keep the reference's double accumulation, in four lanes, so results differ from
// the scalar kernels only by the order of the double sums.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/ops_kernels.h"

namespace gptq::backend::detail {
namespace {

double hsum(__m256d v) {
  __m128d lo = _mm256_castpd256_pd128(v), hi = _mm256_extractf128_pd(v, 1);
  lo = _mm_add_pd(lo, hi);
  return _mm_cvtsd_f64(_mm_add_sd(lo, _mm_unpackhi_pd(lo, lo)));
}

// Sum of x[j] (squares when sq) over n, in double.
double sum_d(const float* x, int64_t n, bool sq, double shift = 0) {
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  const __m256d sh = _mm256_set1_pd(shift);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 v = _mm256_loadu_ps(x + j);
    __m256d lo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), sh);
    __m256d hi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), sh);
    if (sq) {
      a0 = _mm256_fmadd_pd(lo, lo, a0);
      a1 = _mm256_fmadd_pd(hi, hi, a1);
    } else {
      a0 = _mm256_add_pd(a0, lo);
      a1 = _mm256_add_pd(a1, hi);
    }
  }
  double s = hsum(_mm256_add_pd(a0, a1));
  for (; j < n; ++j) {
    const double d = x[j] - shift;
    s += sq ? d * d : d;
  }
  return s;
}

}  // namespace

void rms_norm_avx2(const float* x, const float* w, float offset, int64_t rows, int64_t n, float eps, float* y) {
  const __m256 off = _mm256_set1_ps(offset);
  for (int64_t i = 0; i < rows; ++i) {
    const float* xi = x + i * n;
    float* yi = y + i * n;
    const float r = 1.0f / std::sqrt(static_cast<float>(sum_d(xi, n, true) / static_cast<double>(n)) + eps);
    const __m256 rv = _mm256_set1_ps(r);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      const __m256 wv = _mm256_add_ps(off, _mm256_loadu_ps(w + j));
      _mm256_storeu_ps(yi + j, _mm256_mul_ps(wv, _mm256_mul_ps(_mm256_loadu_ps(xi + j), rv)));
    }
    for (; j < n; ++j) yi[j] = (offset + w[j]) * (xi[j] * r);
  }
}

void layer_norm_avx2(const float* x, const float* w, const float* b, int64_t rows, int64_t n, float eps, float* y) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* xi = x + i * n;
    float* yi = y + i * n;
    const double mean = sum_d(xi, n, false) / static_cast<double>(n);
    const double var = sum_d(xi, n, true, mean) / static_cast<double>(n);
    const float r = 1.0f / std::sqrt(static_cast<float>(var) + eps);
    const float m = static_cast<float>(mean);
    const __m256 rv = _mm256_set1_ps(r), mv = _mm256_set1_ps(m);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      const __m256 c = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xi + j), mv), rv), _mm256_loadu_ps(w + j));
      _mm256_storeu_ps(yi + j, b ? _mm256_add_ps(c, _mm256_loadu_ps(b + j)) : c);
    }
    for (; j < n; ++j) yi[j] = (xi[j] - m) * r * w[j] + (b ? b[j] : 0.0f);
  }
}

void add_avx2(float* x, const float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) x[i] += y[i];
}

void scale_avx2(float* x, int64_t n, float s) {
  const __m256 sv = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), sv));
  for (; i < n; ++i) x[i] *= s;
}

namespace {

// e^x, lane by lane: x = n ln2 + r with |r| <= ln2/2 (ln 2 in two parts, so r is exact), e^r by
// Cephes' degree-6 polynomial, 2^n built in the exponent field. x is clamped to the range where
// 2^n is a normal float (below it the result is ~1e-38 instead of a denormal or 0); the clamps
// keep a NaN (max/min return their second operand then), which the polynomial propagates.
__m256 exp_ps(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), x);
  x = _mm256_max_ps(_mm256_set1_ps(-87.3365447504f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
}

float hsum(__m256 v) {
  __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_add_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_add_ss(m, _mm_shuffle_ps(m, m, 1)));
}

}  // namespace

void softmax_avx2(float* s, int64_t lo, int64_t hi) {
  float* x = s + lo;
  const int64_t n = hi - lo;
  int64_t j = 0;
  __m256 mv = _mm256_set1_ps(-INFINITY);
  for (; j + 8 <= n; j += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + j));
  float mx = hmax(mv);
  for (; j < n; ++j) mx = std::max(mx, x[j]);
  const __m256 m = _mm256_set1_ps(mx);
  __m256 sv = _mm256_setzero_ps();
  for (j = 0; j + 8 <= n; j += 8) {
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), m));
    _mm256_storeu_ps(x + j, e);
    sv = _mm256_add_ps(sv, e);
  }
  float sum = hsum(sv);
  for (; j < n; ++j) {
    x[j] = std::exp(x[j] - mx);
    sum += x[j];
  }
  scale_avx2(x, n, 1.0f / sum);
}

void rotate_avx2(float* v, const float* cs, const float* sn, int64_t half, bool interleaved) {
  int64_t j = 0;
  if (!interleaved) {
    for (; j + 8 <= half; j += 8) {
      const __m256 a = _mm256_loadu_ps(v + j), b = _mm256_loadu_ps(v + j + half);
      const __m256 c = _mm256_loadu_ps(cs + j), s = _mm256_loadu_ps(sn + j);
      // Same roundings as the scalar a*c - b*s: both products rounded, then the difference.
      _mm256_storeu_ps(v + j, _mm256_sub_ps(_mm256_mul_ps(a, c), _mm256_mul_ps(b, s)));
      _mm256_storeu_ps(v + j + half, _mm256_add_ps(_mm256_mul_ps(b, c), _mm256_mul_ps(a, s)));
    }
  }
  for (; j < half; ++j) {
    const int64_t lo = interleaved ? 2 * j : j, hi = interleaved ? 2 * j + 1 : j + half;
    const float a = v[lo], b = v[hi];
    v[lo] = a * cs[j] - b * sn[j];
    v[hi] = b * cs[j] + a * sn[j];
  }
}

}  // namespace gptq::backend::detail
