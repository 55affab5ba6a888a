// A second GPTQ, written from the textbook description (SPEC §3) for tests only: double
// precision, unblocked (every column updates every later column at once), H^-1 formed
// explicitly, U = upper Cholesky factor of H^-1, with Cholesky, triangular solves and the
// quantizer written out here. It shares no code with src/quant except the fp16 conversion
// helpers (core/dtype.h), which test_core checks separately.
//
// Arithmetic as the reference (the GPTQ paper's quant.py / gptq.py, and GPTQModel's copy): the
// scale is never rounded to fp16 for codes, zero points or the error feedback; only the stored
// scale is fp16. Group size -1 takes its parameters from W before dead inputs are zeroed.
//
// Ties. The library works in fp32, this in double, so a value that sits within rounding noise
// of a decision boundary (w / scale at k + 0.5, an fp16 rounding midpoint of the stored scale,
// two MSE candidates with the same error) may go either way. GPTQ feeds each decision forward, so one
// flipped code would change every later code of that row and hide all further comparisons.
// The naive solver therefore takes the library's result as a hint: where its own decision
// differs, it checks that the decision is a near-tie by the tolerances below, counts it, and
// follows the library; a difference that is not a near-tie is recorded as a failure. The tests
// assert no failures and a small tie count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "quant/quantizer.h"

namespace naive {

// Near-tie tolerances (see above), in the units of each decision.
constexpr double kCodeTieTol = 2e-3;   // |frac(w / scale) - 0.5|, in quantization steps
constexpr double kZeroTieTol = 2e-3;   // |frac(-xmin / scale) - 0.5|, in steps
constexpr double kScaleTieTol = 1e-5;  // |scale - fp16 midpoint| / scale
constexpr double kMseTieTol = 1e-4;    // relative excess error of the library's MSE choice

struct Report {
  int64_t decisions = 0;  // codes + group parameters decided
  int64_t ties = 0;       // near-ties where the library went the other way (followed)
  double worst_tie = 0;   // largest distance from the boundary among those, in its units
  std::vector<std::string> failures;
};

struct Result {
  std::vector<uint8_t> codes;   // [N, K] original order
  std::vector<float> scales;    // [G, N]
  std::vector<int32_t> zeros;   // [G, N]
  std::vector<int32_t> g_idx;   // [K]
  double loss = 0;
  double damp_used = 0;
  bool factored = true;         // false when damping reached 1
  Report report;
};

inline float fp16_round(double v) {
  const float r = gptq::core::fp16_to_fp32(gptq::core::fp32_to_fp16(static_cast<float>(v)));
  return r == 0.0f ? 5.9604645e-08f : r;  // the library's documented underflow floor (2^-24)
}

// Lower Cholesky: A = L L^T. Returns false at the first non-positive pivot.
inline bool cholesky_lower(const std::vector<double>& a, int64_t n, std::vector<double>& l) {
  l.assign(static_cast<size_t>(n * n), 0.0);
  for (int64_t j = 0; j < n; ++j) {
    double s = a[j * n + j];
    for (int64_t t = 0; t < j; ++t) s -= l[j * n + t] * l[j * n + t];
    if (!(s > 0)) return false;
    const double ljj = std::sqrt(s);
    l[j * n + j] = ljj;
    for (int64_t i = j + 1; i < n; ++i) {
      double v = a[i * n + j];
      for (int64_t t = 0; t < j; ++t) v -= l[i * n + t] * l[j * n + t];
      l[i * n + j] = v / ljj;
    }
  }
  return true;
}

// A^-1 from A = L L^T: solve L y = e_c, then L^T x = y, for each column c.
inline std::vector<double> inverse_from_cholesky(const std::vector<double>& l, int64_t n) {
  std::vector<double> inv(static_cast<size_t>(n * n)), y(static_cast<size_t>(n));
  for (int64_t c = 0; c < n; ++c) {
    for (int64_t i = 0; i < n; ++i) {
      double v = i == c ? 1.0 : 0.0;
      for (int64_t t = 0; t < i; ++t) v -= l[i * n + t] * y[t];
      y[i] = v / l[i * n + i];
    }
    for (int64_t i = n - 1; i >= 0; --i) {
      double v = y[i];
      for (int64_t t = i + 1; t < n; ++t) v -= l[t * n + i] * inv[t * n + c];
      inv[i * n + c] = v / l[i * n + i];
    }
  }
  return inv;
}

// Upper Cholesky: A = U^T U.
inline std::vector<double> cholesky_upper(const std::vector<double>& a, int64_t n) {
  std::vector<double> u(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    double s = a[i * n + i];
    for (int64_t t = 0; t < i; ++t) s -= u[t * n + i] * u[t * n + i];
    const double uii = std::sqrt(s);
    u[i * n + i] = uii;
    for (int64_t j = i + 1; j < n; ++j) {
      double v = a[i * n + j];
      for (int64_t t = 0; t < i; ++t) v -= u[t * n + i] * u[t * n + j];
      u[i * n + j] = v / uii;
    }
  }
  return u;
}

// Group parameters as the naive solver keeps them: the scale in double (the reference's fp32
// scale, computed here without rounding) drives codes and feedback; stored is what the file
// holds, fp16(scale), compared with the library's stored scale.
struct Params {
  double scale = 1;
  int32_t zero = 0;
};

class Solver {
 public:
  Solver(const gptq::quant::QuantParams& p, const gptq::quant::QuantResult& hint, Report& rep)
      : p_(p), hint_(hint), rep_(rep), maxq_((1 << p.bits) - 1) {}

