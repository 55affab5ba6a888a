// OLMo 2: the Llama block without pre-norms: each sublayer's output is RMS-normed before the
// residual add (post_attention_layernorm, post_feedforward_layernorm), and q and k are RMS-normed
// over the whole projection (heads * head_dim, one weight per element) before RoPE. Biases as
// attention_bias says; the MLP has none.
#include "arch/registry.h"

namespace gptq::arch {

ArchDesc describe_olmo2(std::string_view model_type, const ArchOptions& o) {
  ArchDesc d = llama_style_block(model_type, o, BiasRule::kAttentionBias, BiasRule::kAttentionBias, BiasRule::kNone);
  d.sublayers = {{SublayerKind::kAttention, "", "post_attention_layernorm"},
                 {SublayerKind::kGatedMlp, "", "post_feedforward_layernorm"}};
  d.q_norm = "self_attn.q_norm";
  d.k_norm = "self_attn.k_norm";
  d.qk_norm_full = true;
  return d;
}

}  // namespace gptq::arch
