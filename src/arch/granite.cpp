// Granite (IBM Granite 3.x dense): the Llama block (biases as attention_bias / mlp_bias say) with
// four multipliers from config.json: embeddings times embedding_multiplier, each sublayer's output
// times residual_multiplier before the residual add, attention scores times attention_multiplier
// (in place of head_dim^-0.5), and logits divided by logits_scaling.
#include "arch/registry.h"

namespace gptq::arch {

ArchDesc describe_granite(std::string_view model_type, const ArchOptions& o) {
  ArchDesc d = llama_style_block(model_type, o, BiasRule::kAttentionBias, BiasRule::kAttentionBias, BiasRule::kMlpBias);
  d.keys.granite_multipliers = true;
  return d;
}

}  // namespace gptq::arch