  // Scale and zero of one row of one group, x in double (SPEC §3 quantizer, no fp16 rounding).
  // hint_row/hint_grp locate the library's choice for the same row and group; *stored gets the
  // fp16 scale the file will hold.
  Params params(const std::vector<double>& x, int64_t hint_row, int64_t hint_grp, float* stored,
                int32_t* zero_out) {
    double xmin = 0, xmax = 0;
    for (double v : x) {
      xmin = std::min(xmin, v);
      xmax = std::max(xmax, v);
    }
    if (p_.sym) {
      xmax = std::max(std::fabs(xmin), xmax);
      if (xmin < 0) xmin = -xmax;
    }
    if (xmin == 0 && xmax == 0) {
      xmin = -1;
      xmax = 1;
    }
    const size_t hi = static_cast<size_t>(hint_grp * hint_.n + hint_row);
    const float h_scale = hint_.scales[hi];
    const int32_t h_zero = hint_.zeros[hi];
    ++rep_.decisions;
    Params out;
    if (!p_.mse) {
      out.scale = (xmax - xmin) / maxq_;
      *stored = stored_scale(out.scale, h_scale, hint_row, hint_grp);
      out.zero = zero_of(xmin, out.scale, h_zero, hint_row, hint_grp);
    } else {
      // Candidates p = 1 - i/100; the first with the lowest error wins (strict <).
      std::vector<Params> cand(80);
      std::vector<double> err(80);
      int best = 0;
      for (int i = 0; i < 80; ++i) {
        const double pr = 1.0 - i / 100.0;
        cand[i].scale = (pr * xmax - pr * xmin) / maxq_;
        cand[i].zero = p_.sym ? (maxq_ + 1) / 2 : clamp_code(std::nearbyint(-pr * xmin / cand[i].scale));
        err[i] = mse_error(x, cand[i]);
        if (err[i] < err[best]) best = i;
      }
      out = cand[best];
      // The library's choice is identified by its stored scale and zero: the candidate with that
      // zero whose scale is nearest (candidates are >= 1.2% apart, fp16 steps 0.1%, so it is
      // unique). Its error must be within kMseTieTol of the best.
      if (fp16_round(out.scale) != h_scale || out.zero != h_zero) {
        int chosen = -1;
        double nearest = 1.0 / 1024;  // relative; farther than an fp16 step is no match
        for (int i = 0; i < 80; ++i) {
          const double rel = std::fabs(cand[i].scale - h_scale) / h_scale;
          if (cand[i].zero == h_zero && rel <= nearest) {
            nearest = rel;
            chosen = i;
          }
        }
        const double excess =
            chosen < 0 ? INFINITY : (err[chosen] - err[best]) / std::max(err[best], 1e-300);
        if (excess <= kMseTieTol) {
          tie(excess);
          out = cand[chosen];
        } else {
          fail("MSE choice", hint_row, hint_grp, excess);
        }
      }
      *stored = stored_scale(out.scale, h_scale, hint_row, hint_grp);
    }
    *zero_out = out.zero;
    return out;
  }

