// config.json (and quantize_config.json) as typed, validated structs. No tensors here.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "arch/arch.h"
#include "backend/rope.h"

namespace gptq::config {

// The RoPE scaling of config.json (the struct lives with the frequency maths in backend/rope.h).
using RopeScaling = backend::RopeScaling;

// One entry of quantization_config's "dynamic" object, as GPTQModel defines them: the key is
// "-:REGEX" (matching modules stay unquantized) or "+:REGEX" / "REGEX" (matching modules use the
// listed settings instead of the base ones). REGEX is matched from the start of the full module
// name (Python's re.match); the first matching rule, in file order, wins.
struct DynamicRule {
  std::string key;       // as written, prefix included
  std::string pattern;   // the regex alone
  bool exclude = false;  // "-:"
  std::optional<int> bits, group_size;
  std::optional<bool> desc_act, sym;
  std::shared_ptr<const std::regex> re;  // compiled pattern (ECMAScript syntax)
  bool matches(const std::string& module) const;  // from the start, as re.match
};

// The settings of one module after the dynamic rules.
struct ModuleScheme {
  bool quantized = true;
  int bits = 4;
  int group_size = 128;
  bool desc_act = false;
  bool sym = true;
  int rule = -1;  // index of the dynamic rule that matched, -1 for none
};

// Parses one rule from its key and value (an object). Error(kConfig) naming `origin` for a key
// that is not a valid regex or a value that is not an object; Error(kUnsupported) for bits not
// 2/3/4/8; Error(kConfig) for a group_size not -1 or positive, or non-boolean desc_act/sym.
DynamicRule parse_dynamic_rule(const std::string& key, const std::string& value_json, std::string_view origin);

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
  // The "dynamic" rules, in file order.
  std::vector<DynamicRule> dynamic;
  // meta.desc_act as we write it: the act-order used when quantizing (with static groups the
  // file declares desc_act false, its g_idx being trivial).
  std::optional<bool> meta_desc_act;
  // meta.quantizer: the tools that wrote the folder, "name:version" (a string or a list of them).
  std::vector<std::string> meta_quantizer;

  // The scheme of `module` (a full name such as "model.layers.0.mlp.down_proj"): the first
  // matching dynamic rule's settings over the base ones, or not quantized for a "-:" rule.
  ModuleScheme scheme_for(const std::string& module) const;
  // This config with the module's scheme as its base settings (for code that takes one config).
  QuantizationConfig for_module(const std::string& module) const;
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
  double rms_norm_eps = 1e-6;  // the norm's epsilon (rms_norm_eps, or the family's key: arch::ConfigKeys)
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  // Gemma 3: the RoPE of sliding-window layers (rope_parameters.sliding_attention, or
  // rope_local_base_freq without scaling); unset: every layer uses rope_theta / rope_scaling.
  std::optional<double> rope_local_theta;
  RopeScaling rope_local_scaling;
  int64_t rotary_dim = 0;        // dims of each head that RoPE rotates (partial_rotary_factor)
  int64_t sliding_window = 0;    // keys seen by a sliding layer's query, itself included; 0: none
  std::vector<arch::AttentionKind> layer_attention;  // [num_hidden_layers]
  double attn_scale = 0;         // scores = attn_scale * q.k (head_dim^-0.5 unless query_pre_attn_scalar)
  double attn_softcap = 0;       // attn_logit_softcapping; 0: none
  double final_softcap = 0;      // final_logit_softcapping; 0: none
  // Granite: embeddings times embedding_multiplier, sublayer outputs times residual_multiplier
  // before the residual add; logits times logit_multiplier (Granite 1 / logits_scaling, Cohere
  // logit_scale). 1: no-op.
  double embedding_multiplier = 1.0;
  double residual_multiplier = 1.0;
  double logit_multiplier = 1.0;
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
// unsupported rope_type: Error(kConfig/kUnsupported) naming `origin` and the key. RoPE comes from
// "rope_theta"/"rope_scaling" (transformers 4) or "rope_parameters" (transformers 5); both
// spellings may be present and must then agree. No theta at all: 10000, with a warning. The
// family's own keys (arch::ConfigKeys: activation, sliding windows and layer types, softcapping,
// query_pre_attn_scalar, partial rotary, Gemma 3's second RoPE) are read as transformers reads
// them; an unsupported value is Error(kUnsupported) naming the key.
ModelConfig parse_model_config(std::string_view json_text, std::string_view origin);
// Reads <dir>/config.json; takes quantization settings from its "quantization_config" or, if
// absent, from <dir>/quantize_config.json.
ModelConfig load_model_config(const std::filesystem::path& dir);
// Parses a quantization config object (the value of "quantization_config", or the whole of
// quantize_config.json). Error(kConfig) for bad values (bits not 2/3/4/8, ...).
QuantizationConfig parse_quantization_config(std::string_view json_text, std::string_view origin);

}  // namespace gptq::config
