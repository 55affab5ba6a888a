// StarCoder2: the Llama attention (q/k/v/o, GQA, RoPE) with LayerNorms that have biases, a plain
// GELU-tanh MLP (mlp.c_fc, mlp.c_proj), biases on every linear when use_bias (default true), a
// sliding window on every layer when the config sets one (default none), the head tied to the
// embedding by default.
#include "arch/registry.h"

namespace gptq::arch {

ArchDesc describe_starcoder2(std::string_view model_type, const ArchOptions& o) {
  ArchDesc d;
  d.model_type = std::string(model_type);
  d.sublayers = {{SublayerKind::kAttention, "input_layernorm", ""},
                 {SublayerKind::kMlp, "post_attention_layernorm", ""}};
  const bool b = o.attention_bias;  // use_bias
  d.linears = {{Role::kQ, "self_attn.q_proj", b}, {Role::kK, "self_attn.k_proj", b},
               {Role::kV, "self_attn.v_proj", b}, {Role::kO, "self_attn.o_proj", b},
               {Role::kUp, "mlp.c_fc", b},        {Role::kDown, "mlp.c_proj", b}};
  d.shared_inputs = {{Role::kQ, Role::kK, Role::kV}, {Role::kO}, {Role::kUp}, {Role::kDown}};
  d.sequential_groups = {{Role::kQ, Role::kK, Role::kV}, {Role::kO}, {Role::kUp}, {Role::kDown}};
  d.norm = NormKind::kLayer;
  d.activation = Activation::kGeluTanh;
  d.keys.bias = "use_bias";
  d.keys.default_attention_bias = true;
  d.keys.norm_eps = "norm_epsilon";
  d.keys.default_norm_eps = 1e-5;
  d.keys.sliding = SlidingRule::kEveryLayer;
  d.keys.default_tied = true;
  return d;
}

}  // namespace gptq::arch
