// The Llama family: Llama 1/2/3, Mistral and Qwen2 share one block; they differ in which
// linears carry a bias (Qwen2: q/k/v; Llama with attention_bias: q/k/v/o) and in config keys
// handled by src/config (rope scaling, sliding window).
#include <fmt/format.h>

#include "arch/arch.h"
#include "gptq/error.h"

namespace gptq::arch {

const LinearDesc& ArchDesc::linear(Role r) const {
  for (const auto& l : linears) {
    if (l.role == r) return l;
  }
  throw Error(ErrorKind::kUnsupported, fmt::format("{}: architecture has no such linear", model_type));
}

std::string ArchDesc::block_module(int layer, const std::string& name) const {
  std::string p = block_prefix;
  const auto pos = p.find("{layer}");
  p.replace(pos, 7, std::to_string(layer));
  return p + name;
}

ArchDesc describe(const config::ModelConfig& cfg) {
  const auto& t = cfg.model_type;
  if (t != "llama" && t != "mistral" && t != "qwen2") {
    throw Error(ErrorKind::kUnsupported,
                fmt::format("model_type \"{}\" is not supported; supported: llama, mistral, qwen2", t));
  }
  ArchDesc d;
  d.model_type = t;
  d.sublayers = {{SublayerKind::kAttention, "input_layernorm"},
                 {SublayerKind::kGatedMlp, "post_attention_layernorm"}};
  const bool qkv_bias = cfg.attention_bias;
  const bool o_bias = t == "llama" && cfg.attention_bias;  // Qwen2's o_proj has no bias
  d.linears = {
      {Role::kQ, "self_attn.q_proj", qkv_bias},      {Role::kK, "self_attn.k_proj", qkv_bias},
      {Role::kV, "self_attn.v_proj", qkv_bias},      {Role::kO, "self_attn.o_proj", o_bias},
      {Role::kGate, "mlp.gate_proj", cfg.mlp_bias},  {Role::kUp, "mlp.up_proj", cfg.mlp_bias},
      {Role::kDown, "mlp.down_proj", cfg.mlp_bias},
  };
  d.sequential_groups = {{Role::kQ, Role::kK, Role::kV}, {Role::kO}, {Role::kGate, Role::kUp}, {Role::kDown}};
  return d;
}

}  // namespace gptq::arch
