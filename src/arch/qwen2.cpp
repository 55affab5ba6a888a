// Qwen2: the Llama block with biases on q/k/v (never on o_proj or the MLP).
#include "arch/registry.h"

namespace gptq::arch {

ArchDesc describe_qwen2(const config::ModelConfig& cfg) {
  return llama_style_block(cfg.model_type, /*qkv_bias=*/true, /*o_bias=*/false, cfg.mlp_bias);
}

}  // namespace gptq::arch
