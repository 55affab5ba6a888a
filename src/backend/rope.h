// RoPE as data: the scaling a config.json describes, and the frequency tables it produces
// (transformers' rope_init functions: default, linear, llama3, yarn, longrope). The tables are
// device-neutral host arrays; Ops::rope turns them into cos/sin for the positions of a call.
// config/ fills RopeScaling from the JSON (it includes this header for the struct only); the
// executor calls rope_freqs once per model.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace gptq::backend {

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3, kYarn, kLongrope };
  Type type = Type::kNone;
  // linear, llama3 and yarn: the interpolation factor; longrope: only the default of the
  // attention factor (the per-frequency factors do the scaling).
  double factor = 1.0;
  // llama3 only:
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  // llama3, yarn, longrope: the pretraining context (transformers: the top-level key, else the
  // rope object's, else max_position_embeddings; Phi-3's class default 4096).
  int64_t original_max_position_embeddings = 8192;
  // yarn and longrope: cos and sin are multiplied by it; unset: derived from factor (yarn:
  // 0.1 ln(s) + 1, or its mscale / mscale_all_dim ratio; longrope: sqrt(1 + ln s / ln orig)).
  std::optional<double> attention_factor;
  // yarn only (transformers' defaults; mscale and mscale_all_dim count only when both nonzero):
  double beta_fast = 32.0, beta_slow = 1.0;
  double mscale = 0.0, mscale_all_dim = 0.0;
  bool truncate = true;
  // longrope only: per-frequency divisors [rot/2] for calls that stay within
  // original_max_position_embeddings (short) and for calls that reach past it (long).
  std::vector<double> short_factor, long_factor;
};

// The tables of one RoPE: what Ops::rope reads.
struct RopeFreqs {
  std::vector<float> inv_freq;  // [rot/2]
  // LongRoPE: a forward call whose positions reach past long_after (pos0 + t > long_after) uses
  // these instead, as transformers switches per call on max(position_ids) + 1; empty: never.
  std::vector<float> inv_freq_long;
  int64_t long_after = 0;
  float attention_factor = 1.0f;  // cos and sin times this (yarn, longrope)

  // The inverse frequencies of a call over positions pos0 .. pos0 + t - 1.
  const float* for_call(int64_t pos0, int64_t t) const {
    return !inv_freq_long.empty() && pos0 + t > long_after ? inv_freq_long.data() : inv_freq.data();
  }
};

// The tables for base theta over `rot` rotary dims (even). Throws Error(kArgument) when a
// longrope factor list does not have rot/2 entries.
RopeFreqs rope_freqs(double theta, int64_t rot, const RopeScaling& s);

}  // namespace gptq::backend
