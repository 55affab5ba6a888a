#include "config/model_config.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/log.h"
#include "gptq/error.h"

namespace gptq::config {
namespace {

// Ordered: "dynamic" rules apply in file order.
using json = nlohmann::ordered_json;

[[noreturn]] void fail(std::string_view origin, const std::string& msg) {
  throw Error(ErrorKind::kConfig, fmt::format("{}: {}", origin, msg));
}

std::string type_name(const json& j) { return j.type_name(); }

int64_t get_int(const json& j, const char* key, std::string_view origin, std::optional<int64_t> def = {}) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (def) return *def;
    fail(origin, fmt::format("missing required key \"{}\"", key));
  }
  if (!it->is_number_integer()) {
    fail(origin, fmt::format("key \"{}\": expected an integer, found {} ({})", key, type_name(*it), it->dump()));
  }
  return it->get<int64_t>();
}

double get_num(const json& j, const char* key, std::string_view origin, std::optional<double> def = {}) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (def) return *def;
    fail(origin, fmt::format("missing required key \"{}\"", key));
  }
  if (!it->is_number()) {
    fail(origin, fmt::format("key \"{}\": expected a number, found {} ({})", key, type_name(*it), it->dump()));
  }
  return it->get<double>();
}

bool get_bool(const json& j, const char* key, std::string_view origin, bool def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_boolean()) {
    fail(origin, fmt::format("key \"{}\": expected true or false, found {}", key, it->dump()));
  }
  return it->get<bool>();
}

std::string get_str(const json& j, const char* key, std::string_view origin, std::optional<std::string> def = {}) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (def) return *def;
    fail(origin, fmt::format("missing required key \"{}\"", key));
  }
  if (!it->is_string()) {
    fail(origin, fmt::format("key \"{}\": expected a string, found {}", key, it->dump()));
  }
  return it->get<std::string>();
}

void require_positive(int64_t v, const char* key, std::string_view origin) {
  if (v <= 0) fail(origin, fmt::format("key \"{}\": expected a positive integer, found {}", key, v));
}

json parse_json(std::string_view text, std::string_view origin) {
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded()) fail(origin, "not valid JSON");
  if (!j.is_object()) fail(origin, fmt::format("expected a JSON object, found {}", type_name(j)));
  return j;
}

QuantizationConfig parse_quant(const json& q, std::string_view origin) {
  QuantizationConfig c;
  if (q.contains("quant_method") && q["quant_method"].is_string() && q["quant_method"] != "gptq") {
    throw Error(ErrorKind::kUnsupported,
                fmt::format("{}: quant_method \"{}\" is not supported (only \"gptq\")", origin,
                            q["quant_method"].get<std::string>()));
  }
  c.bits = static_cast<int>(get_int(q, "bits", origin));
  if (c.bits != 2 && c.bits != 3 && c.bits != 4 && c.bits != 8) {
    throw Error(ErrorKind::kUnsupported,
                fmt::format("{}: quantization bits = {} is not supported (expected 2, 3, 4 or 8)", origin, c.bits));
  }
  c.group_size = static_cast<int>(get_int(q, "group_size", origin, -1));
  if (c.group_size != -1 && (c.group_size < 1 || c.group_size > (1 << 20))) {
    fail(origin, fmt::format("group_size = {}: expected -1 or a positive size", c.group_size));
  }
  c.desc_act = get_bool(q, "desc_act", origin, false);
  c.sym = get_bool(q, "sym", origin, true);
  c.damp_percent = get_num(q, "damp_percent", origin, 0.01);
  c.true_sequential = get_bool(q, "true_sequential", origin, true);
  c.static_groups = get_bool(q, "static_groups", origin, false);
  c.lm_head = get_bool(q, "lm_head", origin, false);
  std::string fmt_key = q.contains("checkpoint_format") ? "checkpoint_format" : "format";
  c.checkpoint_format = get_str(q, fmt_key.c_str(), origin, std::string("gptq"));
  if (c.checkpoint_format != "gptq" && c.checkpoint_format != "gptq_v2") {
    throw Error(ErrorKind::kUnsupported,
                fmt::format("{}: checkpoint_format \"{}\" is not supported (expected \"gptq\" or \"gptq_v2\")",
                            origin, c.checkpoint_format));
  }
  if (auto it = q.find("modules_in_block_to_quantize"); it != q.end() && !it->is_null()) {
    if (!it->is_array()) fail(origin, "modules_in_block_to_quantize: expected a list");
    for (const auto& e : *it) {
      if (e.is_string()) {
        c.modules_in_block_to_quantize.push_back(e.get<std::string>());
      } else if (e.is_array()) {
        for (const auto& s : e) {
          if (!s.is_string()) fail(origin, "modules_in_block_to_quantize: expected strings");
          c.modules_in_block_to_quantize.push_back(s.get<std::string>());
        }
      } else {
        fail(origin, "modules_in_block_to_quantize: expected strings or lists of strings");
      }
    }
  }
  if (auto it = q.find("dynamic"); it != q.end() && !it->is_null()) {
    if (!it->is_object()) fail(origin, "dynamic: expected an object of \"[+-]:REGEX\": {settings} rules");
    for (auto& [k, v] : it->items()) c.dynamic.push_back(parse_dynamic_rule(k, v.dump(), origin));
  }
  if (auto it = q.find("meta"); it != q.end() && it->is_object()) {
    if (auto d = it->find("desc_act"); d != it->end() && d->is_boolean()) c.meta_desc_act = d->get<bool>();
    if (auto w = it->find("quantizer"); w != it->end()) {
      if (w->is_string()) c.meta_quantizer.push_back(w->get<std::string>());
      if (w->is_array()) {
        for (const auto& e : *w) {
          if (e.is_string()) c.meta_quantizer.push_back(e.get<std::string>());
        }
      }
    }
  }
  return c;
}


