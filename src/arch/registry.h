// The architectures gptq.cpp knows, by config.json model_type.
#pragma once

#include "arch/arch.h"

namespace gptq::arch {

// One function per architecture file; each returns the description for a config's options.
ArchDesc describe_llama(std::string_view model_type, const ArchOptions& o);    // llama.cpp
ArchDesc describe_mistral(std::string_view model_type, const ArchOptions& o);  // mistral.cpp
ArchDesc describe_qwen2(std::string_view model_type, const ArchOptions& o);    // qwen2.cpp
ArchDesc describe_qwen3(std::string_view model_type, const ArchOptions& o);    // qwen3.cpp
ArchDesc describe_phi3(std::string_view model_type, const ArchOptions& o);     // phi3.cpp
ArchDesc describe_gemma(std::string_view model_type, const ArchOptions& o);    // gemma.cpp
ArchDesc describe_gemma2(std::string_view model_type, const ArchOptions& o);   // gemma.cpp
ArchDesc describe_gemma3(std::string_view model_type, const ArchOptions& o);   // gemma.cpp
ArchDesc describe_gpt_neox(std::string_view model_type, const ArchOptions& o); // gpt_neox.cpp
ArchDesc describe_opt(std::string_view model_type, const ArchOptions& o);      // opt.cpp
ArchDesc describe_gpt2(std::string_view model_type, const ArchOptions& o);     // gpt2.cpp
ArchDesc describe_granite(std::string_view model_type, const ArchOptions& o);  // granite.cpp
ArchDesc describe_olmo2(std::string_view model_type, const ArchOptions& o);    // olmo2.cpp
ArchDesc describe_stablelm(std::string_view model_type, const ArchOptions& o);  // stablelm.cpp
ArchDesc describe_cohere(std::string_view model_type, const ArchOptions& o);    // cohere.cpp
ArchDesc describe_starcoder2(std::string_view model_type, const ArchOptions& o);  // starcoder2.cpp

// The Llama-style block shared by the family: pre-norm attention then a gated MLP, q/k/v and
// gate/up sharing inputs, true-sequential [q,k,v], [o], [gate,up], [down]. Biases follow the
// rules, resolved against the options.
ArchDesc llama_style_block(std::string_view model_type, const ArchOptions& o, BiasRule qkv, BiasRule out,
                           BiasRule mlp);

// A rule resolved against a config's options.
bool resolve_bias(BiasRule rule, const ArchOptions& o);

}  // namespace gptq::arch
