// Parameter checks, the SPEC §3 quantizer (scale/zero per row and group, MSE search) and RTN.
#include "quant/quantizer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/parallel.h"
#include "gptq/error.h"
#include "quant/grid.h"

namespace gptq::quant {
namespace detail {
namespace {

// The reference's arithmetic: fp32 subtraction and division, zero = round(-xmin / scale)
// half to even with the same fp32 scale.
GroupParams params_for_range(float xmin, float xmax, const Grid& g) {
  GroupParams r;
  r.scale = (xmax - xmin) / static_cast<float>(g.maxq);
  if (g.sym) {
    r.zero = (g.maxq + 1) / 2;
  } else {
    // -xmin / scale <= maxq * (1 + 2^-22), so the clamp never bites for a finite scale; it
    // keeps an Inf scale from producing garbage.
    const float z = std::nearbyint(-xmin / r.scale);
    r.zero = static_cast<int32_t>(std::clamp(z, 0.0f, static_cast<float>(g.maxq)));
  }
  return r;
}

// Sum over the group of |dequant(quant(x)) - x|^2.4, in 8 interleaved partial sums so that the
// loop vectorizes without reassociation (the order is fixed: deterministic).
float group_error(const float* x, int64_t len, GroupParams c, int maxq) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= len; i += 8) {
    for (int l = 0; l < 8; ++l) {
      const float v = x[i + l];
      const float d = dequant_value(quant_code(v, c.scale, c.zero, maxq), c.scale, c.zero) - v;
      acc[l] += pow_2p4(d);
    }
  }
  for (int l = 0; i < len; ++i, ++l) {
    const float v = x[i];
    const float d = dequant_value(quant_code(v, c.scale, c.zero, maxq), c.scale, c.zero) - v;
    acc[l] += pow_2p4(d);
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// sum weight_j * (dequant(quant(x_j)) - x_j)^2, in a fixed order (deterministic).
float weighted_error(const float* x, const float* weight, int64_t len, GroupParams c, int maxq) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = 0; i < len; ++i) {
    const float d = dequant_value(quant_code(x[i], c.scale, c.zero, maxq), c.scale, c.zero) - x[i];
    acc[i % 8] += weight[i] * d * d;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

float search_error(const float* x, const float* weight, int64_t len, GroupParams c, int maxq) {
  return weight ? weighted_error(x, weight, len, c, maxq) : group_error(x, len, c, maxq);
}

// llama.cpp's rule for the extreme m (see find_params), with the scale rounded to fp16.
GroupParams ggml_params(float m, const Grid& g) {
  GroupParams r;
  r.scale = g.bits == 4 ? m / -8.0f : m / 127.0f;
  const float s16 = core::fp16_to_fp32(core::fp32_to_fp16(r.scale));
  // Below fp16's range: the smallest subnormal of the same sign, as scale_to_fp16 floors it.
  r.scale = s16 != 0.0f ? s16 : std::copysign(5.9604645e-08f, r.scale);
  r.zero = (g.maxq + 1) / 2;
  return r;
}

GroupParams find_params_ggml(const float* x, int64_t len, const Grid& g, const float* weight) {
  float amax = 0.0f, m = 0.0f;
  for (int64_t i = 0; i < len; ++i) {
    const float a = std::fabs(x[i]);
    if (a > amax) {
      amax = a;
      m = x[i];
    }
  }
  if (g.bits == 8) m = amax;
  if (m == 0.0f) m = 1.0f;
  GroupParams best = ggml_params(m, g);
  if (!g.mse) return best;
  float best_err = std::numeric_limits<float>::infinity();
  for (int i = 0; i < 80; ++i) {
    const float p = static_cast<float>(1.0 - i / 100.0);
    const GroupParams c = ggml_params(p * m, g);
    if (!std::isfinite(c.scale) || c.scale == 0.0f) continue;
    const float err = search_error(x, weight, len, c, g.maxq);
    if (err < best_err) {
      best_err = err;
      best = c;
    }
  }
  return best;
}

}  // namespace

GroupParams find_params(const float* x, int64_t len, const Grid& g, const float* weight) {
  if (g.ggml) return find_params_ggml(x, len, g, weight);
  float xmin = 0.0f, xmax = 0.0f;
  for (int64_t i = 0; i < len; ++i) {
    xmin = x[i] < xmin ? x[i] : xmin;
    xmax = x[i] > xmax ? x[i] : xmax;
  }
  if (g.sym) {
    xmax = std::max(-xmin, xmax);  // xmin <= 0, so -xmin = |xmin|
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0.0f && xmax == 0.0f) {
    xmin = -1.0f;
    xmax = 1.0f;
  }
  GroupParams best = params_for_range(xmin, xmax, g);
  if (!g.mse) return best;
  // Shrink search: p = 1 - i/100 for i < 80 (the first candidate is the plain range); keep the
  // first candidate with the lowest error, as the Python tools do (strict <).
  float best_err = std::numeric_limits<float>::infinity();
  for (int i = 0; i < 80; ++i) {
    const float p = static_cast<float>(1.0 - i / 100.0);
    const GroupParams c = params_for_range(p * xmin, p * xmax, g);
    if (!std::isfinite(c.scale)) continue;
    const float err = search_error(x, weight, len, c, g.maxq);
    if (err < best_err) {
      best_err = err;
      best = c;
    }
  }
  return best;
}

void check_shape(const float* w, int64_t n, int64_t k) {
  if (n < 1 || k < 1) {
    throw Error(ErrorKind::kArgument,
                fmt::format("quantize: weight shape [{}, {}] must have N >= 1 and K >= 1", n, k));
  }
  if (!w) throw Error(ErrorKind::kArgument, "quantize: weight pointer is null");
}

void check_weight_finite(const float* w, int64_t n, int64_t k) {
  const int64_t total = n * k;
  for (int64_t i = 0; i < total; ++i) {
    if (!std::isfinite(w[i])) {
      throw Error(ErrorKind::kNumeric,
                  fmt::format("quantize: weight [{}, {}] holds {} at row {}, column {}", n, k,
                              std::isnan(w[i]) ? "NaN" : "Inf", i / k, i % k));
    }
  }
}

void throw_if_scale_overflow(const int64_t* bad_group, int64_t n) {
  for (int64_t r = 0; r < n; ++r) {
    if (bad_group[r] >= 0) {
      throw Error(ErrorKind::kNumeric,
                  fmt::format("quantize: the scale of row {}, group {} overflows fp16 (weights too "
                              "large for the file's fp16 scales)",
                              r, bad_group[r]));
    }
  }
}

}  // namespace detail

void validate(const QuantParams& p) {
  auto bad = [](const std::string& msg) { throw Error(ErrorKind::kArgument, "QuantParams." + msg); };
  if (p.bits != 2 && p.bits != 3 && p.bits != 4 && p.bits != 8) {
    bad(fmt::format("bits = {}: must be one of 2, 3, 4, 8", p.bits));
  }
  if (p.group_size != -1 && (p.group_size < 16 || p.group_size > 1024)) {
    bad(fmt::format("group_size = {}: must be -1 (one group per row) or in 16..1024",
                    p.group_size));
  }
  if (!(p.damp_percent > 0.0 && p.damp_percent < 1.0)) {
    bad(fmt::format("damp_percent = {}: must be in (0, 1)", p.damp_percent));
  }
  if (!(p.damp_step >= 0.0 && p.damp_step < 1.0)) {
    bad(fmt::format("damp_step = {}: must be in [0, 1) (0 turns the automatic increase off)",
                    p.damp_step));
  }
  if (p.act_group_aware && p.desc_act) {
    bad("act_group_aware = true with desc_act = true: they are two act-orders, pick one");
  }
  if (p.ggml_grid && (!p.sym || (p.bits != 4 && p.bits != 8))) {
    bad(fmt::format("ggml_grid with {}-bit {}: llama.cpp's grid is symmetric 4-bit (Q4_0) or "
                    "8-bit (Q8_0)",
                    p.bits, p.sym ? "symmetric" : "asymmetric"));
  }
  if (p.block_size < 1 || p.block_size > 4096) {
    bad(fmt::format("block_size = {}: must be in 1..4096", p.block_size));
  }
}

QuantResult rtn_quantize(const float* w, int64_t n, int64_t k, const QuantParams& p) {
  validate(p);
  detail::check_shape(w, n, k);
  detail::check_weight_finite(w, n, k);
  const detail::Grid grid = detail::make_grid(p.bits, p.sym, p.mse, p.ggml_grid);
  const int64_t g = p.group_size == -1 ? k : p.group_size;
  const int64_t groups = (k + g - 1) / g;

  QuantResult r;
  r.n = n;
  r.k = k;
  r.bits = p.bits;
  r.group_size = p.group_size;
  r.codes.resize(static_cast<size_t>(n * k));
  r.dequant.resize(static_cast<size_t>(n * k));
  r.scales.resize(static_cast<size_t>(groups * n));
  r.zeros.resize(static_cast<size_t>(groups * n));
  r.g_idx.resize(static_cast<size_t>(k));
  for (int64_t c = 0; c < k; ++c) r.g_idx[c] = static_cast<int32_t>(c / g);

  std::vector<double> row_loss(static_cast<size_t>(n), 0.0);
  std::vector<int64_t> bad_group(static_cast<size_t>(n), -1);
  core::parallel_for(n, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const float* wr = w + row * k;
      double loss = 0;
      for (int64_t grp = 0; grp < groups; ++grp) {
        const int64_t c0 = grp * g, c1 = std::min(k, c0 + g);
        const detail::GroupParams gp = detail::find_params(wr + c0, c1 - c0, grid);
        // Codes from the fp32 scale (as the reference rounds them), dequantized values from the
        // fp16 scale the file holds.
        const float s16 = detail::scale_to_fp16(gp.scale);
        if (!std::isfinite(s16) && bad_group[row] < 0) bad_group[row] = grp;
        r.scales[grp * n + row] = s16;
        r.zeros[grp * n + row] = gp.zero;
        for (int64_t c = c0; c < c1; ++c) {
          const int32_t q = detail::quant_code(wr[c], gp.scale, gp.zero, grid.maxq);
          const float dq = detail::dequant_value(q, s16, gp.zero);
          r.codes[row * k + c] = static_cast<uint8_t>(q);
          r.dequant[row * k + c] = dq;
          const double e = static_cast<double>(wr[c]) - dq;
          loss += e * e;
        }
      }
      row_loss[row] = loss;
    }
  });
  detail::throw_if_scale_overflow(bad_group.data(), n);
  double loss = 0;
  for (double l : row_loss) loss += l;
  r.loss = loss / 2;
  return r;
}

}  // namespace gptq::quant
