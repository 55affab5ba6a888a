#include "arch/registry.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "gptq/error.h"

namespace gptq::arch {
namespace {

struct Entry {
  const char* model_type;
  ArchDesc (*describe)(std::string_view, const ArchOptions&);
};

constexpr Entry kRegistry[] = {
    {"llama", describe_llama},
    {"mistral", describe_mistral},
    {"qwen2", describe_qwen2},
    {"qwen3", describe_qwen3},
    {"phi3", describe_phi3},
    {"gemma", describe_gemma},
    {"gemma2", describe_gemma2},
    {"gemma3_text", describe_gemma3},
    {"gpt_neox", describe_gpt_neox},
    {"opt", describe_opt},
    {"gpt2", describe_gpt2},
    {"starcoder2", describe_starcoder2},
    {"granite", describe_granite},
    {"olmo2", describe_olmo2},
    {"stablelm", describe_stablelm},
    {"cohere", describe_cohere},
};

[[noreturn]] void invalid(const ArchDesc& d, const std::string& what) {
  throw Error(ErrorKind::kArgument, fmt::format("architecture \"{}\": {}", d.model_type, what));
}

// Index of the sequential group holding r, or -1.
int group_of(const ArchDesc& d, Role r) {
  for (size_t g = 0; g < d.sequential_groups.size(); ++g) {
    const auto& grp = d.sequential_groups[g];
    if (std::find(grp.begin(), grp.end(), r) != grp.end()) return static_cast<int>(g);
  }
  return -1;
}

}  // namespace

std::string_view role_name(Role r) {
  switch (r) {
    case Role::kQ: return "q";
    case Role::kK: return "k";
    case Role::kV: return "v";
    case Role::kO: return "o";
    case Role::kGate: return "gate";
    case Role::kUp: return "up";
    case Role::kDown: return "down";
  }
  return "?";
}

const LinearDesc& ArchDesc::linear(Role r) const {
  for (const auto& l : linears) {
    if (l.role == r) return l;
  }
  throw Error(ErrorKind::kUnsupported,
              fmt::format("{}: architecture has no {} linear", model_type, role_name(r)));
}

bool ArchDesc::has(Role r) const {
  return std::any_of(linears.begin(), linears.end(), [&](const LinearDesc& l) { return l.role == r; });
}

std::string ArchDesc::block_module(int layer, const std::string& name) const {
  std::string p = block_prefix;
  const auto pos = p.find("{layer}");
  p.replace(pos, 7, std::to_string(layer));
  return p + name;
}

Role ArchDesc::input_slot(Role r) const {
  for (const auto& g : shared_inputs) {
    if (std::find(g.begin(), g.end(), r) != g.end()) return g.front();
  }
  return r;
}

int ArchDesc::input_order(Role r) const {
  const Role slot = input_slot(r);
  for (size_t i = 0; i < shared_inputs.size(); ++i) {
    if (shared_inputs[i].front() == slot) return static_cast<int>(i);
  }
  return static_cast<int>(shared_inputs.size());
}

int ArchDesc::sublayer_of(Role r) const {
  const bool attn = r == Role::kQ || r == Role::kK || r == Role::kV || r == Role::kO;
  for (size_t i = 0; i < sublayers.size(); ++i) {
    const SublayerKind k = sublayers[i].kind;
    if (attn ? k == SublayerKind::kAttention
             : k == SublayerKind::kMlp ? (r == Role::kUp || r == Role::kDown) : k == SublayerKind::kGatedMlp) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

std::vector<Role> ArchDesc::shared_with(Role r) const {
  for (const auto& g : shared_inputs) {
    if (std::find(g.begin(), g.end(), r) != g.end()) return g;
  }
  return {r};
}

const FusedDesc* ArchDesc::fused_of(Role r) const {
  for (const auto& f : fused) {
    if (std::find(f.roles.begin(), f.roles.end(), r) != f.roles.end()) return &f;
  }
  return nullptr;
}

AttentionKind ArchDesc::attention_kind(int64_t layer) const {
  if (attention_pattern.empty()) return AttentionKind::kGlobal;
  return attention_pattern[static_cast<size_t>(layer) % attention_pattern.size()];
}

void ArchDesc::validate() const {
  std::set<Role> roles;
  for (const auto& l : linears) {
    if (!roles.insert(l.role).second) invalid(*this, fmt::format("linear {} listed twice", role_name(l.role)));
  }
  std::set<Role> seen;
  for (const auto& g : sequential_groups) {
    for (Role r : g) {
      if (!roles.count(r)) invalid(*this, fmt::format("sequential group names {}, which the block lacks", role_name(r)));
      if (!seen.insert(r).second) invalid(*this, fmt::format("{} is in two sequential groups", role_name(r)));
    }
  }
  for (Role r : roles) {
    if (!seen.count(r)) invalid(*this, fmt::format("{} is in no sequential group", role_name(r)));
  }
  auto one_group = [&](const std::vector<Role>& g, const char* what) {
    if (g.empty()) invalid(*this, fmt::format("empty {} group", what));
    for (Role r : g) {
      if (!roles.count(r)) invalid(*this, fmt::format("{} group names {}, which the block lacks", what, role_name(r)));
      if (group_of(*this, r) != group_of(*this, g.front())) {
        invalid(*this, fmt::format("{} group splits {} and {} across sequential groups", what,
                                   role_name(g.front()), role_name(r)));
      }
    }
  };
  std::set<Role> shared;
  for (const auto& g : shared_inputs) {
    one_group(g, "shared-input");
    for (Role r : g) {
      if (!shared.insert(r).second) invalid(*this, fmt::format("{} is in two shared-input groups", role_name(r)));
    }
  }
  for (const auto& f : fused) {
    // A fused tensor is one linear, listed under its first role with the fused name; its parts
    // read one input (q/k/v, or gate/up) and have no linear of their own.
    if (f.roles.size() < 2) invalid(*this, fmt::format("fused {} has fewer than two parts", f.name));
    if (!roles.count(f.roles.front()) || linear(f.roles.front()).name != f.name) {
      invalid(*this, fmt::format("fused {} is not the linear of its first role {}", f.name, role_name(f.roles.front())));
    }
    auto family = [](Role r) { return r == Role::kQ || r == Role::kK || r == Role::kV ? 0 : r == Role::kGate || r == Role::kUp ? 1 : 2; };
    for (size_t i = 0; i < f.roles.size(); ++i) {
      const Role r = f.roles[i];
      if (family(r) == 2 || family(r) != family(f.roles.front())) {
        invalid(*this, fmt::format("fused {} joins linears with different inputs", f.name));
      }
      if (i > 0 && roles.count(r)) {
        invalid(*this, fmt::format("fused {} part {} also has a linear of its own", f.name, role_name(r)));
      }
    }
    if (!f.split_names.empty() && (f.split_names.size() != f.roles.size() || f.per_head)) {
      invalid(*this, fmt::format("fused {}: split names need one per part, parts one after the other", f.name));
    }
  }
  if (positions == Positions::kLearned && position_embed.empty()) {
    invalid(*this, "learned positions without a position table");
  }
  if (positions == Positions::kRope && position_offset != 0) invalid(*this, "a position offset with RoPE");
  if (norm == NormKind::kLayer && norm_weight_offset != 0.0f) invalid(*this, "a weight offset on LayerNorm");
  for (const auto& s : sublayers) {
    if (s.norm.empty() && s.post_norm.empty()) invalid(*this, "a sublayer without a norm");
    if (s.norm.empty() && norm == NormKind::kLayer) invalid(*this, "a LayerNorm family without a pre-norm");
  }
  if (qk_norm_full && (q_norm.empty() || k_norm.empty())) invalid(*this, "full-width q/k norms without q_norm and k_norm");
}

std::vector<std::string> supported_model_types() {
  std::vector<std::string> out;
  for (const auto& e : kRegistry) out.emplace_back(e.model_type);
  return out;
}

bool is_supported(std::string_view model_type) {
  return std::any_of(std::begin(kRegistry), std::end(kRegistry),
                     [&](const Entry& e) { return model_type == e.model_type; });
}

ArchDesc describe(std::string_view model_type, const ArchOptions& opts, std::string_view origin) {
  for (const auto& e : kRegistry) {
    if (model_type == e.model_type) {
      ArchDesc d = e.describe(model_type, opts);
      d.validate();
      return d;
    }
  }
  throw Error(ErrorKind::kUnsupported, fmt::format("{}: model_type \"{}\" is not supported; supported: {}", origin,
                                                   model_type, fmt::join(supported_model_types(), ", ")));
}

}  // namespace gptq::arch
