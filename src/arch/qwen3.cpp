// Qwen3: the Llama block (biases as attention_bias says) with a per-head RMSNorm over head_dim on
// q and k before RoPE; sliding-window layers as for Qwen2.
#include "arch/registry.h"

namespace gptq::arch {

ArchDesc describe_qwen3(std::string_view model_type, const ArchOptions& o) {
  ArchDesc d = llama_style_block(model_type, o, BiasRule::kAttentionBias, BiasRule::kAttentionBias,
                                 BiasRule::kNone);
  d.q_norm = "self_attn.q_norm";
  d.k_norm = "self_attn.k_norm";
  d.keys.sliding = SlidingRule::kQwen;
  return d;
}

}  // namespace gptq::arch
