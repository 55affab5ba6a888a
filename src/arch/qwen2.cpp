// Qwen2: the Llama block with biases on q/k/v always (its config has no attention_bias key),
// never on o_proj; the MLP follows mlp_bias.
#include "arch/registry.h"

namespace gptq::arch {

ArchDesc describe_qwen2(std::string_view model_type, const ArchOptions& o) {
  return llama_style_block(model_type, o, BiasRule::kAlways, BiasRule::kNone, BiasRule::kMlpBias);
}

}  // namespace gptq::arch
