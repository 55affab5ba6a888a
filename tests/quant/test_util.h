// Random test problems for the quantizer tests.
#pragma once

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace qtest {

// W [N, K]: standard normal with a few larger-scale input columns (outliers are what makes
// group ranges and act-order matter).
inline std::vector<float> random_weight(int64_t n, int64_t k, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> ud(0.0f, 1.0f);
  std::vector<float> col_scale(static_cast<size_t>(k));
  for (auto& s : col_scale) s = ud(gen) < 0.05f ? 4.0f : 1.0f;
  std::vector<float> w(static_cast<size_t>(n * k));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) w[r * k + c] = 0.02f * col_scale[c] * nd(gen);
  return w;
}

// Calibration inputs X [tokens, K]: each token an AR(1) sequence across features (neighbouring
// inputs correlate with coefficient rho), times a per-feature scale in [0.2, 5] so that H's
// diagonal spreads (act-order has something to sort). dead features are all zero.
inline std::vector<float> correlated_tokens(int64_t tokens, int64_t k, double rho, uint32_t seed,
                                            const std::vector<int64_t>& dead = {}) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::uniform_real_distribution<double> ud(std::log(0.2), std::log(5.0));
  std::vector<double> feat_scale(static_cast<size_t>(k));
  for (auto& s : feat_scale) s = std::exp(ud(gen));
  for (int64_t d : dead) feat_scale[d] = 0;
  std::vector<float> x(static_cast<size_t>(tokens * k));
  const double a = std::sqrt(1 - rho * rho);
  for (int64_t t = 0; t < tokens; ++t) {
    double prev = nd(gen);
    for (int64_t c = 0; c < k; ++c) {
      prev = rho * prev + a * nd(gen);
      x[t * k + c] = static_cast<float>(prev * feat_scale[c]);
    }
  }
  return x;
}

// H = 2/T X^T X in double (dsyrk on the fp32 inputs widened to double).
inline std::vector<double> hessian_of(const std::vector<float>& x, int64_t tokens, int64_t k) {
  std::vector<double> xd(x.begin(), x.end()), h(static_cast<size_t>(k * k));
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(k),
              static_cast<int>(tokens), 2.0 / tokens, xd.data(), static_cast<int>(k), 0.0,
              h.data(), static_cast<int>(k));
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < i; ++j) h[i * k + j] = h[j * k + i];
  return h;
}

inline std::vector<double> correlated_hessian(int64_t k, int64_t tokens, double rho,
                                              uint32_t seed,
                                              const std::vector<int64_t>& dead = {}) {
  return hessian_of(correlated_tokens(tokens, k, rho, seed, dead), tokens, k);
}

// tr((W - Q) H (W - Q)^T): the layer's output error on the calibration inputs (up to 2/T).
inline double output_error(const std::vector<float>& w, const std::vector<float>& q, int64_t n,
                           int64_t k, const std::vector<double>& h) {
  double total = 0;
  std::vector<double> e(static_cast<size_t>(k));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) e[c] = static_cast<double>(w[r * k + c]) - q[r * k + c];
    for (int64_t i = 0; i < k; ++i) {
      double s = 0;
      for (int64_t j = 0; j < k; ++j) s += h[i * k + j] * e[j];
      total += e[i] * s;
    }
  }
  return total;
}

// W [N, K] with every third group of every row on a tie grid: a step s = 2^-7 and values that
// are multiples of s/2, so x / s hits k + 0.5 exactly; the range is chosen so that fp32 computes
// the scale as exactly s (sym: xmax = maxq * s / 2; asym: xmax - xmin = maxq * s with -xmin an
// odd multiple of s/2, a tie for the zero point too).
inline std::vector<float> tie_weights(int64_t n, int64_t k, int64_t g, int bits, bool sym,
                               uint32_t seed) {
  std::vector<float> w = random_weight(n, k, seed);
  std::mt19937 gen(seed + 1);
  const int maxq = (1 << bits) - 1;
  const float half = std::ldexp(1.0f, -8);  // s / 2 with s = 2^-7
  const int64_t groups = (k + g - 1) / g;
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t grp = (r % 3); grp < groups; grp += 3) {
      const int64_t c0 = grp * g, c1 = std::min(k, c0 + g);
      if (c1 - c0 < 2) continue;
      int lo, hi;  // the group spans [lo, hi] half-steps
      if (sym) {
        lo = -maxq;
        hi = maxq;
      } else {
        const int a = 2 * static_cast<int>(gen() % static_cast<unsigned>(maxq)) + 1;  // odd
        lo = -a;
        hi = 2 * maxq - a;
      }
      std::uniform_int_distribution<int> ud(lo, hi);
      for (int64_t c = c0; c < c1; ++c) w[r * k + c] = static_cast<float>(ud(gen)) * half;
      // Pin the range ends (sym: the negative extreme, the side the fp16-first rounding lost).
      w[r * k + c0] = static_cast<float>(lo) * half;
      if (!sym) w[r * k + c0 + 1] = static_cast<float>(hi) * half;
    }
  }
  return w;
}

}  // namespace qtest
