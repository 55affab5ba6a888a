#include "checkpoint/loader_rules.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string_view>

namespace gptq::checkpoint {
namespace {

// Keeps the first few reasons of each kind: a 30-layer model would repeat them per module.
void add(LoaderVerdict& v, std::map<std::string, int>& seen, const std::string& kind, const std::string& line) {
  v.loads = false;
  if (seen[kind]++ == 0) v.reasons.push_back(line);
}

// A caveat for a loader that takes the folder anyway (once per kind).
void note(LoaderVerdict& v, std::map<std::string, int>& seen, const std::string& kind, const std::string& line) {
  if (seen[kind]++ == 0) v.reasons.push_back(line);
}

void modules_in_block(const config::QuantizationConfig& q, const std::string& module, bool* declared) {
  if (q.modules_in_block_to_quantize.empty()) return;
  for (const auto& s : q.modules_in_block_to_quantize) {
    if (module.size() >= s.size() && module.compare(module.size() - s.size(), s.size(), s) == 0) return;
  }
  *declared = true;
}

// meta.quantizer names "gptqmodel:X.Y.Z" with X.Y.Z >= 0.9.0 (GPTQModel's own writer, whose
// asymmetric v1 zeros it reads as written).
bool written_by_gptqmodel_0_9(const config::QuantizationConfig& q) {
  for (const std::string& w : q.meta_quantizer) {
    constexpr std::string_view kName = "gptqmodel:";
    if (w.size() <= kName.size() || w.compare(0, kName.size(), kName) != 0) continue;
    int major = 0, minor = 0;
    if (std::sscanf(w.c_str() + kName.size(), "%d.%d", &major, &minor) != 2) continue;
    if (major > 0 || minor >= 9) return true;
  }
  return false;
}

}  // namespace

std::vector<LoaderVerdict> loader_verdicts(const config::QuantizationConfig& q, const std::vector<LinearShape>& linears,
                                           const std::string& model_type) {
  LoaderVerdict tf{"transformers", true, {}}, gm{"GPTQModel", true, {}}, marlin{"vLLM gptq_marlin", true, {}},
      exl{"vLLM <= 0.11 gptq", true, {}};
  std::map<std::string, int> s_tf, s_gm, s_ma, s_ex;
  for (const LinearShape& l : linears) {
    const config::ModuleScheme sc = q.scheme_for(l.module);
    if (!l.quantized) {
      bool by_list = false;
      modules_in_block(q, l.module, &by_list);
      const bool by_rule = !sc.quantized;
      if (!by_rule) {
        add(gm, s_gm, "undeclared", fmt::format("{} is not quantized but no \"-:\" dynamic rule says so", l.module));
        add(marlin, s_ma, "undeclared", fmt::format("{} is not quantized but no \"-:\" dynamic rule says so", l.module));
        add(exl, s_ex, "undeclared", fmt::format("{} is not quantized but no \"-:\" dynamic rule says so", l.module));
      }
      if (!by_rule && !by_list) {
        add(tf, s_tf, "undeclared",
            fmt::format("{} is not quantized but neither modules_in_block_to_quantize nor a dynamic rule says so",
                        l.module));
      }
      continue;
    }
    const int64_t g = sc.group_size == -1 ? l.k : sc.group_size;
    const std::string shape = fmt::format("{} [N = {}, K = {}]", l.module, l.n, l.k);
    // transformers builds its GPTQ layers through optimum, which reads no dynamic rules: every
    // quantized module gets the base scheme.
    if (sc.bits != q.bits || sc.group_size != q.group_size || sc.sym != q.sym || sc.desc_act != q.desc_act) {
      add(tf, s_tf, "dynamic",
          fmt::format("{}: its own scheme ({} bits, group {}) from a dynamic rule; transformers (optimum) applies the "
                      "base scheme ({} bits, group {}) to every module",
                      l.module, sc.bits, sc.group_size, q.bits, q.group_size));
    }
    if (l.k % g != 0) {
      const auto line = fmt::format("{}: K is not divisible by group_size {}", shape, sc.group_size);
      add(tf, s_tf, "kg", line);
      // GPTQModel 7.7's TorchLinear and TorchFusedLinear declare SUPPORTS_AUTO_PADDING and take
      // such a K (it quantizes and loads stories260k's down_proj, K = 172 under g = 32); only its
      // AVX-512 kernel (TorchCpuAvx512Linear) needs K divisible by the group.
      note(gm, s_gm, "kg", line + " (GPTQModel: its torch kernel only, not TorchCpuAvx512Linear)");
      add(exl, s_ex, "kg", line);
    }
    // GPTQModel converts v1 zeros to v2 at load, and trusts asymmetric v1 zeros only from its own
    // writer (meta.quantizer "gptqmodel:" >= 0.9.0; older AutoGPTQ files wrapped them).
    if (!sc.sym && q.checkpoint_format == "gptq" && !written_by_gptqmodel_0_9(q)) {
      add(gm, s_gm, "asymv1",
          fmt::format("{}: asymmetric v1 zeros; GPTQModel loads those only from folders it wrote itself (use "
                      "--format gptq_v2 for GPTQModel)",
                      l.module));
    }
    if (sc.bits != 4 && sc.bits != 8) add(marlin, s_ma, "bits", fmt::format("{}: {} bits (Marlin: 4 or 8)", l.module, sc.bits));
    if (!sc.sym) add(marlin, s_ma, "sym", fmt::format("{}: asymmetric (Marlin's GPTQ types are symmetric)", l.module));
    if (sc.desc_act && sc.group_size != -1) {
      add(marlin, s_ma, "act", fmt::format("{}: desc_act with groups (vLLM 0.33 refuses group act-order)", l.module));
    }
    if (sc.group_size != -1 && sc.group_size != 32 && sc.group_size != 64 && sc.group_size != 128) {
      add(marlin, s_ma, "group", fmt::format("{}: group_size {} (Marlin: -1, 32, 64, 128)", l.module, sc.group_size));
    }
    // Marlin zero-pads N and K to its tiles (64 x 128 or 128 x 64) at weight preparation, so the
    // tile sizes are no rule; a group may not straddle the padding, and vLLM allocates qweight
    // [K/(32/b), N] and qzeros [G, N/(32/b)] words with integer division.
    if (g < l.k && l.k % g != 0) add(marlin, s_ma, "kg", fmt::format("{}: K not divisible by the group", shape));
    if ((sc.bits == 4 || sc.bits == 8) && (l.n % (32 / sc.bits) != 0 || l.k % (32 / sc.bits) != 0)) {
      add(marlin, s_ma, "mpack",
          fmt::format("{}: N or K not divisible by {} (vLLM sizes qzeros and qweight by whole words)", shape,
                      32 / sc.bits));
    }
    const int64_t pack = sc.bits == 3 ? 32 : 32 / sc.bits;
    if (l.n % pack != 0) add(exl, s_ex, "npack", fmt::format("{}: N not divisible by {}", shape, pack));
  }
  auto ends_with = [](const std::string& s, std::string_view t) {
    return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
  };
  bool any_quantized = false, fused_gate_up = false, split_gate_up = false;
  for (const LinearShape& l : linears) {
    any_quantized |= l.quantized;
    fused_gate_up |= l.quantized && ends_with(l.module, ".mlp.gate_up_proj");
    split_gate_up |= l.quantized && ends_with(l.module, ".mlp.gate_proj");
  }
  if (model_type == "gpt2" && any_quantized) {
    add(tf, s_tf, "gpt2",
        "gpt2: transformers' GPT2PreTrainedModel._init_weights reads c_proj.weight, which a quantized linear "
        "lacks (every GPTQ GPT-2 folder)");
  }
  if (model_type == "phi3" && fused_gate_up) {
    add(gm, s_gm, "phi3",
        "phi3: GPTQModel splits Phi3MLP's gate_up_proj into gate_proj and up_proj and expects them quantized "
        "apart (transformers and vLLM load the fused module)");
  }
  if (model_type == "phi3" && split_gate_up) {
    add(tf, s_tf, "phi3",
        "phi3: mlp.gate_proj and mlp.up_proj quantized apart (GPTQModel's layout); transformers' Phi3MLP has one "
        "gate_up_proj and does not load them");
  }
  if (model_type == "gpt_neox" && any_quantized) {
    add(gm, s_gm, "gpt_neox",
        "gpt_neox: GPTQModel leaves the embed_out head unloaded (transformers 5 calls it lm_head; GPTQModel 7.7 "
        "cannot quantize GPT-NeoX either)");
  }
  if (q.checkpoint_format == "gptq_v2") {
    exl.reasons.push_back("gptq_v2: vLLM versions that ignore checkpoint_format read the zeros as v1 (off by one)");
    marlin.reasons.push_back("gptq_v2: vLLM versions that ignore checkpoint_format read the zeros as v1 (off by one)");
  }
  return {tf, gm, marlin, exl};
}

}  // namespace gptq::checkpoint
