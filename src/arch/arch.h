// An architecture is a description, not a forward pass: tensor-name templates, the quirks that
// change the maths (biases, tied embeddings), the block as an ordered list of sublayers, and the
// order in which GPTQ quantizes the block's linears. One generic executor (src/model) runs every
// description; the same description drives loading, calibration order and inference.
#pragma once

#include <string>
#include <vector>

#include "config/model_config.h"

namespace gptq::arch {

// What a linear does in the block; the executor wires it by role.
enum class Role { kQ, kK, kV, kO, kGate, kUp, kDown };

struct LinearDesc {
  Role role;
  std::string name;  // module path inside the block, e.g. "self_attn.q_proj"
  bool bias = false;
};

// Sublayers run in order, each as x = x + f(norm(x)).
enum class SublayerKind { kAttention, kGatedMlp };

struct SublayerDesc {
  SublayerKind kind;
  std::string norm;  // RMSNorm weight inside the block, e.g. "input_layernorm"
};

struct ArchDesc {
  std::string model_type;
  std::string embed = "model.embed_tokens";       // [vocab, hidden]
  std::string final_norm = "model.norm";          // [hidden]
  std::string lm_head = "lm_head";                // [vocab, hidden]; absent when tied
  std::string block_prefix = "model.layers.{layer}.";
  std::vector<SublayerDesc> sublayers;
  std::vector<LinearDesc> linears;                 // every linear of a block
  // GPTQ's true-sequential groups: each group's inputs are collected after the previous groups
  // were quantized (SPEC §3).
  std::vector<std::vector<Role>> sequential_groups;

  const LinearDesc& linear(Role r) const;
  // "model.layers.3.self_attn.q_proj"
  std::string block_module(int layer, const std::string& name) const;
};

// The description for a config's model_type (biases follow the config's flags). Throws
// Error(kUnsupported) listing the supported types.
ArchDesc describe(const config::ModelConfig& cfg);

}  // namespace gptq::arch
