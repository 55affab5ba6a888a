// StableLM (StableLM 2, StableLM-3B-4E1T): the Llama block with LayerNorms that have biases,
// partial rotary (partial_rotary_factor, default 0.25), biases on q/k/v when use_qkv_bias (never
// on o or the MLP), and, when use_parallel_residual, the parallel block x + attn(ln(x)) + mlp(ln(x))
// with the one input_layernorm. Per-head q/k LayerNorms (qk_layernorm, StableLM 2 12B) are refused.
#include "arch/registry.h"

namespace gptq::arch {

ArchDesc describe_stablelm(std::string_view model_type, const ArchOptions& o) {
  ArchDesc d = llama_style_block(model_type, o, BiasRule::kAttentionBias, BiasRule::kNone, BiasRule::kNone);
  d.norm = NormKind::kLayer;
  d.keys.bias = "use_qkv_bias";
  d.keys.norm_eps = "layer_norm_eps";
  d.keys.default_norm_eps = 1e-5;
  d.keys.partial_rotary = true;
  d.keys.default_partial_rotary = 0.25;
  d.keys.parallel_residual_key = true;
  d.keys.default_parallel_residual = false;
  d.keys.parallel_shares_norm = true;
  d.keys.refused_if_true = {"qk_layernorm"};
  return d;
}

}  // namespace gptq::arch