// What a RoPE object's meaning depends on outside it.
struct RopeContext {
  int64_t max_positions = 0;            // max_position_embeddings
  std::optional<int64_t> top_original;  // top-level original_max_position_embeddings (or the family's default)
  bool longrope_aliases = false;        // Phi-3: "su" and "yarn" mean longrope, as transformers' Phi3Config reads them
};

// Refuses a key of a RoPE object outside `known`: it could change the maths.
void only_keys(const json& rs, std::initializer_list<const char*> known, const std::string& type,
               const std::string& where) {
  for (const auto& [k, v] : rs.items()) {
    const bool ok = k == "rope_type" || k == "type" || k == "rope_theta" || k == "partial_rotary_factor" ||
                    std::any_of(known.begin(), known.end(), [&](const char* n) { return k == n; });
    if (!ok) {
      throw Error(ErrorKind::kUnsupported,
                  fmt::format("{}: key \"{}\" of a {} RoPE is not supported (known: {})", where, k, type,
                              fmt::join(known, ", ")));
    }
  }
}

std::vector<double> get_factor_list(const json& rs, const char* key, const std::string& where) {
  auto it = rs.find(key);
  if (it == rs.end() || it->is_null()) fail(where, fmt::format("missing required key \"{}\"", key));
  if (!it->is_array() || it->empty()) fail(where, fmt::format("key \"{}\": expected a list of numbers", key));
  std::vector<double> out;
  for (const auto& e : *it) {
    if (!e.is_number() || !(e.get<double>() > 0)) {
      fail(where, fmt::format("key \"{}\": expected positive numbers, found {}", key, e.dump()));
    }
    out.push_back(e.get<double>());
  }
  return out;
}

