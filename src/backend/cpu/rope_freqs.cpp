// RoPE frequency tables from a RopeScaling, following transformers' rope_init functions
// (modeling_rope_utils: default, linear, llama3, yarn, longrope) step for step, in double and
// rounded to fp32 once.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "backend/rope.h"
#include "gptq/error.h"

namespace gptq::backend {
namespace {

// theta^(-2i/rot) for i < rot/2: the unscaled inverse frequencies.
std::vector<double> base_freqs(double theta, int64_t rot) {
  std::vector<double> f(static_cast<size_t>(rot / 2));
  for (int64_t i = 0; i < rot / 2; ++i) {
    f[static_cast<size_t>(i)] = 1.0 / std::pow(theta, static_cast<double>(2 * i) / static_cast<double>(rot));
  }
  return f;
}

std::vector<float> to_f32(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

// Llama 3.1: long wavelengths slowed by `factor`, short ones kept, the band between interpolated.
void llama3(std::vector<double>& f, const RopeScaling& s) {
  const double old_ctx = static_cast<double>(s.original_max_position_embeddings);
  const double low_wavelen = old_ctx / s.low_freq_factor, high_wavelen = old_ctx / s.high_freq_factor;
  for (double& x : f) {
    const double wavelen = 2.0 * std::numbers::pi / x;
    if (wavelen > low_wavelen) {
      x /= s.factor;
    } else if (wavelen >= high_wavelen) {
      const double smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      x = (1.0 - smooth) * x / s.factor + smooth * x;
    }
  }
}

// YaRN: frequencies that turn fewer than beta_slow times over the pretraining context are
// interpolated (divided by factor), those that turn more than beta_fast times are kept, with a
// linear ramp over the dimensions between. Returns the attention factor.
double yarn(std::vector<double>& f, double theta, int64_t rot, const RopeScaling& s) {
  auto mscale_of = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
  double attn = 0;
  if (s.attention_factor) {
    attn = *s.attention_factor;
  } else if (s.mscale != 0 && s.mscale_all_dim != 0) {
    attn = mscale_of(s.factor, s.mscale) / mscale_of(s.factor, s.mscale_all_dim);
  } else {
    attn = mscale_of(s.factor, 1.0);
  }
  const double dim = static_cast<double>(rot), orig = static_cast<double>(s.original_max_position_embeddings);
  // The dimension at which a frequency turns `rotations` times over the pretraining context.
  auto correction_dim = [&](double rotations) {
    return dim * std::log(orig / (rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(theta));
  };
  double low = correction_dim(s.beta_fast), high = correction_dim(s.beta_slow);
  if (s.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, dim - 1);
  if (low == high) high += 0.001;  // transformers: avoids a zero-width ramp
  for (size_t i = 0; i < f.size(); ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    const double extrapolation = 1.0 - ramp;  // share of the unscaled frequency
    f[i] = f[i] / s.factor * (1.0 - extrapolation) + f[i] * extrapolation;
  }
  return attn;
}

std::vector<double> divided(const std::vector<double>& f, const std::vector<double>& by, const char* name) {
  if (by.size() != f.size()) {
    throw Error(ErrorKind::kArgument,
                fmt::format("longrope {} has {} entries; the {} rotary dims need {}", name, by.size(), 2 * f.size(),
                            f.size()));
  }
  std::vector<double> out(f.size());
  for (size_t i = 0; i < f.size(); ++i) out[i] = f[i] / by[i];
  return out;
}

}  // namespace

RopeFreqs rope_freqs(double theta, int64_t rot, const RopeScaling& s) {
  RopeFreqs r;
  std::vector<double> f = base_freqs(theta, rot);
  switch (s.type) {
    case RopeScaling::Type::kNone: break;
    case RopeScaling::Type::kLinear:
      for (double& x : f) x /= s.factor;
      break;
    case RopeScaling::Type::kLlama3: llama3(f, s); break;
    case RopeScaling::Type::kYarn: r.attention_factor = static_cast<float>(yarn(f, theta, rot, s)); break;
    case RopeScaling::Type::kLongrope: {
      const double orig = static_cast<double>(s.original_max_position_embeddings);
      double attn = 1.0;
      if (s.attention_factor) {
        attn = *s.attention_factor;
      } else if (s.factor > 1.0) {
        attn = std::sqrt(1.0 + std::log(s.factor) / std::log(orig));
      }
      r.attention_factor = static_cast<float>(attn);
      r.inv_freq_long = to_f32(divided(f, s.long_factor, "long_factor"));
      r.long_after = s.original_max_position_embeddings;
      f = divided(f, s.short_factor, "short_factor");
      break;
    }
  }
  r.inv_freq = to_f32(f);
  return r;
}

}  // namespace gptq::backend
