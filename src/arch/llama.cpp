// Llama 1/2/3/3.x and Mistral: one block; biases only when the config asks for them
// (attention_bias covers q/k/v/o, mlp_bias the MLP). RoPE scaling and sliding windows are config
// matters handled in src/config and the executor.
#include "arch/registry.h"

namespace gptq::arch {

bool resolve_bias(BiasRule rule, const ArchOptions& o) {
  switch (rule) {
    case BiasRule::kNone: return false;
    case BiasRule::kAlways: return true;
    case BiasRule::kAttentionBias: return o.attention_bias;
    case BiasRule::kMlpBias: return o.mlp_bias;
  }
  return false;
}

ArchDesc llama_style_block(std::string_view model_type, const ArchOptions& o, BiasRule qkv, BiasRule out,
                           BiasRule mlp) {
  ArchDesc d;
  d.model_type = std::string(model_type);
  d.sublayers = {{SublayerKind::kAttention, "input_layernorm", ""},
                 {SublayerKind::kGatedMlp, "post_attention_layernorm", ""}};
  const bool b_qkv = resolve_bias(qkv, o), b_o = resolve_bias(out, o), b_mlp = resolve_bias(mlp, o);
  d.linears = {
      {Role::kQ, "self_attn.q_proj", b_qkv}, {Role::kK, "self_attn.k_proj", b_qkv},
      {Role::kV, "self_attn.v_proj", b_qkv}, {Role::kO, "self_attn.o_proj", b_o},
      {Role::kGate, "mlp.gate_proj", b_mlp}, {Role::kUp, "mlp.up_proj", b_mlp},
      {Role::kDown, "mlp.down_proj", b_mlp},
  };
  d.shared_inputs = {{Role::kQ, Role::kK, Role::kV}, {Role::kO}, {Role::kGate, Role::kUp}, {Role::kDown}};
  d.sequential_groups = {{Role::kQ, Role::kK, Role::kV}, {Role::kO}, {Role::kGate, Role::kUp}, {Role::kDown}};
  return d;
}

ArchDesc describe_llama(std::string_view model_type, const ArchOptions& o) {
  return llama_style_block(model_type, o, BiasRule::kAttentionBias, BiasRule::kAttentionBias, BiasRule::kMlpBias);
}

}  // namespace gptq::arch
