// gptq::quantize_model: the streaming, resumable path behind `gptq quantize`.
#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "arch/arch.h"
#include "checkpoint/gptq_checkpoint.h"
#include "core/dtype.h"
#include "core/log.h"
#include "core/parallel.h"
#include "gptq/error.h"
#include "gptq/quantize.h"
#include "io/safetensors.h"
#include "pipeline/calibration.h"
#include "pipeline/quantize_pipeline.h"

namespace gptq {
namespace {

using nlohmann::json;

json report_to_json(const ModuleReport& r) {
  return {{"module", r.module}, {"bits", r.bits}, {"group_size", r.group_size}, {"n", r.n}, {"k", r.k}, {"loss", r.loss},
          {"damp", r.damp}, {"seconds", r.seconds}, {"note", r.note}};
}

ModuleReport report_from_json(const json& j) {
  ModuleReport r;
  r.module = j.at("module").get<std::string>();
  r.bits = j.at("bits").get<int>();
  r.group_size = j.at("group_size").get<int>();
  r.n = j.at("n").get<int64_t>();
  r.k = j.at("k").get<int64_t>();
  r.loss = j.at("loss").get<double>();
  r.damp = j.at("damp").get<double>();
  r.seconds = j.at("seconds").get<double>();
  r.note = j.at("note").get<std::string>();
  return r;
}

// FNV-1a over the calibration tokens: part of the run signature, so a resumed run only reuses
// layers made from the very same inputs.
uint64_t hash_samples(const std::vector<std::vector<int32_t>>& s) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& v : s) {
    for (int32_t id : v) {
      h ^= static_cast<uint32_t>(id);
      h *= 1099511628211ull;
    }
    h ^= 0xFFFFFFFFull;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

QuantizeReport quantize_model(const std::filesystem::path& model_dir, const std::filesystem::path& out,
                              const QuantizeConfig& qcfg, const CalibrationOptions& calib,
                              const QuantizeRunOptions& run) {
  const auto t_start = std::chrono::steady_clock::now();
  core::set_num_threads(run.threads);
  config::ModelConfig cfg = config::load_model_config(model_dir);
  if (cfg.quant) {
    throw Error(ErrorKind::kArgument,
                fmt::format("{}: the model is already GPTQ-quantized; quantize the original model", model_dir.string()));
  }
  const arch::ArchDesc& desc = cfg.arch;
  const model::Decoder dec(cfg, desc);
  const std::string format = pipeline::resolve_format(qcfg);
  (void)pipeline::to_params(qcfg);  // validates bits, group size, damp before any work
  const Tokenizer tok = Tokenizer::from_dir(model_dir);
  const io::TensorStore store = io::TensorStore::open_dir(model_dir);

  std::vector<std::vector<int32_t>> samples;
  if (qcfg.method != "rtn") samples = pipeline::build_calibration(calib, tok, cfg.vocab_size, cfg.max_position_embeddings);

  json sig = {{"bits", qcfg.bits}, {"group_size", qcfg.group_size}, {"desc_act", qcfg.desc_act},
              {"static_groups", qcfg.static_groups}, {"act_group_aware", qcfg.act_group_aware}, {"sym", qcfg.sym}, {"damp", qcfg.damp_percent},
              {"mse", qcfg.mse}, {"damp_search", qcfg.damp_search}, {"true_sequential", qcfg.true_sequential}, {"method", qcfg.method},
              {"format", format}, {"calib_dtype", pipeline::resolve_calib_dtype(qcfg)}, {"calib_hash", hash_samples(samples)}, {"version", GPTQ_VERSION}};
  std::vector<json> files;
  for (const auto& f : store.files()) {
    files.push_back({{"name", f->path().filename().string()}, {"bytes", std::filesystem::file_size(f->path())}});
  }
  sig["files"] = files;
  json dyn = json::array();
  for (const auto& d : qcfg.dynamic) {
    dyn.push_back({d.rule, d.bits.value_or(0), d.group_size.value_or(0), d.desc_act ? int(*d.desc_act) : -1,
                   d.sym ? int(*d.sym) : -1});
  }
  sig["dynamic"] = dyn;

  checkpoint::WriterOptions wo;
  wo.force = run.force;
  wo.max_shard_bytes = run.max_shard_bytes;
  wo.resume = true;
  wo.run_signature = sig.dump();
  checkpoint::CheckpointWriter writer(model_dir, out, wo);

  pipeline::QuantizationPipeline pipe(dec, qcfg, samples);
  const io::TensorInfo& emb = store.get(desc.embed + ".weight");
  const int64_t D = cfg.hidden_size;
  if (emb.shape != Shape{cfg.vocab_size, D}) {
    throw Error(ErrorKind::kShape, fmt::format("{}: {}.weight has shape {}, expected {}", model_dir.string(), desc.embed,
                                               shape_str(emb.shape), shape_str({cfg.vocab_size, D})));
  }
  pipe.start(
      [&](int32_t id, float* row) {
        const size_t es = dtype_size(emb.dtype);
        core::to_fp32(emb.dtype, emb.data + static_cast<size_t>(id) * D * es, static_cast<size_t>(D), row);
      },
      model::load_positions(store, cfg, desc));

  QuantizeReport report;
  report.layers = cfg.num_hidden_layers;
  report.calibration_tokens = pipe.tokens();
  report.output = out;
  checkpoint::QuantizationSummary summary = pipeline::make_summary(qcfg, cfg, desc);
  const config::QuantizationConfig base = pipeline::base_config(qcfg);

  std::vector<io::TensorToWrite> dequant_out;
  std::vector<std::vector<float>> dequant_keep;
  const auto parts_dir = writer.partial_dir() / "parts";
  for (int64_t layer = 0; layer < cfg.num_hidden_layers; ++layer) {
    model::BlockWeights block = model::load_block(store, cfg, desc, static_cast<int>(layer));
    const auto report_path = parts_dir / fmt::format("layer-{:05}.report.json", layer);
    std::vector<ModuleReport> reps;
    std::vector<checkpoint::PackedLinear> packed;
    if (writer.has_layer(layer) && std::filesystem::exists(report_path)) {
      // Resume: rebuild the quantized block from the saved part and only advance the activations.
      const json j = json::parse(io::read_text_file(report_path));
      for (const auto& r : j) reps.push_back(report_from_json(r));
      const auto& part = writer.layer_part(layer);
      for (auto& r : reps) {
        if (r.bits == 0) continue;
        for (const auto& ld : desc.linears) {
          if (desc.block_module(static_cast<int>(layer), ld.name) != r.module) continue;
          auto p = pipeline::read_packed(part, r.module, r.n, r.k, r.bits, r.group_size);
          block.at(ld.role).mutable_weight() = model::dequantize_packed(p, format);
          packed.push_back(std::move(p));
        }
      }
      pipe.advance(block);
      ++report.layers_resumed;
      core::log_info("layer {} of {}: resumed from {}", layer + 1, cfg.num_hidden_layers, writer.partial_dir().string());
    } else {
      pipeline::LayerResult res = pipe.quantize_layer(layer, block, run.progress);
      reps = res.reports;
      json j = json::array();
      for (const auto& r : reps) j.push_back(report_to_json(r));
      std::vector<io::TensorToWrite> tensors;
      for (const auto& p : res.packed) {
        auto t = checkpoint::tensors_of(p);
        tensors.insert(tensors.end(), t.begin(), t.end());
      }
      std::filesystem::create_directories(parts_dir);
      io::write_file_atomic(report_path, j.dump());  // before the part: a part implies its report
      writer.write_layer(layer, tensors);
      packed = std::move(res.packed);
    }
    for (auto& r : reps) {
      pipeline::add_to_summary(r, base, summary);
      report.modules.push_back(r);
    }
    if (!run.dequantized_out.empty()) {
      for (const auto& p : packed) {
        dequant_keep.push_back(model::dequantize_packed(p, format));
        dequant_out.push_back({p.module, DType::kF32, {p.n, p.k}, dequant_keep.back().data(),
                               dequant_keep.back().size() * sizeof(float)});
      }
    }
    if (run.progress) run.progress({"quantize", layer + 1, cfg.num_hidden_layers, fmt::format("layer {} done", layer)});
  }
  writer.finalize(store, cfg, summary);
  if (!run.dequantized_out.empty()) io::write_safetensors(run.dequantized_out, dequant_out);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return report;
}

}  // namespace gptq
