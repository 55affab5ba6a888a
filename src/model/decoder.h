// The one generic decoder executor: runs any architecture description in fp32 on the CPU.
// Notation: T tokens, D = hidden_size, H query heads, KV key/value heads, hd = head_dim,
// F = intermediate_size, V = vocab_size.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "arch/arch.h"
#include "backend/buffer.h"
#include "backend/ops.h"
#include "config/model_config.h"
#include "model/weights.h"

namespace gptq::model {

// Keys and values of every layer for one sequence, and the session's scratch arena: every
// temporary of a forward pass (activations, attention scores, the quantized kernels' rounded
// inputs) is taken from it by offset. Decoder::forward sizes it on its first call for calls of
// up to max_tokens() tokens anywhere in the context, so later calls allocate nothing; a longer
// call grows it once (scratch().growths() counts that).
class KVCache {
 public:
  KVCache() = default;
  // max_tokens 0: capacity.
  KVCache(int64_t layers, int64_t capacity, int64_t kv_heads, int64_t head_dim, int64_t max_tokens = 0,
          backend::Device device = backend::Device::kCpu);
  int64_t capacity() const { return capacity_; }
  int64_t max_tokens() const { return max_tokens_; }
  int64_t size() const { return size_; }
  void set_size(int64_t n) { size_ = n; }
  void clear() { size_ = 0; }
  float* k(int64_t layer) { return k_.as<float>() + layer * capacity_ * row_; }  // [capacity, KV*hd]
  float* v(int64_t layer) { return v_.as<float>() + layer * capacity_ * row_; }  // [capacity, KV*hd]
  backend::Arena& scratch() { return scratch_; }
  const backend::Arena& scratch() const { return scratch_; }

 private:
  int64_t capacity_ = 0, max_tokens_ = 0, size_ = 0, row_ = 0;
  backend::Buffer k_, v_;  // [layers, capacity, KV*hd] fp32 each
  backend::Arena scratch_;
};

// Called with the input of each linear before it runs: (role, x [T, K], T). Used to collect
// GPTQ's calibration inputs. Linears that share an input (q/k/v, gate/up) are reported once,
// with the role of the first of them.
using LinearInputHook = std::function<void(arch::Role, const float*, int64_t)>;

class Decoder {
 public:
  // The ops come from `device`'s backend (backend::ops_for).
  Decoder(config::ModelConfig cfg, arch::ArchDesc desc, backend::Device device = backend::Device::kCpu);

  const config::ModelConfig& config() const { return cfg_; }
  const arch::ArchDesc& desc() const { return desc_; }

  // hidden [T, D] <- embedding rows of tokens at positions pos0.. (finished as below).
  // Error(kArgument) for ids outside [0, V).
  void embed(const ModelWeights& w, const int32_t* tokens, int64_t t, float* hidden, int64_t pos0 = 0) const;
  // What the architecture does to raw embedding rows hidden [T, D] at positions pos0..: Gemma's
  // scaling by sqrt(D), learned absolute positions (rows pos0 + offset + i of `positions`, [P, D]).
  // For callers that look rows up themselves (the quantization pipeline) too.
  void finish_embedding(float* hidden, int64_t t, int64_t pos0, const std::vector<float>& positions) const;

  // Runs block `layer` in place on hidden [T, D] for positions pos0 .. pos0+T-1. Keys and values
  // go to cache (slot = position); attention covers positions 0 .. pos0+T-1 of the cache.
  // With stop_at set, returns right after the hook has seen that role's input (hidden is then
  // left partly updated: calibration uses this to skip work it does not need). cache_layer
  // picks the cache slot (-1: `layer`), so calibration can use a one-layer cache.
  // first_sublayer > 0 starts at that sublayer, hidden holding the residual stream at its start
  // (what a run stopped at a role of that sublayer leaves in hidden), and, with a parallel
  // residual, block_input the block's input; the sublayers skipped must not be attention ones
  // whose keys a later one reads (none are). output_input, when given, is the input of that
  // first sublayer's output linear (o_proj, down_proj: output_role()) [T, K], as a run stopped
  // there saw it: the sublayer then starts at that linear, skipping its norm and the rest.
  void block_forward(const BlockWeights& b, int64_t layer, float* hidden, int64_t t, int64_t pos0,
                     KVCache& cache, const LinearInputHook* hook = nullptr,
                     std::optional<arch::Role> stop_at = std::nullopt, int64_t cache_layer = -1,
                     size_t first_sublayer = 0, const float* block_input = nullptr,
                     const float* output_input = nullptr) const;

