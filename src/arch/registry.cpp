#include "arch/registry.h"

#include <fmt/format.h>

#include "gptq/error.h"

namespace gptq::arch {
namespace {

struct Entry {
  const char* model_type;
  ArchDesc (*describe)(const config::ModelConfig&);
};

constexpr Entry kRegistry[] = {
    {"llama", describe_llama},
    {"mistral", describe_llama},
    {"qwen2", describe_qwen2},
};

}  // namespace

const LinearDesc& ArchDesc::linear(Role r) const {
  for (const auto& l : linears) {
    if (l.role == r) return l;
  }
  throw Error(ErrorKind::kUnsupported, fmt::format("{}: architecture has no such linear", model_type));
}

std::string ArchDesc::block_module(int layer, const std::string& name) const {
  std::string p = block_prefix;
  const auto pos = p.find("{layer}");
  p.replace(pos, 7, std::to_string(layer));
  return p + name;
}

ArchDesc describe(const config::ModelConfig& cfg) {
  std::vector<std::string> known;
  for (const auto& e : kRegistry) {
    if (cfg.model_type == e.model_type) return e.describe(cfg);
    known.push_back(e.model_type);
  }
  throw Error(ErrorKind::kUnsupported, fmt::format("model_type \"{}\" is not supported; supported: {}",
                                                   cfg.model_type, fmt::join(known, ", ")));
}

}  // namespace gptq::arch
