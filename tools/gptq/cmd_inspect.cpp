#include <cstdio>
#include <nlohmann/json.hpp>

#include "arch/arch.h"
#include "checkpoint/loader_rules.h"
#include "commands.h"
#include "config/model_config.h"
#include "gptq/gptq.h"
#include "io/safetensors.h"
#include "model/weights.h"

namespace gptq::cli {

Runner add_inspect(CLI::App& app) {
  struct Args {
    std::string model;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("inspect", "architecture, parameter count, dtypes and quantization settings");
  cmd->add_option("-m,--model", a->model, "model folder")->required();
  cmd->add_flag("--json", a->json, "print one JSON object");
  return [a]() {
    LoadOptions lo;
    lo.progress = terminal_progress();
    auto model = CausalLM::from_pretrained(a->model, lo);
    const ModelInfo m = model.info();
    const auto& tok = model.tokenizer();
    // Which loaders take the folder, from their stated rules (checkpoint/loader_rules.h).
    std::vector<checkpoint::LoaderVerdict> verdicts;
    if (m.quantized) {
      const config::ModelConfig cfg = config::load_model_config(a->model);
      const arch::ArchDesc& desc = cfg.arch;
      const io::TensorStore store = io::TensorStore::open_dir(a->model);
      std::vector<checkpoint::LinearShape> shapes;
      for (int l = 0; l < cfg.num_hidden_layers; ++l) {
        for (const auto& ld : desc.linears) {
          const auto [n, k] = model::linear_shape(cfg, desc, ld.role);
          const std::string mod = desc.block_module(l, ld.name);
          // A fused linear stored as its parts (GPTQModel's split Phi-3 MLP) is listed as they are.
          if (const auto parts = model::split_parts(store, cfg, desc, l, ld.role); !parts.empty()) {
            for (const auto& [pm, pn] : parts) shapes.push_back({pm, pn, k, true});
            continue;
          }
          shapes.push_back({mod, n, k, store.find(mod + ".qweight") != nullptr});
        }
      }
      verdicts = checkpoint::loader_verdicts(*cfg.quant, shapes, cfg.model_type);
    }
    if (a->json) {
      nlohmann::json j = {
          {"model_type", m.model_type}, {"architecture", m.architecture}, {"layers", m.layers},
          {"hidden_size", m.hidden}, {"intermediate_size", m.intermediate}, {"heads", m.heads},
          {"kv_heads", m.kv_heads}, {"head_dim", m.head_dim}, {"vocab_size", m.vocab},
          {"max_position_embeddings", m.max_positions}, {"parameters", m.parameters},
          {"tied_embeddings", m.tied_embeddings}, {"dtypes", m.dtype}, {"file_bytes", m.file_bytes},
          {"quantized", m.quantized}, {"quantized_linears", m.quantized_linears}, {"dense_linears", m.dense_linears},
          {"bos_id", tok.bos_id()}, {"eos_ids", tok.eos_ids()}, {"add_bos", tok.add_bos()}};
      if (m.quantized) {
        j["quantization"] = {{"bits", m.bits}, {"group_size", m.group_size}, {"desc_act", m.desc_act},
                             {"sym", m.sym}, {"checkpoint_format", m.checkpoint_format}};
        nlohmann::json loaders = nlohmann::json::array();
        for (const auto& v : verdicts) loaders.push_back({{"loader", v.loader}, {"loads", v.loads}, {"reasons", v.reasons}});
        j["loaders"] = loaders;
      }
      std::printf("%s\n", j.dump(2).c_str());
      return 0;
    }
    std::printf("model:          %s\n", a->model.c_str());
    std::printf("architecture:   %s (model_type %s)\n", m.architecture.c_str(), m.model_type.c_str());
    std::printf("parameters:     %lld (%.1f M)\n", static_cast<long long>(m.parameters), m.parameters / 1e6);
    std::printf("layers:         %lld, hidden %lld, intermediate %lld\n", static_cast<long long>(m.layers),
                static_cast<long long>(m.hidden), static_cast<long long>(m.intermediate));
    std::printf("attention:      %lld heads, %lld kv heads, head_dim %lld\n", static_cast<long long>(m.heads),
                static_cast<long long>(m.kv_heads), static_cast<long long>(m.head_dim));
    std::printf("vocab:          %lld, context %lld, tied embeddings %s\n", static_cast<long long>(m.vocab),
                static_cast<long long>(m.max_positions), m.tied_embeddings ? "yes" : "no");
    std::printf("dtypes:         %s, %.1f MB on disk\n", m.dtype.c_str(), m.file_bytes / 1e6);
    if (m.quantized) {
      std::printf("quantization:   GPTQ %d-bit, group %d, desc_act %s, %s, format %s; %lld linears quantized, %lld dense\n",
                  m.bits, m.group_size, m.desc_act ? "yes" : "no", m.sym ? "sym" : "asym",
                  m.checkpoint_format.c_str(), static_cast<long long>(m.quantized_linears),
                  static_cast<long long>(m.dense_linears));
      std::printf("loaders (from their stated rules):\n");
      for (const auto& v : verdicts) {
        std::printf("  %-18s %s\n", v.loader.c_str(), v.loads ? "yes" : "no");
        for (const auto& r : v.reasons) std::printf("  %-18s   %s\n", "", r.c_str());
      }
    } else {
      std::printf("quantization:   none\n");
    }
    return 0;
  };
}

}  // namespace gptq::cli
