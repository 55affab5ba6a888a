// Which loaders of the ecosystem take a GPTQ folder, from the rules those projects state in
// their code (versions in README's interop table). Used by `gptq inspect`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/model_config.h"

namespace gptq::checkpoint {

// A block linear as the folder holds it.
struct LinearShape {
  std::string module;     // full name
  int64_t n = 0, k = 0;   // outputs, inputs
  bool quantized = false; // has .qweight
};

struct LoaderVerdict {
  std::string loader;                // "transformers", "GPTQModel", "vLLM gptq_marlin", "vLLM <= 0.11 gptq"
  bool loads = true;
  std::vector<std::string> reasons;  // why not (or caveats when it loads), one line each
};

// For each loader, whether it takes a folder with quantization config `q` and these linears:
// - transformers (through GPTQModel's kernels) and GPTQModel: bits 2/3/4/8, and every
//   unquantized block linear declared (a "-:" rule, or modules_in_block_to_quantize for
//   transformers); transformers also needs every quantized linear's K divisible by its group
//   size (GPTQModel takes other K on its torch kernel, which pads: a caveat, not a refusal), and
//   reads no "+:" overrides (optimum), so every quantized module must have the base scheme there;
// - vLLM gptq_marlin (vLLM 0.33's only GPTQ path, auto_gptq.py, and Marlin's shape rules): 4 or
//   8 bits, symmetric, no act-order unless group -1 (per dynamic rule too), group
//   -1/32/64/128, K divisible by the group (when smaller than K), N and K divisible by 32/b
//   (qzeros and qweight sized in whole words); Marlin pads N and K to its tiles itself;
// - vLLM <= 0.11 gptq (exllama fallback): bits 2/3/4/8, K divisible by the group, N divisible by
//   32/b (32 for 3 bits); it reads every folder's zeros as v1, so a gptq_v2 folder is off by one.
// Family rules (model_type; versions as above): transformers refuses every GPTQ gpt2 folder (its
// GPT2PreTrainedModel._init_weights reads c_proj.weight, which a quantized linear lacks);
// GPTQModel refuses a phi3 folder whose mlp.gate_up_proj is quantized as one module (it splits
// Phi3MLP into gate_proj and up_proj and expects them apart; transformers refuses that split
// layout, which GPTQModel writes) and loads a gpt_neox folder without
// its embed_out head (transformers 5 names it lm_head, and GPTQModel does not map the name).
std::vector<LoaderVerdict> loader_verdicts(const config::QuantizationConfig& q, const std::vector<LinearShape>& linears,
                                           const std::string& model_type = "");

}  // namespace gptq::checkpoint
