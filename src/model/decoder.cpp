#include "model/decoder.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include "core/parallel.h"
#include "gptq/error.h"

namespace gptq::model {

KVCache::KVCache(int64_t layers, int64_t capacity, int64_t kv_heads, int64_t head_dim, int64_t max_tokens,
                 backend::Device device)
    : capacity_(capacity), max_tokens_(max_tokens > 0 ? std::min(max_tokens, capacity) : capacity),
      row_(kv_heads * head_dim),
      k_(device, static_cast<size_t>(layers * capacity * kv_heads * head_dim) * sizeof(float)),
      v_(device, static_cast<size_t>(layers * capacity * kv_heads * head_dim) * sizeof(float)),
      scratch_(device) {}

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

KVCache Decoder::make_cache(int64_t capacity, int64_t max_tokens, int64_t layers) const {
  return KVCache(layers > 0 ? layers : cfg_.num_hidden_layers, capacity, cfg_.num_key_value_heads, cfg_.head_dim,
                 max_tokens, ops_.device());
}

namespace {
size_t floats(int64_t n) { return backend::Arena::round_up(static_cast<size_t>(n) * sizeof(float)); }
}  // namespace

backend::AttentionShape Decoder::attention_shape(int64_t layer) const {
  const int64_t hd = cfg_.head_dim;
  const bool sliding = !cfg_.layer_attention.empty() &&
                       cfg_.layer_attention[static_cast<size_t>(layer)] == arch::AttentionKind::kSliding;
  backend::AttentionShape a;
  a.heads = cfg_.num_attention_heads;
  a.kv_heads = cfg_.num_key_value_heads;
  a.head_dim = hd;
  a.scale = static_cast<float>(cfg_.attn_scale > 0 ? cfg_.attn_scale : 1.0 / std::sqrt(static_cast<double>(hd)));
  a.window = sliding ? cfg_.sliding_window : 0;
  a.softcap = static_cast<float>(cfg_.attn_softcap);
  return a;
}

size_t Decoder::input_group(const BlockWeights& b, arch::Role first, std::array<const Linear*, kNumRoles>& out) const {
  if (desc_.fused_of(first)) {
    out[0] = &b.at(first);
    return 1;
  }
  for (const auto& g : desc_.shared_inputs) {
    if (std::find(g.begin(), g.end(), first) == g.end()) continue;
    size_t n = 0;
    for (arch::Role r : g) out[n++] = &b.at(r);
    return n;
  }
  out[0] = &b.at(first);
  return 1;
}

size_t Decoder::block_scratch_bytes(const BlockWeights& b, int64_t layer, int64_t t, int64_t pos0) const {
  const int64_t D = cfg_.hidden_size, H = cfg_.num_attention_heads, hd = cfg_.head_dim, F = cfg_.intermediate_size;
  // What project() takes: the fused output, then the linears' own scratch.
  auto project_bytes = [&](arch::Role first) {
    std::array<const Linear*, kNumRoles> g{};
    const size_t n = input_group(b, first, g);
    size_t bytes = desc_.fused_of(first) ? floats(t * g[0]->n()) : 0;
    for (size_t i = 0; i < n; ++i) bytes += g[i]->scratch_bytes(t);
    return bytes;
  };
  size_t sub = 0;
  for (const auto& sl : desc_.sublayers) {
    using arch::Role;
    size_t here = 0;
    if (sl.kind == arch::SublayerKind::kAttention) {
      const size_t scores = floats(ops_.attention_scratch(t, pos0, attention_shape(layer)));
      here = 2 * floats(t * H * hd) +
             std::max({project_bytes(Role::kQ), scores, b.at(Role::kO).scratch_bytes(t)});
    } else if (sl.kind == arch::SublayerKind::kGatedMlp) {
      here = 2 * floats(t * F) + std::max(project_bytes(Role::kGate), b.at(Role::kDown).scratch_bytes(t));
    } else {
      here = floats(t * F) + std::max(b.at(Role::kUp).scratch_bytes(t), b.at(Role::kDown).scratch_bytes(t));
    }
    sub = std::max(sub, here);
  }
  return (desc_.parallel_residual ? 3 : 2) * floats(t * D) + sub;
}

size_t Decoder::logits_scratch_bytes(const ModelWeights& w, int64_t rows) const {
  return floats(rows * cfg_.hidden_size) + w.head().scratch_bytes(rows);
}

size_t Decoder::scratch_bytes(const ModelWeights& w, int64_t t, int64_t pos0) const {
  size_t blocks = 0;
  for (size_t l = 0; l < w.blocks.size(); ++l) {
    blocks = std::max(blocks, block_scratch_bytes(w.blocks[l], static_cast<int64_t>(l), t, pos0));
  }
  return floats(t * cfg_.hidden_size) + std::max(blocks, logits_scratch_bytes(w, t));
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
                      const std::array<float*, kNumRoles>& out, backend::Arena& scratch) const {
  auto dst_of = [&](arch::Role r) { return out[static_cast<size_t>(role_index(r))]; };
  if (const arch::FusedDesc* f = desc_.fused_of(first)) {
    // One linear [sum N_part, K]: its output rows hold the parts side by side, in `roles` order.
    const Linear& lin = b.at(f->roles.front());
    backend::ArenaScope scope(scratch);
    float* y = scratch.take<float>(static_cast<size_t>(t * lin.n()));
    lin.forward(x, t, y, &scratch);
    if (f->per_head) {
      // GPT-NeoX: each head's parts side by side, [heads, parts, hd]; every part has H heads.
      const int64_t hd = cfg_.head_dim, parts = static_cast<int64_t>(f->roles.size());
      const int64_t heads = lin.n() / (parts * hd);
      for (int64_t p = 0; p < parts; ++p) {
        float* dst = dst_of(f->roles[static_cast<size_t>(p)]);
        for (int64_t i = 0; i < t; ++i) {
          for (int64_t h = 0; h < heads; ++h) {
            std::memcpy(dst + (i * heads + h) * hd, y + i * lin.n() + (h * parts + p) * hd, hd * sizeof(float));
          }
        }
      }
      return;
    }
    int64_t col = 0;
    for (arch::Role r : f->roles) {
      const int64_t n = linear_shape(cfg_, r)[0];
      float* dst = dst_of(r);
      for (int64_t i = 0; i < t; ++i) std::memcpy(dst + i * n, y + i * lin.n() + col, n * sizeof(float));
      col += n;
    }
    return;
  }
  // The linears that read x (the description's shared-input group) in one call, so that
  // quantized ones run in one parallel region.
  std::array<const Linear*, kNumRoles> layers{};
  std::array<float*, kNumRoles> ys{};
  const size_t n = input_group(b, first, layers);
  for (const auto& g : desc_.shared_inputs) {
    if (std::find(g.begin(), g.end(), first) == g.end()) continue;
    for (size_t i = 0; i < n; ++i) ys[i] = dst_of(g[i]);
  }
  if (n == 1) ys[0] = dst_of(first);
  Linear::forward_shared_input(std::span(layers.data(), n), x, t, std::span(ys.data(), n), &scratch);
}

void Decoder::block_forward(const BlockWeights& b, int64_t layer, float* hidden, int64_t t, int64_t pos0,
                            KVCache& cache, const LinearInputHook* hook, std::optional<arch::Role> stop_at,
                            int64_t cache_layer, size_t first_sublayer, const float* block_input,
                            const float* output_input) const {
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
  backend::Arena& arena = cache.scratch();
  // A direct caller (calibration) sizes the arena here; under forward() it is already large enough.
  if (arena.used() == 0) arena.reserve(block_scratch_bytes(b, layer, t, pos0));
  backend::ArenaScope block_scope(arena);
  const bool sliding = !cfg_.layer_attention.empty() &&
                       cfg_.layer_attention[static_cast<size_t>(layer)] == arch::AttentionKind::kSliding;
  const backend::RopeFreqs& rope = sliding && !rope_local_.inv_freq.empty() ? rope_local_ : rope_;
  float* x = arena.take<float>(static_cast<size_t>(t * D));
  float* y = arena.take<float>(static_cast<size_t>(t * D));
  // GPT-NeoX's parallel residual: every sublayer reads the block's input, x + attn(ln1(x)) +
  // mlp(ln2(x)); otherwise each reads the previous one's result.
  if (first_sublayer > desc_.sublayers.size()) {
    throw Error(ErrorKind::kArgument, fmt::format("block_forward: cannot start at sublayer {} of {}", first_sublayer,
                                                  desc_.sublayers.size()));
  }
  if (first_sublayer > 0 && desc_.parallel_residual && !block_input) {
    throw Error(ErrorKind::kArgument, "block_forward: a parallel-residual block started past its first sublayer needs "
                                      "the block input");
  }
  const float* src = hidden;
  if (desc_.parallel_residual) {
    float* block_in = arena.take<float>(static_cast<size_t>(t * D));
    std::memcpy(block_in, first_sublayer > 0 ? block_input : hidden, static_cast<size_t>(t * D) * sizeof(float));
    src = block_in;
  }
  using arch::Role;
  auto slot = [](Role r) { return static_cast<size_t>(role_index(r)); };
  for (size_t si = first_sublayer; si < desc_.sublayers.size(); ++si) {
    const auto& sl = desc_.sublayers[si];
    backend::ArenaScope sublayer_scope(arena);
    if (si == first_sublayer && output_input) {
      // Resumed at the output linear, from the input a run stopped there saw.
      const Role r = output_role(sl.kind);
      if (report(r, output_input, t)) return;
      b.at(r).forward(output_input, t, y, &arena);
    } else {
      if (b.norms[si].empty()) {
        std::copy(src, src + t * D, x);  // OLMo 2: no pre-norm
      } else {
        norm(src, b.norms[si].data(), b.norm_biases.empty() ? nullptr : b.norm_biases[si].data(), t, D, x);
      }
      std::array<float*, kNumRoles> out{};
      if (sl.kind == arch::SublayerKind::kAttention) {
        if (report(Role::kQ, x, t)) return;
        float* q = arena.take<float>(static_cast<size_t>(t * H * hd));
        float* attn = arena.take<float>(static_cast<size_t>(t * H * hd));
        float* kc = cache.k(cache_layer) + pos0 * KV * hd;  // [T, KV*hd] slots for the new positions
        float* vc = cache.v(cache_layer) + pos0 * KV * hd;
        out[slot(Role::kQ)] = q;
        out[slot(Role::kK)] = kc;
        out[slot(Role::kV)] = vc;
        project(b, Role::kQ, x, t, out, arena);
        // Qwen3 / Gemma 3: RMSNorm of every head over head_dim, before RoPE.
        // OLMo 2: over the whole projection instead.
        const bool full = desc_.qk_norm_full;
        if (!b.q_norm.empty()) norm(q, b.q_norm.data(), nullptr, full ? t : t * H, full ? H * hd : hd, q);
        if (!b.k_norm.empty()) norm(kc, b.k_norm.data(), nullptr, full ? t : t * KV, full ? KV * hd : hd, kc);
        // HF "rotate_half" RoPE on the first `rot` dims of each head: dimension i pairs with
        // i + rot/2 (not the interleaved pairs of Meta's original code; converted checkpoints have
        // q/k rows permuted to match). Cohere keeps the interleaved pairs (2i, 2i+1).
        if (desc_.positions == arch::Positions::kRope) {
          const auto style =
              desc_.rope_style == arch::RopeStyle::kInterleaved ? backend::Rope::kInterleaved : backend::Rope::kRotateHalf;
          ops_.rope(q, t, H, hd, rot, rope, pos0, style);
          ops_.rope(kc, t, KV, hd, rot, rope, pos0, style);
        }
        const backend::AttentionShape a = attention_shape(layer);
        {
          backend::ArenaScope scores_scope(arena);
          float* scores = arena.take<float>(static_cast<size_t>(ops_.attention_scratch(t, pos0, a)));
          ops_.attention(q, cache.k(cache_layer), cache.v(cache_layer), t, pos0, a, attn, scores);
        }
        if (report(Role::kO, attn, t)) return;
        b.at(Role::kO).forward(attn, t, y, &arena);
      } else if (sl.kind == arch::SublayerKind::kGatedMlp) {
        if (report(Role::kGate, x, t)) return;
        float* g = arena.take<float>(static_cast<size_t>(t * F));
        float* u = arena.take<float>(static_cast<size_t>(t * F));
        out[slot(Role::kGate)] = g;
        out[slot(Role::kUp)] = u;
        project(b, Role::kGate, x, t, out, arena);
        ops_.gated(act_, g, u, t * F);  // act(gate) * up
        if (report(Role::kDown, g, t)) return;
        b.at(Role::kDown).forward(g, t, y, &arena);
      } else {
        if (report(Role::kUp, x, t)) return;
        float* u = arena.take<float>(static_cast<size_t>(t * F));
        b.at(Role::kUp).forward(x, t, u, &arena);
        ops_.activation(act_, u, t * F);  // down(act(up(x)))
        if (report(Role::kDown, u, t)) return;
        b.at(Role::kDown).forward(u, t, y, &arena);
      }
    }
    // Gemma 2/3: the sublayer's output is normed before the residual add.
    if (!b.post_norms.empty() && !b.post_norms[si].empty()) norm(y, b.post_norms[si].data(), nullptr, t, D, y);
    if (cfg_.residual_multiplier != 1.0) ops_.scale(y, t * D, static_cast<float>(cfg_.residual_multiplier));
    ops_.add(hidden, y, t * D);
  }
}

void Decoder::logits(const ModelWeights& w, const float* hidden, int64_t t, int64_t rows, float* out,
                     backend::Arena* scratch) const {
  const int64_t D = cfg_.hidden_size;
  rows = std::min(rows, t);
  std::vector<float> own;
  float* x = nullptr;
  std::optional<backend::ArenaScope> scope;
  if (scratch) {
    scope.emplace(*scratch);
    x = scratch->take<float>(static_cast<size_t>(rows * D));
  } else {
    own.resize(static_cast<size_t>(rows * D));
    x = own.data();
  }
  norm(hidden + (t - rows) * D, w.final_norm.data(), w.final_norm_bias.empty() ? nullptr : w.final_norm_bias.data(),
       rows, D, x);
  // [rows, D] x [V, D]^T: dense_gemv / sgemm for an fp32 head, dense16_gemm for a 16-bit one.
  w.head().forward(x, rows, out, scratch);
  if (cfg_.logit_multiplier != 1.0) ops_.scale(out, rows * cfg_.vocab_size, static_cast<float>(cfg_.logit_multiplier));
  if (cfg_.final_softcap > 0) ops_.softcap(out, rows * cfg_.vocab_size, static_cast<float>(cfg_.final_softcap));
}

void Decoder::forward(const ModelWeights& w, const int32_t* tokens, int64_t t, KVCache& cache,
                      int64_t logit_rows, float* out) const {
  const int64_t pos0 = cache.size();
  backend::Arena& arena = cache.scratch();
  if (arena.capacity() == 0) {
    // Sized once for the session: calls of up to max_tokens tokens anywhere in the context (the
    // largest prefill, and decode steps, whose attention scratch grows with the position).
    const int64_t cap = cache.capacity(), big = std::max<int64_t>(1, cache.max_tokens());
    const int64_t small = std::min<int64_t>(big, 4);
    arena.reserve(std::max({scratch_bytes(w, big, cap - big), scratch_bytes(w, small, cap - small),
                            scratch_bytes(w, 1, cap - 1)}));
  }
  arena.reserve(scratch_bytes(w, t, pos0));  // a call longer than max_tokens grows it once
  backend::ArenaScope scope(arena);
  float* hidden = arena.take<float>(static_cast<size_t>(t * cfg_.hidden_size));
  embed(w, tokens, t, hidden, pos0);
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
    block_forward(w.blocks[l], l, hidden, t, pos0, cache);
  }
  cache.set_size(pos0 + t);
  if (logit_rows > 0) logits(w, hidden, t, logit_rows, out, &arena);
}

}  // namespace gptq::model
