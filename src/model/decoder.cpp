#include "model/decoder.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include "backend/cpu/dense.h"
#include "core/parallel.h"
#include "gptq/error.h"

namespace gptq::model {

KVCache::KVCache(int64_t layers, int64_t capacity, int64_t kv_heads, int64_t head_dim)
    : capacity_(capacity), row_(kv_heads * head_dim),
      k_(static_cast<size_t>(layers * capacity * kv_heads * head_dim)),
      v_(static_cast<size_t>(layers * capacity * kv_heads * head_dim)) {}

Decoder::Decoder(config::ModelConfig cfg, arch::ArchDesc desc, backend::Device device)
    : cfg_(std::move(cfg)), desc_(std::move(desc)), ops_(backend::ops_for(device)) {
  const int64_t half = cfg_.head_dim / 2;
  inv_freq_.resize(half);
  const auto& rs = cfg_.rope_scaling;
  for (int64_t i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(cfg_.rope_theta, static_cast<double>(2 * i) / static_cast<double>(cfg_.head_dim));
    if (rs.type == config::RopeScaling::Type::kLinear) {
      f /= rs.factor;
    } else if (rs.type == config::RopeScaling::Type::kLlama3) {
      // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, and the band in
      // between interpolated smoothly.
      const double old_ctx = static_cast<double>(rs.original_max_position_embeddings);
      const double low_wavelen = old_ctx / rs.low_freq_factor;
      const double high_wavelen = old_ctx / rs.high_freq_factor;
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f /= rs.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (old_ctx / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        f = (1.0 - smooth) * f / rs.factor + smooth * f;
      }
    }
    inv_freq_[i] = static_cast<float>(f);
  }
}

KVCache Decoder::make_cache(int64_t capacity) const {
  return KVCache(cfg_.num_hidden_layers, capacity, cfg_.num_key_value_heads, cfg_.head_dim);
}

void Decoder::embed(const ModelWeights& w, const int32_t* tokens, int64_t t, float* hidden) const {
  const int64_t d = cfg_.hidden_size;
  for (int64_t i = 0; i < t; ++i) {
    if (tokens[i] < 0 || tokens[i] >= cfg_.vocab_size) {
      throw Error(ErrorKind::kArgument,
                  fmt::format("token id {} at position {} is outside the vocabulary [0, {})", tokens[i], i,
                              cfg_.vocab_size));
    }
    w.embed.row(tokens[i], hidden + i * d);  // fp32 or 16-bit rows: converted here
  }
}

void Decoder::rms_norm(const float* x, const float* weight, int64_t t, float* y) const {
  ops_.rms_norm(x, weight, 0.0f, t, cfg_.hidden_size, static_cast<float>(cfg_.rms_norm_eps), y);
}

// HF "rotate_half" RoPE: dimension i pairs with i + hd/2 (not the interleaved pairs of Meta's
// original code; converted checkpoints have q/k rows permuted to match).
void Decoder::rope(float* x, int64_t t, int64_t heads, int64_t pos0) const {
  ops_.rope(x, t, heads, cfg_.head_dim, cfg_.head_dim, inv_freq_.data(), pos0, backend::Rope::kRotateHalf);
}

// q [T, H*hd]; k, v: the cache rows [pos0+T, KV*hd]; out [T, H*hd].
void Decoder::attention(const float* q, const float* k, const float* v, int64_t t, int64_t pos0,
                        float* out) const {
  backend::AttentionShape a;
  a.heads = cfg_.num_attention_heads;
  a.kv_heads = cfg_.num_key_value_heads;
  a.head_dim = cfg_.head_dim;
  a.scale = 1.0f / std::sqrt(static_cast<float>(cfg_.head_dim));
  ops_.attention(q, k, v, t, pos0, a, out);
}

// The linears that read x (the description's shared-input group of `first`) in one call, so that
// quantized ones run in one parallel region.
void Decoder::run_shared(const BlockWeights& b, arch::Role first, const float* x, int64_t t,
                         const std::function<float*(arch::Role)>& out) const {
  std::vector<const Linear*> layers;
  std::vector<float*> ys;
  for (arch::Role r : desc_.shared_with(first)) {
    layers.push_back(&b.at(r));
    ys.push_back(out(r));
  }
  Linear::forward_shared_input(layers, x, t, ys);
}

void Decoder::block_forward(const BlockWeights& b, int64_t layer, float* hidden, int64_t t, int64_t pos0,
                            KVCache& cache, const LinearInputHook* hook, std::optional<arch::Role> stop_at,
                            int64_t cache_layer) const {
  if (cache_layer < 0) cache_layer = layer;
  auto report = [&](arch::Role r, const float* x, int64_t n) {
    if (hook) (*hook)(r, x, n);
    return stop_at && *stop_at == r;
  };
  const int64_t D = cfg_.hidden_size, H = cfg_.num_attention_heads, KV = cfg_.num_key_value_heads;
  const int64_t hd = cfg_.head_dim, F = cfg_.intermediate_size;
  if (pos0 + t > cache.capacity()) {
    throw Error(ErrorKind::kArgument, fmt::format("sequence of {} tokens exceeds the context of {} tokens",
                                                  pos0 + t, cache.capacity()));
  }
  std::vector<float> x(static_cast<size_t>(t * D)), y(static_cast<size_t>(t * D));
  for (size_t si = 0; si < desc_.sublayers.size(); ++si) {
    const auto& sl = desc_.sublayers[si];
    rms_norm(hidden, b.norms[si].data(), t, x.data());
    if (sl.kind == arch::SublayerKind::kAttention) {
      using arch::Role;
      if (report(Role::kQ, x.data(), t)) return;
      std::vector<float> q(static_cast<size_t>(t * H * hd)), attn(static_cast<size_t>(t * H * hd));
      float* kc = cache.k(cache_layer) + pos0 * KV * hd;  // [T, KV*hd] slots for the new positions
      float* vc = cache.v(cache_layer) + pos0 * KV * hd;
      run_shared(b, Role::kQ, x.data(), t, [&](Role r) { return r == Role::kQ ? q.data() : r == Role::kK ? kc : vc; });
      rope(q.data(), t, H, pos0);
      rope(kc, t, KV, pos0);
      attention(q.data(), cache.k(cache_layer), cache.v(cache_layer), t, pos0, attn.data());
      if (report(Role::kO, attn.data(), t)) return;
      b.at(Role::kO).forward(attn.data(), t, y.data());
    } else {
      using arch::Role;
      if (report(Role::kGate, x.data(), t)) return;
      std::vector<float> g(static_cast<size_t>(t * F)), u(static_cast<size_t>(t * F));
      run_shared(b, Role::kGate, x.data(), t, [&](Role r) { return r == Role::kGate ? g.data() : u.data(); });
      ops_.gated(backend::Act::kSilu, g.data(), u.data(), t * F);  // SiLU(gate) * up
      if (report(Role::kDown, g.data(), t)) return;
      b.at(Role::kDown).forward(g.data(), t, y.data());
    }
    ops_.add(hidden, y.data(), t * D);
  }
}

void Decoder::logits(const ModelWeights& w, const float* hidden, int64_t t, int64_t rows, float* out) const {
  const int64_t D = cfg_.hidden_size;
  rows = std::min(rows, t);
  std::vector<float> x(static_cast<size_t>(rows * D));
  rms_norm(hidden + (t - rows) * D, w.final_norm.data(), rows, x.data());
  // [rows, D] x [V, D]^T: dense_gemv / sgemm for an fp32 head, dense16_gemm for a 16-bit one.
  w.head().forward(x.data(), rows, out);
}

void Decoder::forward(const ModelWeights& w, const int32_t* tokens, int64_t t, KVCache& cache,
                      int64_t logit_rows, float* out) const {
  const int64_t pos0 = cache.size();
  std::vector<float> hidden(static_cast<size_t>(t * cfg_.hidden_size));
  embed(w, tokens, t, hidden.data());
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
    block_forward(w.blocks[l], l, hidden.data(), t, pos0, cache);
  }
  cache.set_size(pos0 + t);
  if (logit_rows > 0) logits(w, hidden.data(), t, logit_rows, out);
}

}  // namespace gptq::model
