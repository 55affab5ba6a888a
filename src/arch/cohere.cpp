// Cohere (Command R, Aya 23): the parallel block x + attn(ln(x)) + mlp(ln(x)) with one
// input_layernorm, a LayerNorm without bias, interleaved (GPT-J style) RoPE, a gated SiLU MLP,
// biases on q/k/v/o when attention_bias, logits times logit_scale (default 0.0625), the head tied
// to the embedding by default. Per-head q/k LayerNorms (use_qk_norm, Command R+) are refused.
#include "arch/registry.h"

namespace gptq::arch {

ArchDesc describe_cohere(std::string_view model_type, const ArchOptions& o) {
  ArchDesc d = llama_style_block(model_type, o, BiasRule::kAttentionBias, BiasRule::kAttentionBias, BiasRule::kNone);
  d.sublayers = {{SublayerKind::kAttention, "input_layernorm", ""}, {SublayerKind::kGatedMlp, "input_layernorm", ""}};
  d.parallel_residual = true;
  d.norm = NormKind::kLayer;
  d.norm_bias = false;
  d.rope_style = RopeStyle::kInterleaved;
  d.keys.norm_eps = "layer_norm_eps";
  d.keys.default_norm_eps = 1e-5;
  d.keys.logit_scale = true;
  d.keys.default_tied = true;
  d.keys.refused_if_true = {"use_qk_norm"};
  return d;
}

}  // namespace gptq::arch