// One RoPE description: transformers v5's "rope_parameters" or v4's "rope_scaling". Fields that
// change the maths are required unless transformers itself defines their default.
RopeScaling parse_rope_object(const json& rs, const char* key, const RopeContext& ctx, std::string_view origin) {
  if (!rs.is_object()) fail(origin, fmt::format("{}: expected an object or null", key));
  const std::string where = fmt::format("{} ({})", origin, key);
  std::string type = "default";
  if (rs.contains("rope_type") && !rs["rope_type"].is_null()) {
    type = get_str(rs, "rope_type", where);
  } else if (rs.contains("type") && !rs["type"].is_null()) {
    type = get_str(rs, "type", where);
  }
  if (ctx.longrope_aliases && (type == "su" || type == "yarn")) type = "longrope";
  // llama3, yarn, longrope: the pretraining context. transformers 5 (standardize_rope_params)
  // prefers the top-level key, then the object's, then max_position_embeddings.
  auto original_max = [&]() {
    const int64_t v = ctx.top_original ? *ctx.top_original
                                       : get_int(rs, "original_max_position_embeddings", where, ctx.max_positions);
    if (v <= 0) fail(where, fmt::format("original_max_position_embeddings = {}: must be positive", v));
    return v;
  };
  // yarn and longrope: a null factor means max_position_embeddings / original.
  auto factor_or_ratio = [&](int64_t orig) {
    auto it = rs.find("factor");
    if (it == rs.end() || it->is_null()) return static_cast<double>(ctx.max_positions) / static_cast<double>(orig);
    return get_num(rs, "factor", where);
  };
  auto optional_num = [&](const char* k) -> std::optional<double> {
    auto it = rs.find(k);
    if (it == rs.end() || it->is_null()) return std::nullopt;
    return get_num(rs, k, where);
  };
  RopeScaling r;
  if (type == "default") {
    r.type = RopeScaling::Type::kNone;
  } else if (type == "linear") {
    r.type = RopeScaling::Type::kLinear;
    r.factor = get_num(rs, "factor", where);
  } else if (type == "llama3") {
    r.type = RopeScaling::Type::kLlama3;
    r.factor = get_num(rs, "factor", where);
    r.low_freq_factor = get_num(rs, "low_freq_factor", where);
    r.high_freq_factor = get_num(rs, "high_freq_factor", where);
    r.original_max_position_embeddings = original_max();
    if (r.low_freq_factor <= 0 || r.high_freq_factor <= r.low_freq_factor) {
      fail(where, "llama3 RoPE needs 0 < low_freq_factor < high_freq_factor");
    }
  } else if (type == "yarn") {
    only_keys(rs, {"factor", "original_max_position_embeddings", "attention_factor", "beta_fast", "beta_slow",
                   "mscale", "mscale_all_dim", "truncate"}, type, where);
    r.type = RopeScaling::Type::kYarn;
    if (!rs.contains("factor")) fail(where, "missing required key \"factor\" (yarn)");
    r.original_max_position_embeddings = original_max();
    r.factor = factor_or_ratio(r.original_max_position_embeddings);
    r.attention_factor = optional_num("attention_factor");
    // transformers: `get("beta_fast") or 32`, so null and 0 both mean the default.
    r.beta_fast = optional_num("beta_fast").value_or(0) != 0 ? *optional_num("beta_fast") : 32.0;
    r.beta_slow = optional_num("beta_slow").value_or(0) != 0 ? *optional_num("beta_slow") : 1.0;
    r.mscale = optional_num("mscale").value_or(0);
    r.mscale_all_dim = optional_num("mscale_all_dim").value_or(0);
    r.truncate = get_bool(rs, "truncate", where, true);
  } else if (type == "longrope") {
    only_keys(rs, {"short_factor", "long_factor", "factor", "attention_factor", "original_max_position_embeddings"},
              type, where);
    r.type = RopeScaling::Type::kLongrope;
    r.short_factor = get_factor_list(rs, "short_factor", where);
    r.long_factor = get_factor_list(rs, "long_factor", where);
    r.original_max_position_embeddings = original_max();
    r.factor = factor_or_ratio(r.original_max_position_embeddings);
    r.attention_factor = optional_num("attention_factor");
  } else {
    throw Error(ErrorKind::kUnsupported,
                fmt::format("{}: rope_type \"{}\" is not supported (supported: \"default\", \"linear\", \"llama3\", "
                            "\"yarn\", \"longrope\")", where, type));
  }
  if (!(r.factor > 0)) fail(where, "factor must be positive");
  if (r.attention_factor && !(*r.attention_factor > 0)) fail(where, "attention_factor must be positive");
  return r;
}

bool same_rope(const RopeScaling& a, const RopeScaling& b) {
  return a.type == b.type && a.factor == b.factor && a.low_freq_factor == b.low_freq_factor &&
         a.high_freq_factor == b.high_freq_factor &&
         a.original_max_position_embeddings == b.original_max_position_embeddings &&
         a.attention_factor == b.attention_factor && a.beta_fast == b.beta_fast && a.beta_slow == b.beta_slow &&
         a.mscale == b.mscale && a.mscale_all_dim == b.mscale_all_dim && a.truncate == b.truncate &&
         a.short_factor == b.short_factor && a.long_factor == b.long_factor;
}

