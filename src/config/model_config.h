// config.json (and quantize_config.json) as typed, validated structs. No tensors here.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "arch/arch.h"

namespace gptq::config {

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;
  // llama3 only:
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

// quantization_config as GPTQ tools write it (SPEC §2).
struct QuantizationConfig {
  int bits = 4;
  int group_size = 128;  // -1: one group per row
  bool desc_act = false;
  bool sym = true;
  double damp_percent = 0.01;
  bool true_sequential = true;
  bool static_groups = false;
  std::string checkpoint_format = "gptq";  // "gptq" (v1 zeros) or "gptq_v2"
  bool lm_head = false;
  // Block linears named here are quantized; empty means all. Entries are lists of module
  // suffixes like "self_attn.q_proj" (transformers' layout: a list of lists).
  std::vector<std::string> modules_in_block_to_quantize;
  // Module names (regex or suffix) that the "dynamic" key excludes with "-:" rules.
  std::vector<std::string> dynamic_exclude;
};

struct ModelConfig {
  std::string model_type;  // one of arch::supported_model_types()
  std::vector<std::string> architectures;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // the keys as written; which linears have biases: arch
  bool mlp_bias = false;
  arch::ArchDesc arch;          // the architecture description, resolved from the keys above
  std::string torch_dtype = "float32";
  std::string hidden_act = "silu";
  int32_t bos_token_id = -1;
  std::vector<int32_t> eos_token_ids;
  std::optional<QuantizationConfig> quant;
  std::string raw_json;    // config.json text as read, to write back with additions
  std::string origin;      // the file it came from, for messages
};

// Parses config.json text. Missing required keys, wrong JSON types, non-positive sizes,
// heads that do not divide, an unknown model_type (the message lists the supported ones) or an
// unsupported rope_scaling type: Error(kConfig) naming `origin` and the key.
ModelConfig parse_model_config(std::string_view json_text, std::string_view origin);
// Reads <dir>/config.json; takes quantization settings from its "quantization_config" or, if
// absent, from <dir>/quantize_config.json.
ModelConfig load_model_config(const std::filesystem::path& dir);
// Parses a quantization config object (the value of "quantization_config", or the whole of
// quantize_config.json). Error(kConfig) for bad values (bits not 2/3/4/8, ...).
QuantizationConfig parse_quantization_config(std::string_view json_text, std::string_view origin);

}  // namespace gptq::config
