// OPT: pre-norm LayerNorm blocks (do_layer_norm_before; the post-norm OPT-350m is refused), learned
// absolute positions with an offset of 2, a plain ReLU MLP (fc1, fc2), biases on every linear when
// enable_bias (default true), separate q/k/v/out projections, the head tied to the embedding.
#include "arch/registry.h"

namespace gptq::arch {

ArchDesc describe_opt(std::string_view model_type, const ArchOptions& o) {
  ArchDesc d;
  d.model_type = std::string(model_type);
  d.embed = "model.decoder.embed_tokens";
  d.final_norm = "model.decoder.final_layer_norm";
  d.lm_head = "lm_head";
  d.block_prefix = "model.decoder.layers.{layer}.";
  d.sublayers = {{SublayerKind::kAttention, "self_attn_layer_norm", ""},
                 {SublayerKind::kMlp, "final_layer_norm", ""}};
  const bool b = o.attention_bias;
  d.linears = {{Role::kQ, "self_attn.q_proj", b},
               {Role::kK, "self_attn.k_proj", b},
               {Role::kV, "self_attn.v_proj", b},
               {Role::kO, "self_attn.out_proj", b},
               {Role::kUp, "fc1", b},
               {Role::kDown, "fc2", b}};
  d.shared_inputs = {{Role::kQ, Role::kK, Role::kV}, {Role::kO}, {Role::kUp}, {Role::kDown}};
  d.sequential_groups = {{Role::kQ, Role::kK, Role::kV}, {Role::kO}, {Role::kUp}, {Role::kDown}};
  d.norm = NormKind::kLayer;
  d.activation = Activation::kRelu;
  d.positions = Positions::kLearned;
  d.position_embed = "model.decoder.embed_positions";
  d.position_offset = 2;
  d.keys.intermediate_size = "ffn_dim";
  d.keys.bias = "enable_bias";
  d.keys.activation = "activation_function";
  d.keys.norm_eps = "";  // OPT's LayerNorms use torch's default epsilon, 1e-5, with no key
  d.keys.default_norm_eps = 1e-5;
  d.keys.default_attention_bias = true;
  d.keys.opt_layout = true;
  d.keys.default_tied = true;
  return d;
}

}  // namespace gptq::arch
