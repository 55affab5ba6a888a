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

namespace {

backend::Act to_backend(arch::Activation a) {
  switch (a) {
    case arch::Activation::kSilu: return backend::Act::kSilu;
    case arch::Activation::kGelu: return backend::Act::kGelu;
    case arch::Activation::kGeluTanh: return backend::Act::kGeluTanh;
    case arch::Activation::kRelu: return backend::Act::kRelu;
  }
  return backend::Act::kSilu;
}

}  // namespace

Decoder::Decoder(config::ModelConfig cfg, arch::ArchDesc desc, backend::Device device)
    : cfg_(std::move(cfg)), desc_(std::move(desc)), ops_(backend::ops_for(device)) {
  act_ = to_backend(desc_.activation);
  const int64_t rot = cfg_.rotary_dim > 0 ? cfg_.rotary_dim : cfg_.head_dim;
  rope_ = backend::rope_freqs(cfg_.rope_theta, rot, cfg_.rope_scaling);
  if (cfg_.rope_local_theta) rope_local_ = backend::rope_freqs(*cfg_.rope_local_theta, rot, cfg_.rope_local_scaling);
}

KVCache Decoder::make_cache(int64_t capacity) const {
  return KVCache(cfg_.num_hidden_layers, capacity, cfg_.num_key_value_heads, cfg_.head_dim);
}

void Decoder::embed(const ModelWeights& w, const int32_t* tokens, int64_t t, float* hidden, int64_t pos0) const {
  const int64_t d = cfg_.hidden_size;
  for (int64_t i = 0; i < t; ++i) {
    if (tokens[i] < 0 || tokens[i] >= cfg_.vocab_size) {
      throw Error(ErrorKind::kArgument,
                  fmt::format("token id {} at position {} is outside the vocabulary [0, {})", tokens[i], i,
                              cfg_.vocab_size));
    }
    w.embed.row(tokens[i], hidden + i * d);  // fp32 or 16-bit rows: converted here
  }
  finish_embedding(hidden, t, pos0, w.positions);
}

void Decoder::finish_embedding(float* hidden, int64_t t, int64_t pos0, const std::vector<float>& positions) const {
  const int64_t D = cfg_.hidden_size;
  // Gemma: times sqrt(hidden_size), computed in fp32 as transformers does for fp32 weights.
  if (desc_.scale_embedding) ops_.scale(hidden, t * D, std::sqrt(static_cast<float>(D)));
  if (cfg_.embedding_multiplier != 1.0) ops_.scale(hidden, t * D, static_cast<float>(cfg_.embedding_multiplier));
  if (desc_.positions == arch::Positions::kLearned) {
    const int64_t rows = static_cast<int64_t>(positions.size()) / D;
    const int64_t first = pos0 + desc_.position_offset;
    if (first + t > rows) {
      throw Error(ErrorKind::kArgument, fmt::format("positions {}..{} exceed the learned position table of {} rows",
                                                    pos0, pos0 + t - 1, rows - desc_.position_offset));
    }
    ops_.add(hidden, positions.data() + first * D, t * D);
  }
}

void Decoder::norm(const float* x, const float* weight, const float* bias, int64_t rows, int64_t n, float* y) const {
  const float eps = static_cast<float>(cfg_.rms_norm_eps);
  if (desc_.norm == arch::NormKind::kLayer) {
    ops_.layer_norm(x, weight, bias, rows, n, eps, y);
  } else {
    ops_.rms_norm(x, weight, desc_.norm_weight_offset, rows, n, eps, y);
  }
}