// rope_theta and the scaling, from either spelling. Both may be present (a v5 config carrying
// the old keys too); then they must agree. With no theta anywhere, transformers' class default
// (10000 for llama, mistral and qwen2) is used and a warning says so.
void parse_rope(const json& j, ModelConfig& c, std::string_view origin) {
  std::optional<double> theta;
  if (j.contains("rope_theta") && !j["rope_theta"].is_null()) theta = get_num(j, "rope_theta", origin);
  if (!theta && c.arch.keys.neox_rope_keys && j.contains("rotary_emb_base") && !j["rotary_emb_base"].is_null()) {
    theta = get_num(j, "rotary_emb_base", origin);  // transformers 4 GPT-NeoX
  }
  RopeContext omp;
  omp.max_positions = c.max_position_embeddings;
  omp.longrope_aliases = c.arch.keys.longrope_aliases;
  if (j.contains("original_max_position_embeddings") && !j["original_max_position_embeddings"].is_null()) {
    omp.top_original = get_int(j, "original_max_position_embeddings", origin);
  } else if (c.arch.keys.default_original_max_positions > 0) {
    omp.top_original = c.arch.keys.default_original_max_positions;
  }
  std::optional<RopeScaling> scaling;
  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null()) {
    scaling = parse_rope_object(*it, "rope_scaling", omp, origin);
  }
  if (auto it = j.find("rope_parameters"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) fail(origin, "rope_parameters: expected an object or null");
    const json* params = &*it;
    if (c.arch.keys.local_rope && it->contains("full_attention")) {
      // Per layer type (transformers 5 Gemma 3): full_attention for global layers, and
      // sliding_attention (required then) for sliding ones.
      for (const auto& [k, v] : it->items()) {
        if (k != "full_attention" && k != "sliding_attention") {
          throw Error(ErrorKind::kUnsupported,
                      fmt::format("{}: rope_parameters layer type \"{}\" is not supported (expected "
                                  "full_attention and sliding_attention)", origin, k));
        }
      }
      if (!it->contains("sliding_attention")) fail(origin, "rope_parameters: full_attention without sliding_attention");
      const json& loc = (*it)["sliding_attention"];
      c.rope_local_scaling = parse_rope_object(loc, "rope_parameters.sliding_attention", omp, origin);
      c.rope_local_theta = get_num(loc, "rope_theta", std::string(origin) + " (rope_parameters.sliding_attention)");
      if (!(*c.rope_local_theta > 0)) fail(origin, "rope_parameters.sliding_attention.rope_theta must be positive");
      params = &(*it)["full_attention"];
    } else {
      for (const auto& [k, v] : it->items()) {
        if (v.is_object()) {
          throw Error(ErrorKind::kUnsupported,
                      fmt::format("{}: rope_parameters per layer type (\"{}\") is not supported for {}", origin, k,
                                  c.model_type));
        }
      }
    }
    RopeScaling p = parse_rope_object(*params, "rope_parameters", omp, origin);
    if (scaling && !same_rope(*scaling, p)) {
      fail(origin, "rope_parameters and rope_scaling disagree; remove one of them");
    }
    scaling = p;
    if (params->contains("rope_theta") && !(*params)["rope_theta"].is_null()) {
      const double t = get_num(*params, "rope_theta", std::string(origin) + " (rope_parameters)");
      if (theta && *theta != t) {
        fail(origin, fmt::format("rope_parameters.rope_theta = {} disagrees with rope_theta = {}", t, *theta));
      }
      theta = t;
    }
  }
  if (!theta) {
    core::log_warn("{}: no rope_theta (nor rope_parameters.rope_theta); using {}'s default of 10000", origin,
                   c.model_type);
    theta = 10000.0;
  }
  if (!(*theta > 0)) fail(origin, fmt::format("rope_theta = {}: must be positive", *theta));
  c.rope_theta = *theta;
  if (scaling) c.rope_scaling = *scaling;
  if (c.arch.keys.local_rope && !c.rope_local_theta) {
    // transformers 4 Gemma 3: rope_local_base_freq (default 10000), unscaled.
    c.rope_local_theta = get_num(j, "rope_local_base_freq", origin, 10000.0);
    if (!(*c.rope_local_theta > 0)) fail(origin, "rope_local_base_freq must be positive");
  }
  // Partial rotary: top level (transformers 4) or inside rope_parameters (5).
  c.rotary_dim = c.head_dim;
  if (c.arch.keys.partial_rotary) {
    const double def = c.arch.keys.default_partial_rotary;
    double f = get_num(j, "partial_rotary_factor", origin, def);
    if (c.arch.keys.neox_rope_keys && !j.contains("partial_rotary_factor")) f = get_num(j, "rotary_pct", origin, def);
    if (auto it = j.find("rope_parameters"); it != j.end() && it->is_object() && it->contains("partial_rotary_factor")) {
      f = get_num(*it, "partial_rotary_factor", std::string(origin) + " (rope_parameters)");
    }
    if (!(f > 0 && f <= 1)) fail(origin, fmt::format("partial_rotary_factor = {}: expected 0 < f <= 1", f));
    c.rotary_dim = static_cast<int64_t>(static_cast<double>(c.head_dim) * f);  // as transformers: int(hd * f)
    if (c.rotary_dim < 2 || c.rotary_dim % 2 != 0) {
      fail(origin, fmt::format("partial_rotary_factor = {} gives {} rotary dims of head_dim {}: expected an even "
                               "number >= 2", f, c.rotary_dim, c.head_dim));
    }
  }
  for (const RopeScaling* r : {&c.rope_scaling, &c.rope_local_scaling}) {
    for (auto [v, name] : {std::pair{&r->short_factor, "short_factor"}, {&r->long_factor, "long_factor"}}) {
      if (r->type == RopeScaling::Type::kLongrope && static_cast<int64_t>(v->size()) * 2 != c.rotary_dim) {
        fail(origin, fmt::format("longrope {} has {} entries; {} rotary dims need {}", name, v->size(), c.rotary_dim,
                                 c.rotary_dim / 2));
      }
    }
  }
}

