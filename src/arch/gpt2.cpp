// GPT-2: pre-norm LayerNorm blocks, learned absolute positions (wpe), q/k/v fused in attn.c_attn
// ([q; k; v] output rows), a plain GELU-tanh MLP (c_fc, c_proj), biases everywhere, every linear
// stored as a Conv1D ([in, out], transposed at load), the head tied to wte. Sizes under GPT-2's
// key names (n_embd, n_inner, n_layer, n_head, n_positions).
#include "arch/registry.h"

namespace gptq::arch {

ArchDesc describe_gpt2(std::string_view model_type, const ArchOptions&) {
  ArchDesc d;
  d.model_type = std::string(model_type);
  d.embed = "transformer.wte";
  d.final_norm = "transformer.ln_f";
  d.lm_head = "lm_head";
  d.block_prefix = "transformer.h.{layer}.";
  d.sublayers = {{SublayerKind::kAttention, "ln_1", ""}, {SublayerKind::kMlp, "ln_2", ""}};
  d.linears = {{Role::kQ, "attn.c_attn", true},
               {Role::kO, "attn.c_proj", true},
               {Role::kUp, "mlp.c_fc", true},
               {Role::kDown, "mlp.c_proj", true}};
  d.fused = {{"attn.c_attn", {Role::kQ, Role::kK, Role::kV}}};
  d.shared_inputs = {{Role::kQ}, {Role::kO}, {Role::kUp}, {Role::kDown}};
  d.sequential_groups = {{Role::kQ}, {Role::kO}, {Role::kUp}, {Role::kDown}};
  d.norm = NormKind::kLayer;
  d.activation = Activation::kGeluTanh;
  d.conv1d_weights = true;
  d.positions = Positions::kLearned;
  d.position_embed = "transformer.wpe";
  d.keys.hidden_size = "n_embd";
  d.keys.intermediate_size = "n_inner";
  d.keys.num_layers = "n_layer";
  d.keys.num_heads = "n_head";
  d.keys.max_positions = "n_positions";
  d.keys.norm_eps = "layer_norm_epsilon";
  d.keys.default_norm_eps = 1e-5;
  d.keys.activation = "activation_function";
  d.keys.gpt2_attention = true;
  d.keys.default_tied = true;
  return d;
}

}  // namespace gptq::arch
