// Qwen2: the Llama block with biases on q/k/v always (its config has no attention_bias key),
// never on o_proj; the MLP follows mlp_bias. Sliding-window layers as Qwen2's config says
// (use_sliding_window, max_window_layers, or layer_types).
#include "arch/registry.h"

namespace gptq::arch {

ArchDesc describe_qwen2(std::string_view model_type, const ArchOptions& o) {
  ArchDesc d =
      llama_style_block(model_type, o, BiasRule::kAlways, BiasRule::kNone, BiasRule::kMlpBias);
  d.keys.sliding = SlidingRule::kQwen;
  return d;
}

}  // namespace gptq::arch