  int32_t code(double w, const Params& g, int32_t hint_code, int64_t row, int64_t col) {
    ++rep_.decisions;
    const double arg = w / g.scale;
    const int32_t c = clamp_code(std::nearbyint(arg) + g.zero);
    if (c == hint_code) return c;
    const double dist = std::fabs(arg - std::floor(arg) - 0.5);
    const int32_t lo = clamp_code(std::floor(arg) + g.zero),
                  hi = clamp_code(std::ceil(arg) + g.zero);
    if (dist <= kCodeTieTol && (hint_code == lo || hint_code == hi)) {
      tie(dist);
      return hint_code;
    }
    fail("code", row, col, dist);
    return c;
  }

  // The reference's dequantization, with the unrounded scale (what its error feedback uses).
  double dequant(int32_t c, const Params& g) const { return g.scale * (c - g.zero); }

 private:
  // fp16(scale), or the library's fp16 neighbour when the scale sits on an fp16 midpoint.
  float stored_scale(double s, float h_scale, int64_t row, int64_t grp) {
    const float s16 = fp16_round(s);
    if (s16 == h_scale) return s16;
    const double mid = (static_cast<double>(s16) + h_scale) / 2;
    const double dist = std::fabs(s - mid) / s;
    const bool neighbour = std::fabs(static_cast<double>(h_scale) - s16) <= s16 * (1.0 / 1024);
    if (neighbour && dist <= kScaleTieTol) {
      tie(dist);
      return h_scale;
    }
    fail("scale", row, grp, dist);
    return s16;
  }

  int32_t zero_of(double xmin, double scale, int32_t h_zero, int64_t row, int64_t grp) {
    if (p_.sym) return (maxq_ + 1) / 2;
    const double arg = -xmin / scale;
    const int32_t z = clamp_code(std::nearbyint(arg));
    if (z == h_zero) return z;
    const double dist = std::fabs(arg - std::floor(arg) - 0.5);
    if (dist <= kZeroTieTol && (h_zero == clamp_code(std::floor(arg)) ||
                                h_zero == clamp_code(std::ceil(arg)))) {
      tie(dist);
      return h_zero;
    }
    fail("zero", row, grp, dist);
    return z;
  }

  double mse_error(const std::vector<double>& x, const Params& g) const {
    double err = 0;
    for (double v : x) {
      const int32_t c = clamp_code(std::nearbyint(v / g.scale) + g.zero);
      err += std::pow(std::fabs(dequant(c, g) - v), 2.4);
    }
    return err;
  }

  int32_t clamp_code(double v) const {
    return static_cast<int32_t>(std::clamp(v, 0.0, static_cast<double>(maxq_)));
  }

  void tie(double dist) {
    ++rep_.ties;
    rep_.worst_tie = std::max(rep_.worst_tie, dist);
  }
  void fail(const char* what, int64_t a, int64_t b, double dist) {
    if (rep_.failures.size() < 20) {
      rep_.failures.push_back(std::string(what) + " differs at (" + std::to_string(a) + ", " +
                              std::to_string(b) + "), distance from a tie " + std::to_string(dist));
    }
  }