// An integer key where null and absent differ: absent -> `absent`, null -> 0 (none).
int64_t get_window(const json& j, const char* key, std::string_view origin, int64_t absent) {
  auto it = j.find(key);
  if (it == j.end()) return absent;
  if (it->is_null()) return 0;
  const int64_t v = get_int(j, key, origin);
  require_positive(v, key, origin);
  return v;
}

// Which layers attend within a sliding window, by the family's rule (arch::SlidingRule).
void parse_attention_layers(const json& j, ModelConfig& c, std::string_view origin) {
  const auto& k = c.arch.keys;
  const int64_t L = c.num_hidden_layers;
  c.layer_attention.assign(static_cast<size_t>(L), arch::AttentionKind::kGlobal);
  c.sliding_window = 0;
  auto layer_types = [&]() -> bool {
    auto it = j.find("layer_types");
    if (it == j.end() || it->is_null()) return false;
    if (!it->is_array() || static_cast<int64_t>(it->size()) != L) {
      fail(origin, fmt::format("layer_types: expected a list of num_hidden_layers = {} entries", L));
    }
    for (int64_t l = 0; l < L; ++l) {
      const json& e = (*it)[static_cast<size_t>(l)];
      const std::string t = e.is_string() ? e.get<std::string>() : e.dump();
      if (t == "sliding_attention") {
        c.layer_attention[static_cast<size_t>(l)] = arch::AttentionKind::kSliding;
      } else if (t != "full_attention") {
        throw Error(ErrorKind::kUnsupported,
                    fmt::format("{}: layer_types[{}] = \"{}\" is not supported (expected full_attention or "
                                "sliding_attention)", origin, l, t));
      }
    }
    return true;
  };
  switch (k.sliding) {
    case arch::SlidingRule::kNone: return;
    case arch::SlidingRule::kEveryLayer:
      c.sliding_window = get_window(j, "sliding_window", origin, k.default_sliding_window);
      if (c.sliding_window > 0) c.layer_attention.assign(static_cast<size_t>(L), arch::AttentionKind::kSliding);
      return;
    case arch::SlidingRule::kQwen: {
      const bool use = get_bool(j, "use_sliding_window", origin, false);
      if (!use) return;  // transformers drops sliding_window then
      c.sliding_window = get_window(j, "sliding_window", origin, 4096);
      if (!layer_types()) {
        const int64_t first = get_int(j, "max_window_layers", origin, 28);
        for (int64_t l = first; l < L; ++l) c.layer_attention[static_cast<size_t>(l)] = arch::AttentionKind::kSliding;
      }
      break;
    }
    case arch::SlidingRule::kPattern: {
      c.sliding_window = get_window(j, "sliding_window", origin, k.default_sliding_window);
      if (!layer_types()) {
        // transformers 4 Gemma 3: sliding_window_pattern n: every n-th layer global.
        const int64_t n = get_int(j, "sliding_window_pattern", origin, 0);
        for (int64_t l = 0; l < L; ++l) {
          c.layer_attention[static_cast<size_t>(l)] =
              n > 0 ? ((l + 1) % n == 0 ? arch::AttentionKind::kGlobal : arch::AttentionKind::kSliding)
                    : c.arch.attention_kind(l);
        }
      }
      break;
    }
  }
  const bool any = std::find(c.layer_attention.begin(), c.layer_attention.end(), arch::AttentionKind::kSliding) !=
                   c.layer_attention.end();
  if (any && c.sliding_window <= 0) fail(origin, "sliding-window layers but no sliding_window");
}

arch::Activation parse_activation(const json& j, const ModelConfig& c, std::string_view origin, std::string* name) {
  const char* key = c.arch.keys.activation;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    // The family's default, under transformers' name for it.
    switch (c.arch.activation) {
      case arch::Activation::kSilu: *name = "silu"; break;
      case arch::Activation::kGelu: *name = "gelu"; break;
      case arch::Activation::kGeluTanh: *name = "gelu_pytorch_tanh"; break;
      case arch::Activation::kRelu: *name = "relu"; break;
    }
    return c.arch.activation;
  }
  *name = get_str(j, key, origin);
  if (*name == "silu" || *name == "swish") return arch::Activation::kSilu;
  if (*name == "gelu_pytorch_tanh" || *name == "gelu_new" || *name == "gelu_fast") return arch::Activation::kGeluTanh;
  if (*name == "gelu") {
    if (c.model_type == "gemma") {
      // transformers' Gemma config turns its legacy "gelu" into the tanh form, as the released
      // checkpoints intend.
      core::log_warn("{}: hidden_act \"gelu\" in a Gemma config means gelu_pytorch_tanh (as transformers reads it)",
                     origin);
      return arch::Activation::kGeluTanh;
    }
    return arch::Activation::kGelu;
  }
  if (*name == "relu") return arch::Activation::kRelu;
  throw Error(ErrorKind::kUnsupported,
              fmt::format("{}: {} \"{}\" is not supported (expected silu, gelu, gelu_pytorch_tanh, gelu_new or relu)",
                          origin, key, *name));
}

}  // namespace

