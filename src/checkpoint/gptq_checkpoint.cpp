// The GPTQ checkpoint format: tensor names and shapes of a packed linear (SPEC §1), the
// quantization config (SPEC §2), and the validation of a quantized linear found in a store.
#include <fmt/format.h>

#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "checkpoint/gptq_checkpoint.h"
#include "gptq/error.h"

namespace gptq::checkpoint {

namespace {

using nlohmann::ordered_json;

bool supported_bits(int b) { return b == 2 || b == 3 || b == 4 || b == 8; }

// "[K*b/32, N]" style shapes are only meaningful when the products are exact; callers check
// K and N against 32 first, so these divisions never truncate.
int64_t packed_rows(int64_t k, int bits) { return k / 32 * bits; }

// Splits "model.layers.{layer}." into the text before and after the placeholder.
std::pair<std::string, std::string> split_block_prefix(const std::string& prefix) {
  const size_t at = prefix.find("{layer}");
  if (at == std::string::npos) {
    throw Error(ErrorKind::kArgument,
                fmt::format("block_prefix \"{}\": expected a \"{{layer}}\" placeholder, found none",
                            prefix));
  }
  return {prefix.substr(0, at), prefix.substr(at + 7)};
}

// Parses "<before><digits><after><suffix>" into (layer, suffix); false if `module` is not a
// block module.
bool parse_block_module(const std::string& module, const std::pair<std::string, std::string>& pre,
                        int64_t* layer, std::string* suffix) {
  const auto& [before, after] = pre;
  if (module.compare(0, before.size(), before) != 0) return false;
  size_t i = before.size();
  const size_t digits_begin = i;
  int64_t value = 0;
  while (i < module.size() && module[i] >= '0' && module[i] <= '9') {
    if (i - digits_begin >= 9) return false;  // no model has a billion layers
    value = value * 10 + (module[i] - '0');
    ++i;
  }
  if (i == digits_begin) return false;
  if (module.compare(i, after.size(), after) != 0) return false;
  i += after.size();
  if (i >= module.size()) return false;
  *layer = value;
  *suffix = module.substr(i);
  return true;
}

}  // namespace

std::vector<io::TensorToWrite> tensors_of(const PackedLinear& p) {
  auto bad = [&](const std::string& what) {
    throw Error(ErrorKind::kArgument, fmt::format("packed linear \"{}\": {}", p.module, what));
  };
  if (p.module.empty()) bad("expected a module name, found an empty one");
  if (!supported_bits(p.bits)) bad(fmt::format("expected bits 2, 3, 4 or 8, found {}", p.bits));
  if (p.n <= 0 || p.k <= 0 || p.n % 32 != 0 || p.k % 32 != 0) {
    bad(fmt::format("expected N and K positive multiples of 32, found N = {}, K = {}", p.n, p.k));
  }
  if (p.groups <= 0 || p.groups > p.k) {
    bad(fmt::format("expected 1 to K = {} groups, found {}", p.k, p.groups));
  }
  const int64_t qw_rows = packed_rows(p.k, p.bits);
  const int64_t qz_cols = packed_rows(p.n, p.bits);
  auto check = [&](const char* what, size_t found, int64_t expect, const std::string& shape) {
    if (found != static_cast<uint64_t>(expect)) {
      bad(fmt::format("{} {} needs {} values, found {}", what, shape, expect, found));
    }
  };
  check("qweight", p.qweight.size(), qw_rows * p.n, fmt::format("[{}, {}]", qw_rows, p.n));
  check("qzeros", p.qzeros.size(), p.groups * qz_cols, fmt::format("[{}, {}]", p.groups, qz_cols));
  check("scales", p.scales.size(), p.groups * p.n, fmt::format("[{}, {}]", p.groups, p.n));
  check("g_idx", p.g_idx.size(), p.k, fmt::format("[{}]", p.k));
  if (!p.bias.empty()) check("bias", p.bias.size(), p.n, fmt::format("[{}]", p.n));

  auto t = [&](const char* leaf, DType dt, Shape shape, const void* data, size_t elems) {
    return io::TensorToWrite{p.module + leaf, dt, std::move(shape), data,
                             static_cast<uint64_t>(elems) * dtype_size(dt)};
  };
  std::vector<io::TensorToWrite> out;
  out.push_back(t(".qweight", DType::kI32, {qw_rows, p.n}, p.qweight.data(), p.qweight.size()));
  out.push_back(t(".qzeros", DType::kI32, {p.groups, qz_cols}, p.qzeros.data(), p.qzeros.size()));
  out.push_back(t(".scales", DType::kF16, {p.groups, p.n}, p.scales.data(), p.scales.size()));
  out.push_back(t(".g_idx", DType::kI32, {p.k}, p.g_idx.data(), p.g_idx.size()));
  if (!p.bias.empty()) out.push_back(t(".bias", DType::kF16, {p.n}, p.bias.data(), p.bias.size()));
  return out;
}

const std::vector<std::string>& copied_file_names() {
  static const std::vector<std::string> names = {
      "generation_config.json", "tokenizer.json",     "tokenizer_config.json",
      "special_tokens_map.json", "tokenizer.model",   "vocab.json",
      "merges.txt",             "added_tokens.json",  "chat_template.json",
      "chat_template.jinja"};
  return names;
}

std::string exact_module_regex(const std::string& name) {
  static constexpr std::string_view kMeta = R"(\.^$*+?()[]{}|)";
  std::string out;
  out.reserve(name.size() + 8);
  for (char c : name) {
    if (kMeta.find(c) != std::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('$');
  return out;
}

namespace {

ordered_json rule_settings(const config::DynamicRule& r) {
  ordered_json v = ordered_json::object();
  if (r.bits) v["bits"] = *r.bits;
  if (r.group_size) v["group_size"] = *r.group_size;
  if (r.desc_act) v["desc_act"] = *r.desc_act;
  if (r.sym) v["sym"] = *r.sym;
  return v;
}

}  // namespace

std::string quantization_config_json(const QuantizationSummary& s) {
  const config::QuantizationConfig& q = s.q;
  auto bad = [](const std::string& what) {
    throw Error(ErrorKind::kArgument, "quantization config: " + what);
  };
  if (!supported_bits(q.bits)) bad(fmt::format("expected bits 2, 3, 4 or 8, found {}", q.bits));
  if (q.group_size != -1 && q.group_size <= 0) {
    bad(fmt::format("expected group_size -1 or positive, found {}", q.group_size));
  }
  if (q.checkpoint_format != "gptq" && q.checkpoint_format != "gptq_v2") {
    bad(fmt::format("expected checkpoint_format \"gptq\" or \"gptq_v2\", found \"{}\"",
                    q.checkpoint_format));
  }

  // Which (suffix, layer) pairs stay unquantized.
  const auto prefix = split_block_prefix(s.block_prefix);
  std::map<std::string, std::set<int64_t>> unq_layers;  // suffix -> layers
  std::vector<std::string> unmatched;                   // not block modules of a known suffix
  std::set<std::string> known_suffixes;
  for (const auto& group : s.block_linear_groups) known_suffixes.insert(group.begin(), group.end());
  for (const std::string& m : s.unquantized_modules) {
    int64_t layer = 0;
    std::string suffix;
    if (parse_block_module(m, prefix, &layer, &suffix) && known_suffixes.count(suffix) &&
        (s.num_layers <= 0 || layer < s.num_layers)) {
      unq_layers[suffix].insert(layer);
    } else {
      unmatched.push_back(m);
    }
  }

  // Every unquantized module gets its own "-:" rule (GPTQModel and vLLM read those; transformers
  // reads modules_in_block_to_quantize, written below when a suffix is left out everywhere).
  std::set<std::string> excluded_everywhere;
  ordered_json dynamic = ordered_json::object();
  for (const auto& [suffix, layers] : unq_layers) {
    if (s.num_layers > 0 && static_cast<int64_t>(layers.size()) == s.num_layers) excluded_everywhere.insert(suffix);
    for (int64_t layer : layers) {
      dynamic["-:" + exact_module_regex(prefix.first + std::to_string(layer) + prefix.second + suffix)] =
          ordered_json::object();
    }
  }
  for (const std::string& m : unmatched) dynamic["-:" + exact_module_regex(m)] = ordered_json::object();
  // Modules whose settings differ from what the rules below give them (a group clamped to K):
  // a complete rule each, ahead of the others so that it wins.
  for (const auto& [module, r] : s.module_overrides) dynamic["+:" + exact_module_regex(module)] = rule_settings(r);
  for (const config::DynamicRule& r : q.dynamic) {
    if (dynamic.contains(r.key)) {
      if (r.exclude) continue;  // the same "-:" rule as one written for an unquantized module
      bad(fmt::format("dynamic rule \"{}\" is given twice", r.key));
    }
    dynamic[r.key] = r.exclude ? ordered_json::object() : rule_settings(r);
  }

  ordered_json j = ordered_json::object();
  j["quant_method"] = "gptq";
  j["bits"] = q.bits;
  j["group_size"] = q.group_size;
  // Act-order with static groups leaves g_idx trivial (groups contiguous in column order): the
  // file is declared without act-order, which loaders that refuse act-order accept, and the
  // setting used is kept in meta.
  j["desc_act"] = q.desc_act && !q.static_groups;
  j["sym"] = q.sym;
  j["damp_percent"] = q.damp_percent;
  j["true_sequential"] = q.true_sequential;
  j["static_groups"] = q.static_groups;
  j["checkpoint_format"] = q.checkpoint_format;
  j["format"] = q.checkpoint_format;
  j["lm_head"] = false;
  j["model_file_base_name"] = "model";
  if (!excluded_everywhere.empty()) {
    ordered_json groups = ordered_json::array();
    size_t kept = 0;
    for (const auto& group : s.block_linear_groups) {
      ordered_json g = ordered_json::array();
      for (const std::string& suffix : group) {
        if (!excluded_everywhere.count(suffix)) g.push_back(suffix);
      }
      kept += g.size();
      if (!g.empty()) groups.push_back(std::move(g));
    }
    if (kept == 0) {
      bad("every block linear is left unquantized in every layer (expected at least one "
          "quantized linear)");
    }
    j["modules_in_block_to_quantize"] = std::move(groups);
  }
  if (!dynamic.empty()) j["dynamic"] = std::move(dynamic);
  j["meta"] = {{"quantizer", ordered_json::array({std::string("gptq.cpp:") + GPTQ_VERSION})},
               {"damp_auto_increment", s.damp_auto_increment},
               {"desc_act", q.desc_act},
               {"mse", s.mse}};
  if (s.damp_search) j["meta"]["damp_search"] = true;
  if (s.act_group_aware) j["meta"]["act_group_aware"] = true;
  if (s.grid == "ggml") j["meta"]["grid"] = "ggml";
  if (s.mse_hessian) j["meta"]["mse_hessian"] = true;
  return j.dump(2);
}

QuantizedLinearTensors find_quantized_linear(const io::TensorStore& store, const std::string& module,
                                             int64_t n, int64_t k, const config::QuantizationConfig& q) {
  const std::string where = store.dir().string();
  if (!supported_bits(q.bits)) {
    throw Error(ErrorKind::kUnsupported,
                fmt::format("{}: {}: {}-bit GPTQ weights are not supported (expected 2, 3, 4 or 8 "
                            "bits)",
                            where, module, q.bits));
  }
  if (n <= 0 || k <= 0) {
    throw Error(ErrorKind::kArgument,
                fmt::format("{}: {}: expected positive N and K, found N = {}, K = {}", where,
                            module, n, k));
  }
  // K and N need not be multiples of 32 at 2, 4 and 8 bits: GPTQModel's packer then keeps
  // ceil(K*b/32) qweight rows and ceil(N*b/32) qzeros words per row, the last word part-filled.
  // At 3 bits its packer fails on such shapes, so no file has them.
  if (q.bits == 3 && (k % 32 != 0 || n % 32 != 0)) {
    throw Error(ErrorKind::kShape,
                fmt::format("{}: {}: 3-bit GPTQ weights need K (inputs) and N (outputs) to be "
                            "multiples of 32 (no packer writes 3-bit words part-filled), found "
                            "K = {}, N = {}",
                            where, module, k, n));
  }
  if (q.group_size != -1 && q.group_size <= 0) {
    throw Error(ErrorKind::kConfig, fmt::format("{}: {}: expected group_size -1 or positive, found {}",
                                                where, module, q.group_size));
  }
  QuantizedLinearTensors r;
  r.n = n;
  r.k = k;
  r.bits = q.bits;
  r.group_size = q.group_size == -1 ? static_cast<int>(k) : q.group_size;
  r.groups = (k + r.group_size - 1) / r.group_size;
  r.zeros_are_v1 = q.checkpoint_format == "gptq";
  const int64_t b = q.bits;

  auto find = [&](const char* leaf, bool required) -> const io::TensorInfo* {
    const std::string name = module + leaf;
    const io::TensorInfo* t = store.find(name);
    if (t == nullptr && required) {
      throw Error(ErrorKind::kShape,
                  fmt::format("{}: expected tensor \"{}\" of a GPTQ linear, found none", where, name));
    }
    return t;
  };
  auto check = [&](const io::TensorInfo* t, std::initializer_list<DType> dtypes, const Shape& shape,
                   const std::string& hint = {}) {
    bool dtype_ok = false;
    std::string allowed;
    for (DType d : dtypes) {
      dtype_ok = dtype_ok || t->dtype == d;
      if (!allowed.empty()) allowed += "/";
      allowed += dtype_name(d);
    }
    if (!dtype_ok || t->shape != shape) {
      throw Error(ErrorKind::kShape,
                  fmt::format("{}: tensor \"{}\": expected {} {}, found {} {}{}", t->file->string(),
                              t->name, allowed, shape_str(shape), dtype_name(t->dtype),
                              shape_str(t->shape), hint));
    }
  };

  r.qweight = find(".qweight", true);
  const int64_t qweight_rows = (k * b + 31) / 32;  // ceil(K*b/32)
  std::string hint;
  if (r.qweight->shape.size() == 2 && r.qweight->shape[0] != qweight_rows) {
    for (int other : {2, 3, 4, 8}) {
      if (other != q.bits && r.qweight->shape[0] == (k * other + 31) / 32) {
        hint = fmt::format(" (the config says {} bits; {} rows would mean {} bits)", q.bits,
                           r.qweight->shape[0], other);
      }
    }
  }
  check(r.qweight, {DType::kI32}, {qweight_rows, n}, hint);
  r.qzeros = find(".qzeros", true);
  check(r.qzeros, {DType::kI32}, {r.groups, (n * b + 31) / 32});
  r.scales = find(".scales", true);
  check(r.scales, {DType::kF16}, {r.groups, n});
  r.g_idx = find(".g_idx", false);
  if (r.g_idx != nullptr) {
    check(r.g_idx, {DType::kI32}, {k});
    for (int64_t i = 0; i < k; ++i) {
      int32_t v;
      std::memcpy(&v, r.g_idx->data + i * 4, 4);  // the mapping need not be 4-byte aligned
      if (v < 0 || v >= r.groups) {
        throw Error(ErrorKind::kShape,
                    fmt::format("{}: tensor \"{}\" of {}: g_idx[{}] = {}, expected a group in "
                                "[0, {})",
                                r.g_idx->file->string(), r.g_idx->name, module, i, v, r.groups));
      }
    }
  }
  r.bias = find(".bias", false);
  if (r.bias != nullptr) check(r.bias, {DType::kF16, DType::kF32, DType::kBF16}, {n});
  return r;
}

}  // namespace gptq::checkpoint
