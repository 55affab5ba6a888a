// Per-module overrides ("dynamic" rules) for quantizing: parsing the CLI and file forms, and the
// settings each module gets.
#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "gptq/error.h"
#include "pipeline/quantize_pipeline.h"

namespace gptq {
namespace {

using ordered_json = nlohmann::ordered_json;

ordered_json settings_json(const DynamicOverride& d) {
  ordered_json v = ordered_json::object();
  if (d.bits) v["bits"] = *d.bits;
  if (d.group_size) v["group_size"] = *d.group_size;
  if (d.desc_act) v["desc_act"] = *d.desc_act;
  if (d.sym) v["sym"] = *d.sym;
  return v;
}

// Through the config layer's parser, which checks the regex and the values.
config::DynamicRule to_rule(const DynamicOverride& d, std::string_view origin) {
  try {
    return config::parse_dynamic_rule(d.rule, settings_json(d).dump(), origin);
  } catch (const Error& e) {
    throw Error(ErrorKind::kArgument, e.what());
  }
}

bool parse_bool(const std::string& v, const std::string& where) {
  if (v == "true" || v == "1") return true;
  if (v == "false" || v == "0") return false;
  throw Error(ErrorKind::kArgument, fmt::format("{}: expected true or false, found \"{}\"", where, v));
}

int parse_int(const std::string& v, const std::string& where) {
  size_t pos = 0;
  int x = 0;
  try {
    x = std::stoi(v, &pos);
  } catch (...) {
    pos = 0;
  }
  if (pos == 0 || pos != v.size()) {
    throw Error(ErrorKind::kArgument, fmt::format("{}: expected an integer, found \"{}\"", where, v));
  }
  return x;
}

}  // namespace

DynamicOverride parse_dynamic_arg(const std::string& arg) {
  const std::string where = fmt::format("--dynamic '{}'", arg);
  DynamicOverride d;
  // The settings follow the last '=' (a regex may contain '=' itself, settings never do).
  const size_t eq = arg.rfind('=');
  const bool exclude = arg.rfind("-:", 0) == 0;
  if (eq == std::string::npos) {
    if (!exclude) {
      throw Error(ErrorKind::kArgument,
                  fmt::format("{}: expected REGEX=bits:8,group_size:64 (or -:REGEX to leave modules unquantized)", where));
    }
    d.rule = arg;
  } else {
    const std::string re = arg.substr(0, eq), fields = arg.substr(eq + 1);
    if (re.empty() || re == "+:" || re == "-:") throw Error(ErrorKind::kArgument, fmt::format("{}: empty regex", where));
    d.rule = (exclude || re.rfind("+:", 0) == 0) ? re : "+:" + re;
    std::stringstream ss(fields);
    std::string item;
    while (std::getline(ss, item, ',')) {
      if (item.empty()) continue;
      const size_t colon = item.find(':');
      if (colon == std::string::npos) {
        throw Error(ErrorKind::kArgument, fmt::format("{}: \"{}\": expected FIELD:VALUE", where, item));
      }
      const std::string key = item.substr(0, colon), val = item.substr(colon + 1);
      const std::string at = fmt::format("{}: {}", where, key);
      if (key == "bits") d.bits = parse_int(val, at);
      else if (key == "group_size") d.group_size = parse_int(val, at);
      else if (key == "desc_act") d.desc_act = parse_bool(val, at);
      else if (key == "sym") d.sym = parse_bool(val, at);
      else {
        throw Error(ErrorKind::kArgument,
                    fmt::format("{}: unknown field \"{}\" (expected bits, group_size, desc_act, sym)", where, key));
      }
    }
    if (exclude && (d.bits || d.group_size || d.desc_act || d.sym)) {
      throw Error(ErrorKind::kArgument, fmt::format("{}: a -: rule leaves modules unquantized and takes no settings", where));
    }
  }
  (void)to_rule(d, where);
  return d;
}

std::vector<DynamicOverride> read_dynamic_file(const std::filesystem::path& file) {
  std::ifstream f(file, std::ios::binary);
  if (!f) throw Error(ErrorKind::kIo, fmt::format("{}: cannot read the dynamic rules file", file.string()));
  std::ostringstream text;
  text << f.rdbuf();
  const std::string where = file.string();
  ordered_json j = ordered_json::parse(text.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    throw Error(ErrorKind::kArgument, fmt::format("{}: expected a JSON object of dynamic rules", where));
  }
  if (j.contains("dynamic")) j = j["dynamic"];
  if (!j.is_object()) throw Error(ErrorKind::kArgument, fmt::format("{}: \"dynamic\" is not an object", where));
  std::vector<DynamicOverride> out;
  for (const auto& [key, v] : j.items()) {
    const std::string at = fmt::format("{}: dynamic rule \"{}\"", where, key);
    if (!v.is_object()) throw Error(ErrorKind::kArgument, fmt::format("{}: expected an object of settings", at));
    for (const auto& [field, _] : v.items()) {
      if (field != "bits" && field != "group_size" && field != "desc_act" && field != "sym") {
        throw Error(ErrorKind::kArgument,
                    fmt::format("{}: unknown field \"{}\" (expected bits, group_size, desc_act, sym)", at, field));
      }
    }
    DynamicOverride d;
    d.rule = key;
    const config::DynamicRule full = [&] {
      try {
        return config::parse_dynamic_rule(key, v.dump(), where);
      } catch (const Error& e) {
        throw Error(ErrorKind::kArgument, e.what());
      }
    }();
    d.bits = full.bits;
    d.group_size = full.group_size;
    d.desc_act = full.desc_act;
    d.sym = full.sym;
    out.push_back(d);
  }
  return out;
}

namespace pipeline {

config::QuantizationConfig base_config(const QuantizeConfig& q) {
  config::QuantizationConfig c;
  c.bits = q.bits;
  c.group_size = q.group_size;
  c.desc_act = q.desc_act;
  c.sym = q.sym;
  c.static_groups = q.static_groups;
  for (const auto& d : q.dynamic) c.dynamic.push_back(to_rule(d, "dynamic rules"));
  return c;
}

quant::QuantParams params_for(const quant::QuantParams& base, const config::ModuleScheme& s) {
  quant::QuantParams p = base;
  p.bits = s.bits;
  p.group_size = s.group_size;
  p.desc_act = s.desc_act;
  p.sym = s.sym;
  return p;
}

}  // namespace pipeline
}  // namespace gptq