void Decoder::project(const BlockWeights& b, arch::Role first, const float* x, int64_t t,
                      const std::function<float*(arch::Role)>& out) const {
  if (const arch::FusedDesc* f = desc_.fused_of(first)) {
    // One linear [sum N_part, K]: its output rows hold the parts side by side, in `roles` order.
    const Linear& lin = b.at(f->roles.front());
    std::vector<float> y(static_cast<size_t>(t * lin.n()));
    lin.forward(x, t, y.data());
    if (f->per_head) {
      // GPT-NeoX: each head's parts side by side, [heads, parts, hd]; every part has H heads.
      const int64_t hd = cfg_.head_dim, parts = static_cast<int64_t>(f->roles.size());
      const int64_t heads = lin.n() / (parts * hd);
      for (int64_t p = 0; p < parts; ++p) {
        float* dst = out(f->roles[static_cast<size_t>(p)]);
        for (int64_t i = 0; i < t; ++i) {
          for (int64_t h = 0; h < heads; ++h) {
            std::memcpy(dst + (i * heads + h) * hd, y.data() + i * lin.n() + (h * parts + p) * hd, hd * sizeof(float));
          }
        }
      }
      return;
    }
    int64_t col = 0;
    for (arch::Role r : f->roles) {
      const int64_t n = linear_shape(cfg_, r)[0];
      float* dst = out(r);
      for (int64_t i = 0; i < t; ++i) std::memcpy(dst + i * n, y.data() + i * lin.n() + col, n * sizeof(float));
      col += n;
    }
    return;
  }
  // The linears that read x (the description's shared-input group) in one call, so that
  // quantized ones run in one parallel region.
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
  const int64_t rot = cfg_.rotary_dim > 0 ? cfg_.rotary_dim : hd;
  if (pos0 + t > cache.capacity()) {
    throw Error(ErrorKind::kArgument, fmt::format("sequence of {} tokens exceeds the context of {} tokens",
                                                  pos0 + t, cache.capacity()));
  }
  const bool sliding = !cfg_.layer_attention.empty() &&
                       cfg_.layer_attention[static_cast<size_t>(layer)] == arch::AttentionKind::kSliding;
  const backend::RopeFreqs& rope = sliding && !rope_local_.inv_freq.empty() ? rope_local_ : rope_;
  std::vector<float> x(static_cast<size_t>(t * D)), y(static_cast<size_t>(t * D));
  // GPT-NeoX's parallel residual: every sublayer reads the block's input, x + attn(ln1(x)) +
  // mlp(ln2(x)); otherwise each reads the previous one's result.
  std::vector<float> block_in;
  if (desc_.parallel_residual) block_in.assign(hidden, hidden + t * D);
  const float* src = desc_.parallel_residual ? block_in.data() : hidden;
  for (size_t si = 0; si < desc_.sublayers.size(); ++si) {
    const auto& sl = desc_.sublayers[si];
    if (b.norms[si].empty()) {
      std::copy(src, src + t * D, x.begin());  // OLMo 2: no pre-norm
    } else {
      norm(src, b.norms[si].data(), b.norm_biases.empty() ? nullptr : b.norm_biases[si].data(), t, D, x.data());
    }
    if (sl.kind == arch::SublayerKind::kAttention) {
      using arch::Role;
      if (report(Role::kQ, x.data(), t)) return;
      std::vector<float> q(static_cast<size_t>(t * H * hd)), attn(static_cast<size_t>(t * H * hd));
      float* kc = cache.k(cache_layer) + pos0 * KV * hd;  // [T, KV*hd] slots for the new positions
      float* vc = cache.v(cache_layer) + pos0 * KV * hd;
      project(b, Role::kQ, x.data(), t, [&](Role r) { return r == Role::kQ ? q.data() : r == Role::kK ? kc : vc; });
      // Qwen3 / Gemma 3: RMSNorm of every head over head_dim, before RoPE.
      // OLMo 2: over the whole projection instead.
      const bool full = desc_.qk_norm_full;
      if (!b.q_norm.empty()) norm(q.data(), b.q_norm.data(), nullptr, full ? t : t * H, full ? H * hd : hd, q.data());
      if (!b.k_norm.empty()) norm(kc, b.k_norm.data(), nullptr, full ? t : t * KV, full ? KV * hd : hd, kc);
      // HF "rotate_half" RoPE on the first `rot` dims of each head: dimension i pairs with
      // i + rot/2 (not the interleaved pairs of Meta's original code; converted checkpoints have
      // q/k rows permuted to match). Cohere keeps the interleaved pairs (2i, 2i+1).
      if (desc_.positions == arch::Positions::kRope) {
        const auto style =
            desc_.rope_style == arch::RopeStyle::kInterleaved ? backend::Rope::kInterleaved : backend::Rope::kRotateHalf;
        ops_.rope(q.data(), t, H, hd, rot, rope, pos0, style);
        ops_.rope(kc, t, KV, hd, rot, rope, pos0, style);
      }
      backend::AttentionShape a;
      a.heads = H;
      a.kv_heads = KV;
      a.head_dim = hd;
      a.scale = static_cast<float>(cfg_.attn_scale > 0 ? cfg_.attn_scale : 1.0 / std::sqrt(static_cast<double>(hd)));
      a.window = sliding ? cfg_.sliding_window : 0;
      a.softcap = static_cast<float>(cfg_.attn_softcap);
      ops_.attention(q.data(), cache.k(cache_layer), cache.v(cache_layer), t, pos0, a, attn.data());
      if (report(Role::kO, attn.data(), t)) return;
      b.at(Role::kO).forward(attn.data(), t, y.data());
    } else if (sl.kind == arch::SublayerKind::kGatedMlp) {
      using arch::Role;
      if (report(Role::kGate, x.data(), t)) return;
      std::vector<float> g(static_cast<size_t>(t * F)), u(static_cast<size_t>(t * F));
      project(b, Role::kGate, x.data(), t, [&](Role r) { return r == Role::kGate ? g.data() : u.data(); });
      ops_.gated(act_, g.data(), u.data(), t * F);  // act(gate) * up
      if (report(Role::kDown, g.data(), t)) return;
      b.at(Role::kDown).forward(g.data(), t, y.data());
    } else {
      using arch::Role;
      if (report(Role::kUp, x.data(), t)) return;
      std::vector<float> u(static_cast<size_t>(t * F));
      b.at(Role::kUp).forward(x.data(), t, u.data());
      ops_.activation(act_, u.data(), t * F);  // down(act(up(x)))
      if (report(Role::kDown, u.data(), t)) return;
      b.at(Role::kDown).forward(u.data(), t, y.data());
    }
    // Gemma 2/3: the sublayer's output is normed before the residual add.
    if (!b.post_norms.empty() && !b.post_norms[si].empty()) norm(y.data(), b.post_norms[si].data(), nullptr, t, D, y.data());
    if (cfg_.residual_multiplier != 1.0) ops_.scale(y.data(), t * D, static_cast<float>(cfg_.residual_multiplier));
    ops_.add(hidden, y.data(), t * D);
  }
}

