// gptq::quantize_model: the streaming, resumable path behind `gptq quantize`.
#include <fmt/format.h>

#include <chrono>
#include <optional>
#include <nlohmann/json.hpp>

#include "arch/arch.h"
#include "checkpoint/gptq_checkpoint.h"
#include "core/dtype.h"
#include "core/log.h"
#include "core/parallel.h"
#include "dist/dist.h"
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

// Runs f on every rank of the group; when it throws on any rank, every rank throws one error that
// names each failing rank (so no rank waits forever for one that gave up).
template <typename F>
auto on_every_rank(const dist::Group& g, F&& f) -> decltype(f()) {
  std::string err;
  std::optional<decltype(f())> v;
  try {
    v.emplace(f());
  } catch (const std::exception& e) {
    err = e.what();
    if (g.size() == 1) throw;
  }
  g.check_all(err);
  return std::move(*v);
}

}  // namespace

QuantizeReport quantize_model(const std::filesystem::path& model_dir, const std::filesystem::path& out,
                              const QuantizeConfig& qcfg, const CalibrationOptions& calib,
                              const QuantizeRunOptions& run) {
  const auto t_start = std::chrono::steady_clock::now();
  core::set_num_threads(run.threads);
  // Under mpirun every rank runs this function; rank 0 solves and writes (docs/distributed.md).
  const dist::Group group = dist::Group::world();
  const ProgressCallback progress = group.root() ? run.progress : ProgressCallback{};
  config::ModelConfig cfg = on_every_rank(group, [&] { return config::load_model_config(model_dir); });
  if (cfg.quant) {
    throw Error(ErrorKind::kArgument,
                fmt::format("{}: the model is already GPTQ-quantized; quantize the original model", model_dir.string()));
  }
  const arch::ArchDesc& desc = cfg.arch;
  const model::Decoder dec(cfg, desc);
  const std::string format = pipeline::resolve_format(qcfg);
  (void)pipeline::to_params(qcfg);  // validates bits, group size, damp before any work
  const io::TensorStore store = on_every_rank(group, [&] { return io::TensorStore::open_dir(model_dir); });
  std::vector<std::vector<int32_t>> samples = on_every_rank(group, [&] {
    std::vector<std::vector<int32_t>> s;
    const Tokenizer tok = Tokenizer::from_dir(model_dir);
    if (qcfg.method != "rtn") s = pipeline::build_calibration(calib, tok, cfg.vocab_size, cfg.max_position_embeddings);
    return s;
  });

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
  // Only rank 0 writes; the others learn from it which layers are done.
  std::optional<checkpoint::CheckpointWriter> writer;
  on_every_rank(group, [&] {
    if (group.root()) writer.emplace(model_dir, out, wo);
    return 0;
  });

  pipeline::QuantizationPipeline pipe(dec, qcfg, samples, group);
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
  const auto parts_dir = group.root() ? writer->partial_dir() / "parts" : std::filesystem::path();
  for (int64_t layer = 0; layer < cfg.num_hidden_layers; ++layer) {
    model::BlockWeights block = model::load_block(store, cfg, desc, static_cast<int>(layer));
    const auto report_path = parts_dir / fmt::format("layer-{:05}.report.json", layer);
    std::vector<ModuleReport> reps;
    std::vector<checkpoint::PackedLinear> packed;
    std::vector<uint8_t> resumed = {static_cast<uint8_t>(
        group.root() && writer->has_layer(layer) && std::filesystem::exists(report_path))};
    group.broadcast(resumed);
    if (resumed[0]) {
      // Resume: rebuild the quantized block from the saved part and only advance the activations.
      if (group.root()) {
        const json j = json::parse(io::read_text_file(report_path));
        for (const auto& r : j) reps.push_back(report_from_json(r));
        const auto& part = writer->layer_part(layer);
        for (auto& r : reps) {
          if (r.bits == 0) continue;
          packed.push_back(pipeline::read_packed(part, r.module, r.n, r.k, r.bits, r.group_size));
        }
      }
      if (group.size() > 1) {
        std::vector<uint8_t> bytes;
        if (group.root()) bytes = pipeline::encode_results(reps, packed);
        group.broadcast(bytes);
        if (!group.root()) pipeline::decode_results(bytes, reps, packed);
      }
      for (const auto& p : packed) {
        for (const auto& ld : desc.linears) {
          if (desc.block_module(static_cast<int>(layer), ld.name) != p.module) continue;
          block.at(ld.role).mutable_weight() = model::dequantize_packed(p, format);
        }
      }
      pipe.advance(block);
      ++report.layers_resumed;
      if (group.root()) {
        core::log_info("layer {} of {}: resumed from {}", layer + 1, cfg.num_hidden_layers, writer->partial_dir().string());
      }
    } else {
      pipeline::LayerResult res = pipe.quantize_layer(layer, block, progress);
      reps = res.reports;
      if (group.root()) {
        json j = json::array();
        for (const auto& r : reps) j.push_back(report_to_json(r));
        std::vector<io::TensorToWrite> tensors;
        for (const auto& p : res.packed) {
          auto t = checkpoint::tensors_of(p);
          tensors.insert(tensors.end(), t.begin(), t.end());
        }
        std::filesystem::create_directories(parts_dir);
        io::write_file_atomic(report_path, j.dump());  // before the part: a part implies its report
        writer->write_layer(layer, tensors);
      }
      packed = std::move(res.packed);
    }
    for (auto& r : reps) {
      pipeline::add_to_summary(r, base, summary);
      report.modules.push_back(r);
    }
    if (!run.dequantized_out.empty() && group.root()) {
      for (const auto& p : packed) {
        dequant_keep.push_back(model::dequantize_packed(p, format));
        dequant_out.push_back({p.module, DType::kF32, {p.n, p.k}, dequant_keep.back().data(),
                               dequant_keep.back().size() * sizeof(float)});
      }
    }
    if (progress) progress({"quantize", layer + 1, cfg.num_hidden_layers, fmt::format("layer {} done", layer)});
  }
  if (group.root()) {
    writer->finalize(store, cfg, summary);
    if (!run.dequantized_out.empty()) io::write_safetensors(run.dequantized_out, dequant_out);
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return report;
}

}  // namespace gptq
