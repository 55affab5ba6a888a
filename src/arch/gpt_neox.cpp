// GPT-NeoX (Pythia, GPT-NeoX-20B): LayerNorm with bias, q/k/v fused per head in
// attention.query_key_value ([heads, 3, head_dim] rows), partial rotary (rotary_pct /
// partial_rotary_factor, Pythia 0.25), a plain GELU MLP, biases on every linear when
// attention_bias (default true), the parallel residual x + attn(ln1(x)) + mlp(ln2(x)) when
// use_parallel_residual (default true), an untied head named embed_out.
#include "arch/registry.h"

namespace gptq::arch {

ArchDesc describe_gpt_neox(std::string_view model_type, const ArchOptions& o) {
  ArchDesc d;
  d.model_type = std::string(model_type);
  d.embed = "gpt_neox.embed_in";
  d.final_norm = "gpt_neox.final_layer_norm";
  d.lm_head = "embed_out";
  d.block_prefix = "gpt_neox.layers.{layer}.";
  d.sublayers = {{SublayerKind::kAttention, "input_layernorm", ""},
                 {SublayerKind::kMlp, "post_attention_layernorm", ""}};
  const bool b = o.attention_bias;
  d.linears = {{Role::kQ, "attention.query_key_value", b},
               {Role::kO, "attention.dense", b},
               {Role::kUp, "mlp.dense_h_to_4h", true},
               {Role::kDown, "mlp.dense_4h_to_h", true}};
  d.fused = {{"attention.query_key_value", {Role::kQ, Role::kK, Role::kV}, true}};
  d.shared_inputs = {{Role::kQ}, {Role::kO}, {Role::kUp}, {Role::kDown}};
  d.sequential_groups = {{Role::kQ}, {Role::kO}, {Role::kUp}, {Role::kDown}};
  d.norm = NormKind::kLayer;
  d.activation = Activation::kGelu;
  d.parallel_residual = true;
  d.keys.norm_eps = "layer_norm_eps";
  d.keys.default_norm_eps = 1e-5;
  d.keys.default_attention_bias = true;
  d.keys.parallel_residual_key = true;
  d.keys.partial_rotary = true;
  d.keys.default_partial_rotary = 0.25;
  d.keys.neox_rope_keys = true;
  return d;
}

}  // namespace gptq::arch