void Decoder::logits(const ModelWeights& w, const float* hidden, int64_t t, int64_t rows, float* out) const {
  const int64_t D = cfg_.hidden_size;
  rows = std::min(rows, t);
  std::vector<float> x(static_cast<size_t>(rows * D));
  norm(hidden + (t - rows) * D, w.final_norm.data(), w.final_norm_bias.empty() ? nullptr : w.final_norm_bias.data(),
       rows, D, x.data());
  // [rows, D] x [V, D]^T: dense_gemv / sgemm for an fp32 head, dense16_gemm for a 16-bit one.
  w.head().forward(x.data(), rows, out);
  if (cfg_.logit_multiplier != 1.0) ops_.scale(out, rows * cfg_.vocab_size, static_cast<float>(cfg_.logit_multiplier));
  if (cfg_.final_softcap > 0) ops_.softcap(out, rows * cfg_.vocab_size, static_cast<float>(cfg_.final_softcap));
}

void Decoder::forward(const ModelWeights& w, const int32_t* tokens, int64_t t, KVCache& cache,
                      int64_t logit_rows, float* out) const {
  const int64_t pos0 = cache.size();
  std::vector<float> hidden(static_cast<size_t>(t * cfg_.hidden_size));
  embed(w, tokens, t, hidden.data(), pos0);
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
    block_forward(w.blocks[l], l, hidden.data(), t, pos0, cache);
  }
  cache.set_size(pos0 + t);
  if (logit_rows > 0) logits(w, hidden.data(), t, logit_rows, out);
}

}  // namespace gptq::model
