// Llama 1/2/3/3.x and Mistral: one block; biases only when the config asks for them
// (attention_bias covers q/k/v/o, mlp_bias the MLP). RoPE scaling and sliding windows are config
// matters handled in src/config and the executor.
#include "arch/registry.h"

namespace gptq::arch {

ArchDesc llama_style_block(const std::string& model_type, bool qkv_bias, bool o_bias, bool mlp_bias) {
  ArchDesc d;
  d.model_type = model_type;
  d.sublayers = {{SublayerKind::kAttention, "input_layernorm"},
                 {SublayerKind::kGatedMlp, "post_attention_layernorm"}};
  d.linears = {
      {Role::kQ, "self_attn.q_proj", qkv_bias},   {Role::kK, "self_attn.k_proj", qkv_bias},
      {Role::kV, "self_attn.v_proj", qkv_bias},   {Role::kO, "self_attn.o_proj", o_bias},
      {Role::kGate, "mlp.gate_proj", mlp_bias},   {Role::kUp, "mlp.up_proj", mlp_bias},
      {Role::kDown, "mlp.down_proj", mlp_bias},
  };
  d.sequential_groups = {{Role::kQ, Role::kK, Role::kV}, {Role::kO}, {Role::kGate, Role::kUp}, {Role::kDown}};
  return d;
}

ArchDesc describe_llama(const config::ModelConfig& cfg) {
  return llama_style_block(cfg.model_type, cfg.attention_bias, cfg.attention_bias, cfg.mlp_bias);
}

}  // namespace gptq::arch
