// The architectures gptq.cpp knows, by config.json model_type.
#pragma once

#include "arch/arch.h"

namespace gptq::arch {

// One function per architecture file; each returns the description for a config.
ArchDesc describe_llama(const config::ModelConfig& cfg);    // llama.cpp (also Mistral)
ArchDesc describe_qwen2(const config::ModelConfig& cfg);    // qwen2.cpp

// The Llama-style block shared by the family: pre-norm attention then a gated MLP.
ArchDesc llama_style_block(const std::string& model_type, bool qkv_bias, bool o_bias, bool mlp_bias);

}  // namespace gptq::arch