DynamicRule parse_dynamic_rule(const std::string& key, const std::string& value_json, std::string_view origin) {
  DynamicRule r;
  r.key = key;
  r.exclude = key.rfind("-:", 0) == 0;
  r.pattern = (r.exclude || key.rfind("+:", 0) == 0) ? key.substr(2) : key;
  const std::string where = fmt::format("{}: dynamic rule \"{}\"", origin, key);
  try {
    r.re = std::make_shared<const std::regex>(r.pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw Error(ErrorKind::kConfig, fmt::format("{}: not a valid regular expression ({})", where, e.what()));
  }
  const json v = json::parse(value_json, nullptr, false);
  if (v.is_discarded() || !v.is_object()) fail(where, "expected an object of settings (may be empty)");
  if (auto b = v.find("bits"); b != v.end()) {
    if (!b->is_number_integer()) fail(where, fmt::format("bits: expected an integer, found {}", b->dump()));
    const int bits = b->get<int>();
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
      throw Error(ErrorKind::kUnsupported,
                  fmt::format("{}: bits = {} is not supported (expected 2, 3, 4 or 8)", where, bits));
    }
    r.bits = bits;
  }
  if (auto g = v.find("group_size"); g != v.end()) {
    if (!g->is_number_integer() || (g->get<int64_t>() != -1 && (g->get<int64_t>() < 1 || g->get<int64_t>() > (1 << 20)))) {
      fail(where, fmt::format("group_size: expected -1 or a positive size, found {}", g->dump()));
    }
    r.group_size = g->get<int>();
  }
  for (auto [name, dst] : {std::pair{"desc_act", &r.desc_act}, {"sym", &r.sym}}) {
    if (auto b = v.find(name); b != v.end()) {
      if (!b->is_boolean()) fail(where, fmt::format("{}: expected true or false, found {}", name, b->dump()));
      *dst = b->get<bool>();
    }
  }
  return r;
}

bool DynamicRule::matches(const std::string& module) const {
  return re && std::regex_search(module, *re, std::regex_constants::match_continuous);
}

ModuleScheme QuantizationConfig::scheme_for(const std::string& module) const {
  ModuleScheme m;
  m.bits = bits;
  m.group_size = group_size;
  m.desc_act = desc_act;
  m.sym = sym;
  for (size_t i = 0; i < dynamic.size(); ++i) {
    const DynamicRule& r = dynamic[i];
    if (!r.matches(module)) continue;
    m.rule = static_cast<int>(i);
    if (r.exclude) {
      m.quantized = false;
      return m;
    }
    m.bits = r.bits.value_or(bits);
    m.group_size = r.group_size.value_or(group_size);
    m.desc_act = r.desc_act.value_or(desc_act);
    m.sym = r.sym.value_or(sym);
    return m;
  }
  return m;
}

QuantizationConfig QuantizationConfig::for_module(const std::string& module) const {
  const ModuleScheme m = scheme_for(module);
  QuantizationConfig c = *this;
  c.bits = m.bits;
  c.group_size = m.group_size;
  c.desc_act = m.desc_act;
  c.sym = m.sym;
  return c;
}

QuantizationConfig parse_quantization_config(std::string_view json_text, std::string_view origin) {
  return parse_quant(parse_json(json_text, origin), origin);
}