  const gptq::quant::QuantParams& p_;
  const gptq::quant::QuantResult& hint_;
  Report& rep_;
  int maxq_;
};

// GPTQ of W [N, K] (double) with H [K, K] following SPEC §3 step by step. hint is the library's
// result for the same input (see the file comment).
inline Result gptq(const std::vector<double>& w_in, int64_t n, int64_t k,
                   const std::vector<double>& h_in, const gptq::quant::QuantParams& p,
                   const gptq::quant::QuantResult& hint) {
  Result out;
  Solver solver(p, hint, out.report);
  const int64_t g = p.group_size == -1 ? k : p.group_size;
  const int64_t groups = (k + g - 1) / g;
  std::vector<double> w = w_in, h = h_in;
  out.scales.assign(static_cast<size_t>(groups * n), 0.0f);
  out.zeros.assign(static_cast<size_t>(groups * n), 0);
  std::vector<Params> gp(static_cast<size_t>(groups * n));  // [G, N] unrounded

  // 0. Group size -1: one group per row, from W as given (before dead inputs are zeroed).
  const bool per_row = p.group_size == -1;
  if (per_row) {
    for (int64_t r = 0; r < n; ++r) {
      std::vector<double> x(w.begin() + r * k, w.begin() + (r + 1) * k);
      gp[r] = solver.params(x, r, 0, &out.scales[r], &out.zeros[r]);
    }
  }

  // 1. Dead inputs.
  for (int64_t c = 0; c < k; ++c) {
    if (h[c * k + c] == 0) {
      h[c * k + c] = 1;
      for (int64_t r = 0; r < n; ++r) w[r * k + c] = 0;
    }
  }
  // 2. Static groups from the original W.
  const bool static_groups = p.static_groups && !per_row;
  if (static_groups) {
    for (int64_t grp = 0; grp < groups; ++grp) {
      for (int64_t r = 0; r < n; ++r) {
        std::vector<double> x(w.begin() + r * k + grp * g,
                              w.begin() + r * k + std::min(k, grp * g + g));
        gp[grp * n + r] = solver.params(x, r, grp, &out.scales[grp * n + r], &out.zeros[grp * n + r]);
      }
    }
  }
  // 3. Act-order.
  std::vector<int64_t> perm(static_cast<size_t>(k));
  std::iota(perm.begin(), perm.end(), 0);
  if (p.desc_act) {
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return h[a * k + a] > h[b * k + b]; });
  }
  std::vector<double> wp(static_cast<size_t>(n * k)), hp(static_cast<size_t>(k * k));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < k; ++j) wp[r * k + j] = w[r * k + perm[j]];
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) hp[i * k + j] = h[perm[i] * k + perm[j]];
  // 4. Damping, raised while Cholesky fails.
  double mean = 0;
  for (int64_t i = 0; i < k; ++i) mean += hp[i * k + i];
  mean /= k;
  std::vector<double> l;
  for (int attempt = 0;; ++attempt) {
    const double damp = p.damp_percent + attempt * p.damp_step;
    std::vector<double> hd = hp;
    for (int64_t i = 0; i < k; ++i) hd[i * k + i] += damp * mean;
    if (cholesky_lower(hd, k, l)) {
      out.damp_used = damp;
      break;
    }
    const double next = p.damp_percent + (attempt + 1) * p.damp_step;
    if (!(p.damp_step > 0 && next < 1)) {
      out.factored = false;
      return out;
    }
  }
  // 5. U = upper Cholesky factor of H^-1.
  const std::vector<double> u = cholesky_upper(inverse_from_cholesky(l, k), k);

  // 6. Column by column. Group parameters read W as it stood at the start of the block of
  // block_size columns holding the group's first column (what the Python tools do).
  std::vector<uint8_t> codes_p(static_cast<size_t>(n * k));
  std::vector<int32_t> gid(static_cast<size_t>(k));
  std::vector<double> snapshot;
  double loss = 0;
  for (int64_t i = 0; i < k; ++i) {
    if (i % p.block_size == 0) snapshot = wp;
    gid[i] = static_cast<int32_t>((static_groups ? perm[i] : i) / g);
    if (!static_groups && !per_row && i % g == 0) {
      for (int64_t r = 0; r < n; ++r) {
        std::vector<double> x(snapshot.begin() + r * k + i,
                              snapshot.begin() + r * k + std::min(k, i + g));
        gp[(i / g) * n + r] =
            solver.params(x, r, i / g, &out.scales[(i / g) * n + r], &out.zeros[(i / g) * n + r]);
      }
    }
    const double d = u[i * k + i];
    for (int64_t r = 0; r < n; ++r) {
      const Params& pr = gp[gid[i] * n + r];
      const double wv = wp[r * k + i];
      const int32_t c = solver.code(wv, pr, hint.codes[r * k + perm[i]], r, perm[i]);
      codes_p[r * k + i] = static_cast<uint8_t>(c);
      const double q = solver.dequant(c, pr);
      const double err = (wv - q) / d;
      loss += (wv - q) * (wv - q) / (d * d);
      for (int64_t j = i; j < k; ++j) wp[r * k + j] -= err * u[i * k + j];
    }
  }
  out.loss = loss / 2;
  // 7. Back to the original column order.
  out.codes.assign(static_cast<size_t>(n * k), 0);
  out.g_idx.assign(static_cast<size_t>(k), 0);
  for (int64_t j = 0; j < k; ++j) {
    out.g_idx[perm[j]] = gid[j];
    for (int64_t r = 0; r < n; ++r) out.codes[r * k + perm[j]] = codes_p[r * k + j];
  }
  return out;
}

}  // namespace naive
