// Mistral: the Llama block without biases; every layer attends within sliding_window when the
// config sets one (transformers' class default is 4096 when the key is absent).
#include "arch/registry.h"

namespace gptq::arch {

ArchDesc describe_mistral(std::string_view model_type, const ArchOptions& o) {
  ArchDesc d = llama_style_block(model_type, o, BiasRule::kNone, BiasRule::kNone, BiasRule::kNone);
  d.keys.sliding = SlidingRule::kEveryLayer;
  d.keys.default_sliding_window = 4096;
  return d;
}

}  // namespace gptq::arch