ModelConfig parse_model_config(std::string_view json_text, std::string_view origin) {
  const json j = parse_json(json_text, origin);
  ModelConfig c;
  c.origin = std::string(origin);
  c.raw_json = std::string(json_text);
  c.model_type = get_str(j, "model_type", origin);
  if (!arch::is_supported(c.model_type)) (void)arch::describe(c.model_type, {}, origin);  // throws, listing them
  if (auto it = j.find("architectures"); it != j.end() && it->is_array()) {
    for (const auto& a : *it) {
      if (a.is_string()) c.architectures.push_back(a.get<std::string>());
    }
  }
  const arch::ConfigKeys keys0 = arch::describe(c.model_type, {}, origin).keys;  // which keys to read
  c.hidden_size = get_int(j, keys0.hidden_size, origin);
  if (std::string_view(keys0.intermediate_size) == "n_inner" &&
      (!j.contains("n_inner") || j["n_inner"].is_null())) {
    c.intermediate_size = 4 * c.hidden_size;  // GPT-2: n_inner null means 4 * n_embd
  } else {
    c.intermediate_size = get_int(j, keys0.intermediate_size, origin);
  }
  c.num_hidden_layers = get_int(j, keys0.num_layers, origin);
  c.num_attention_heads = get_int(j, keys0.num_heads, origin);
  c.num_key_value_heads = get_int(j, "num_key_value_heads", origin, c.num_attention_heads);
  c.vocab_size = get_int(j, "vocab_size", origin);
  c.max_position_embeddings = get_int(j, keys0.max_positions, origin, 2048);
  for (auto [v, k] : {std::pair{c.hidden_size, keys0.hidden_size}, {c.intermediate_size, keys0.intermediate_size},
                      {c.num_hidden_layers, keys0.num_layers}, {c.num_attention_heads, keys0.num_heads},
                      {c.num_key_value_heads, "num_key_value_heads"}, {c.vocab_size, "vocab_size"},
                      {c.max_position_embeddings, keys0.max_positions}}) {
    require_positive(v, k, origin);
  }
  // Guard against absurd sizes before anything is allocated from them.
  if (c.hidden_size > (1 << 20) || c.intermediate_size > (1 << 22) || c.vocab_size > (1 << 24) ||
      c.num_hidden_layers > 4096 || c.max_position_embeddings > (1 << 24)) {
    fail(origin, "sizes are implausibly large (hidden_size, intermediate_size, vocab_size, layers)");
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    fail(origin, fmt::format("num_attention_heads = {} is not a multiple of num_key_value_heads = {}",
                             c.num_attention_heads, c.num_key_value_heads));
  }
  const bool has_head_dim = j.contains("head_dim") && !j["head_dim"].is_null();
  if (has_head_dim) {
    c.head_dim = get_int(j, "head_dim", origin);
    require_positive(c.head_dim, "head_dim", origin);
  } else {
    if (c.hidden_size % c.num_attention_heads != 0) {
      fail(origin, fmt::format("hidden_size = {} is not a multiple of num_attention_heads = {} (and no head_dim)",
                               c.hidden_size, c.num_attention_heads));
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.head_dim % 2 != 0) fail(origin, fmt::format("head_dim = {} must be even for RoPE", c.head_dim));
  c.rms_norm_eps = *keys0.norm_eps ? get_num(j, keys0.norm_eps, origin, keys0.default_norm_eps) : keys0.default_norm_eps;
  if (!(c.rms_norm_eps > 0)) fail(origin, fmt::format("{} = {}: must be positive", keys0.norm_eps, c.rms_norm_eps));
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", origin, keys0.default_tied);
  c.torch_dtype = get_str(j, "torch_dtype", origin, std::string("float32"));
  if (c.torch_dtype.empty()) c.torch_dtype = "float32";
  c.mlp_bias = get_bool(j, "mlp_bias", origin, false);
  c.attention_bias = get_bool(j, keys0.bias, origin, keys0.default_attention_bias);
  c.arch = arch::describe(c.model_type, {.attention_bias = c.attention_bias, .mlp_bias = c.mlp_bias}, origin);
  if (c.arch.keys.parallel_residual_key) {
    c.arch.parallel_residual =
        get_bool(j, "use_parallel_residual", origin, c.arch.keys.default_parallel_residual);
    // StableLM's parallel block has no post_attention_layernorm: the MLP reads input_layernorm.
    if (c.arch.parallel_residual && c.arch.keys.parallel_shares_norm) {
      c.arch.sublayers[1].norm = c.arch.sublayers[0].norm;
    }
  }
  c.arch.activation = parse_activation(j, c, origin, &c.hidden_act);
  const auto& keys = c.arch.keys;
  c.attn_scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  if (keys.query_pre_attn_scalar) {
    const double s = get_num(j, "query_pre_attn_scalar", origin, 256.0);  // transformers' Gemma 2/3 default
    if (!(s > 0)) fail(origin, fmt::format("query_pre_attn_scalar = {}: must be positive", s));
    c.attn_scale = 1.0 / std::sqrt(s);
  }
  if (keys.granite_multipliers) {
    c.embedding_multiplier = get_num(j, "embedding_multiplier", origin, 1.0);
    c.residual_multiplier = get_num(j, "residual_multiplier", origin, 1.0);
    const double ls = get_num(j, "logits_scaling", origin, 1.0);
    c.attn_scale = get_num(j, "attention_multiplier", origin, 1.0);  // transformers' default: 1, not hd^-0.5
    if (!(ls != 0) || !(c.attn_scale > 0)) fail(origin, "logits_scaling must be nonzero and attention_multiplier positive");
    c.logit_multiplier = 1.0 / ls;
  }
  if (keys.logit_scale) c.logit_multiplier = get_num(j, "logit_scale", origin, 0.0625);
  for (const char* k : keys.refused_if_true) {
    if (get_bool(j, k, origin, false)) {
      throw Error(ErrorKind::kUnsupported, fmt::format("{}: {} = true is not supported for {}", origin, k, c.model_type));
    }
  }
  if (keys.softcapping) {
    c.attn_softcap = get_num(j, "attn_logit_softcapping", origin, 0.0);
    c.final_softcap = get_num(j, "final_logit_softcapping", origin, 0.0);
    // Absent keys take the class default; null means none.
    if (!j.contains("attn_logit_softcapping")) c.attn_softcap = keys.default_attn_softcap;
    if (!j.contains("final_logit_softcapping")) c.final_softcap = keys.default_final_softcap;
    if (c.attn_softcap < 0 || c.final_softcap < 0) fail(origin, "logit softcapping values must be >= 0");
  }
  if (keys.bidirectional && get_bool(j, "use_bidirectional_attention", origin, false)) {
    throw Error(ErrorKind::kUnsupported,
                fmt::format("{}: use_bidirectional_attention = true is not supported (causal decoders only)", origin));
  }
  parse_attention_layers(j, c, origin);
  if (keys.opt_layout) {
    // OPT-350m's post-norm blocks and projected embeddings are not run.
    if (!get_bool(j, "do_layer_norm_before", origin, true)) {
      throw Error(ErrorKind::kUnsupported, fmt::format("{}: do_layer_norm_before = false (post-norm OPT, as "
                                                       "OPT-350m) is not supported", origin));
    }
    if (get_int(j, "word_embed_proj_dim", origin, c.hidden_size) != c.hidden_size) {
      throw Error(ErrorKind::kUnsupported,
                  fmt::format("{}: word_embed_proj_dim != hidden_size (project_in/out) is not supported", origin));
    }
    if (get_bool(j, "_remove_final_layer_norm", origin, false)) {
      throw Error(ErrorKind::kUnsupported, fmt::format("{}: _remove_final_layer_norm = true is not supported", origin));
    }
    if (!get_bool(j, "layer_norm_elementwise_affine", origin, true)) {
      throw Error(ErrorKind::kUnsupported,
                  fmt::format("{}: layer_norm_elementwise_affine = false is not supported", origin));
    }
  }
  if (keys.gpt2_attention) {
    if (!get_bool(j, "scale_attn_weights", origin, true)) c.attn_scale = 1.0;  // no 1/sqrt(hd)
    if (get_bool(j, "scale_attn_by_inverse_layer_idx", origin, false)) {
      throw Error(ErrorKind::kUnsupported,
                  fmt::format("{}: scale_attn_by_inverse_layer_idx = true is not supported", origin));
    }
    if (get_bool(j, "add_cross_attention", origin, false)) {
      throw Error(ErrorKind::kUnsupported, fmt::format("{}: add_cross_attention = true is not supported", origin));
    }
  }
  if (auto it = j.find("bos_token_id"); it != j.end() && it->is_number_integer()) c.bos_token_id = it->get<int32_t>();
  if (auto it = j.find("eos_token_id"); it != j.end()) {
    if (it->is_number_integer()) c.eos_token_ids.push_back(it->get<int32_t>());
    if (it->is_array()) {
      for (const auto& e : *it) {
        if (e.is_number_integer()) c.eos_token_ids.push_back(e.get<int32_t>());
      }
    }
  }
  parse_rope(j, c, origin);
  if (auto it = j.find("quantization_config"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) fail(origin, "quantization_config: expected an object");
    c.quant = parse_quant(*it, std::string(origin) + " (quantization_config)");
  }
  return c;
}

ModelConfig load_model_config(const std::filesystem::path& dir) {
  auto read = [](const std::filesystem::path& p) -> std::optional<std::string> {
    std::ifstream f(p, std::ios::binary);
    if (!f) return std::nullopt;
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  const auto cfg_path = dir / "config.json";
  auto text = read(cfg_path);
  if (!text) {
    throw Error(ErrorKind::kIo, fmt::format("{}: cannot read (is {} a Hugging Face model folder?)",
                                            cfg_path.string(), dir.string()));
  }
  ModelConfig c = parse_model_config(*text, cfg_path.string());
  if (!c.quant) {
    const auto qpath = dir / "quantize_config.json";
    if (auto qt = read(qpath)) c.quant = parse_quantization_config(*qt, qpath.string());
  }
  return c;
}

}  // namespace gptq::config