  // The linear whose output a sublayer of this kind adds to the residual stream.
  static arch::Role output_role(arch::SublayerKind kind) {
    return kind == arch::SublayerKind::kAttention ? arch::Role::kO : arch::Role::kDown;
  }

  // logits [rows, V] for the last `rows` of hidden [T, D] (final norm, lm_head). Temporaries
  // come from scratch when given (logits_scratch_bytes(w, rows) of it), else are allocated.
  void logits(const ModelWeights& w, const float* hidden, int64_t t, int64_t rows, float* out,
              backend::Arena* scratch = nullptr) const;

  // Whole model: runs T new tokens after cache.size() cached ones, appends to the cache, and
  // writes logits for the last `logit_rows` tokens to out [logit_rows, V].
  void forward(const ModelWeights& w, const int32_t* tokens, int64_t t, KVCache& cache, int64_t logit_rows,
               float* out) const;

  // A cache of `capacity` positions whose arena forward() sizes for calls of up to max_tokens
  // tokens (0: capacity); layers 0: every layer of the model.
  KVCache make_cache(int64_t capacity, int64_t max_tokens = 0, int64_t layers = 0) const;

  // Bytes of scratch that one block_forward of block b takes for t tokens after pos0 cached ones.
  size_t block_scratch_bytes(const BlockWeights& b, int64_t layer, int64_t t, int64_t pos0) const;
  // Bytes of scratch that forward() takes for t tokens after pos0 cached ones.
  size_t scratch_bytes(const ModelWeights& w, int64_t t, int64_t pos0) const;
  size_t logits_scratch_bytes(const ModelWeights& w, int64_t rows) const;

  // True when a call over positions pos0 .. pos0+t-1 after pos0 cached ones would switch LongRoPE
  // to its long factors while the cache was rotated with the short ones: the caller then runs the
  // whole sequence again from an empty cache, as transformers' Phi-3 generation does.
  bool rope_invalidates_cache(int64_t pos0, int64_t t) const {
    return pos0 > 0 && !rope_.inv_freq_long.empty() && pos0 <= rope_.long_after && pos0 + t > rope_.long_after;
  }

 private:
  backend::AttentionShape attention_shape(int64_t layer) const;
  // The linears of b's shared-input group starting at `first`, or its fused tensor's linear,
  // and how many.
  size_t input_group(const BlockWeights& b, arch::Role first, std::array<const Linear*, kNumRoles>& out) const;
  // The architecture's norm (weight offset included) over rows of n.
  // LayerNorm takes `bias` (null: none); RMSNorm ignores it.
  void norm(const float* x, const float* weight, const float* bias, int64_t rows, int64_t n, float* y) const;
  // Runs the linears that read x, starting at role `first` (its shared-input group, or its fused
  // tensor), writing each role's output [T, N_role] to out[role_index(role)].
  void project(const BlockWeights& b, arch::Role first, const float* x, int64_t t,
               const std::array<float*, kNumRoles>& out, backend::Arena& scratch) const;

  config::ModelConfig cfg_;
  arch::ArchDesc desc_;
  backend::Act act_ = backend::Act::kSilu;
  backend::RopeFreqs rope_;        // after rope scaling
  backend::RopeFreqs rope_local_;  // sliding layers with their own RoPE (Gemma 3), else empty
  const backend::Ops& ops_;            // every non-linear op
};

}  // namespace gptq::model
