// Gemma (1), Gemma 2 and Gemma 3's text tower. All three: RMSNorm weights stored as w - 1 (the
// norm multiplies by 1 + w), embeddings scaled by sqrt(hidden_size), a GELU-tanh gated MLP, tied
// heads. Gemma 2 adds a post-norm after each sublayer (post_attention_layernorm after attention,
// pre/post_feedforward_layernorm around the MLP), attention and final logit softcapping, an
// attention scale of query_pre_attn_scalar^-0.5, and alternating sliding / global layers. Gemma 3
// drops the softcapping defaults, adds q/k norms (with the +1 offset) and a second RoPE for its
// sliding layers (5 sliding : 1 global by default).
#include "arch/registry.h"

namespace gptq::arch {

ArchDesc describe_gemma(std::string_view model_type, const ArchOptions& o) {
  ArchDesc d = llama_style_block(model_type, o, BiasRule::kAttentionBias, BiasRule::kAttentionBias,
                                 BiasRule::kNone);
  d.norm_weight_offset = 1.0f;
  d.scale_embedding = true;
  d.activation = Activation::kGeluTanh;
  d.keys.default_tied = true;
  return d;
}

ArchDesc describe_gemma2(std::string_view model_type, const ArchOptions& o) {
  ArchDesc d = describe_gemma(model_type, o);
  d.sublayers = {
      {SublayerKind::kAttention, "input_layernorm", "post_attention_layernorm"},
      {SublayerKind::kGatedMlp, "pre_feedforward_layernorm", "post_feedforward_layernorm"}};
  d.attention_pattern = {AttentionKind::kSliding, AttentionKind::kGlobal};
  d.keys.activation = "hidden_activation";
  d.keys.sliding = SlidingRule::kPattern;
  d.keys.default_sliding_window = 4096;
  d.keys.softcapping = true;
  d.keys.default_attn_softcap = 50.0;
  d.keys.default_final_softcap = 30.0;
  d.keys.query_pre_attn_scalar = true;
  return d;
}

ArchDesc describe_gemma3(std::string_view model_type, const ArchOptions& o) {
  ArchDesc d = describe_gemma2(model_type, o);
  d.q_norm = "self_attn.q_norm";
  d.k_norm = "self_attn.k_norm";
  d.attention_pattern.assign(6, AttentionKind::kSliding);
  d.attention_pattern.back() = AttentionKind::kGlobal;
  d.keys.default_attn_softcap = 0;
  d.keys.default_final_softcap = 0;
  d.keys.local_rope = true;
  d.keys.bidirectional = true;
  return d;
}

}  // namespace gptq::arch
