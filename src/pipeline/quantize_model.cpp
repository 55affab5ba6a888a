// gptq::quantize_model: the streaming, resumable path behind `gptq quantize`.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
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

// Calibration samples as bytes (rank 0 to the others with broadcast_weights): the count, then
// each sample's length and ids.
std::vector<uint8_t> encode_samples(const std::vector<std::vector<int32_t>>& s) {
  std::vector<uint8_t> b;
  auto put = [&](const void* p, size_t n) {
    const auto* c = static_cast<const uint8_t*>(p);
    b.insert(b.end(), c, c + n);
  };
  const uint64_t n = s.size();
  put(&n, sizeof n);
  for (const auto& v : s) {
    const uint64_t len = v.size();
    put(&len, sizeof len);
    put(v.data(), v.size() * sizeof(int32_t));
  }
  return b;
}

std::vector<std::vector<int32_t>> decode_samples(const std::vector<uint8_t>& b) {
  size_t pos = 0;
  auto take = [&](void* p, size_t n) {
    if (n > b.size() - pos) throw Error(ErrorKind::kFormat, "dist: malformed calibration samples from rank 0");
    std::memcpy(p, b.data() + pos, n);
    pos += n;
  };
  uint64_t n = 0;
  take(&n, sizeof n);
  if (n > b.size()) throw Error(ErrorKind::kFormat, "dist: malformed calibration samples from rank 0");
  std::vector<std::vector<int32_t>> s(n);
  for (auto& v : s) {
    uint64_t len = 0;
    take(&len, sizeof len);
    if (len > b.size() / sizeof(int32_t)) throw Error(ErrorKind::kFormat, "dist: malformed calibration samples from rank 0");
    v.resize(len);
    take(v.data(), len * sizeof(int32_t));
  }
  if (pos != b.size()) throw Error(ErrorKind::kFormat, "dist: trailing bytes in the calibration samples from rank 0");
  return s;
}

// The tensors of `names` from a store, as one safetensors image in their stored dtypes (what
// rank 0 broadcasts with broadcast_weights); their pages are dropped once copied.
std::vector<uint8_t> image_of(const io::TensorStore& store, const std::vector<std::string>& names,
                              std::vector<io::TensorToWrite> extra = {}) {
  std::vector<io::TensorToWrite> ts = std::move(extra);
  for (const std::string& n : names) {
    const io::TensorInfo& t = store.get(n);
    ts.push_back({t.name, t.dtype, t.shape, t.data, t.nbytes, [&store, &t] { store.release(t); }});
  }
  return io::safetensors_bytes(std::move(ts));
}

// A list of one image, moved in (a braced list would copy it: initializer_list elements are const).
std::vector<std::vector<uint8_t>> one_image(std::vector<uint8_t> img) {
  std::vector<std::vector<uint8_t>> v;
  v.push_back(std::move(img));
  return v;
}

}  // namespace

QuantizeReport quantize_model(const std::filesystem::path& model_dir, const std::filesystem::path& out,
                              const QuantizeConfig& qcfg, const CalibrationOptions& calib,
                              const QuantizeRunOptions& run) {
  const auto t_start = std::chrono::steady_clock::now();
  if (!run.hidden_states.empty() && run.hidden_states != "auto" && run.hidden_states != "memory" &&
      run.hidden_states != "disk") {
    throw Error(ErrorKind::kArgument,
                fmt::format("hidden_states \"{}\": expected auto, memory or disk", run.hidden_states));
  }
  if (std::error_code ec; !run.offload_dir.empty() && !std::filesystem::is_directory(run.offload_dir, ec)) {
    throw Error(ErrorKind::kIo, fmt::format("offload folder {}: not a folder", run.offload_dir.string()));
  }
  core::set_num_threads(run.threads);
  // Under mpirun every rank runs this function; rank 0 solves and writes (docs/distributed.md).
  const dist::Group group = dist::Group::world();
  const ProgressCallback progress = group.root() ? run.progress : ProgressCallback{};
  // broadcast_weights: rank 0 alone reads the model folder and the calibration file; the others
  // receive what they need from it (the config text, the tokens, embedding rows, each layer).
  const bool bcast = run.broadcast_weights && group.size() > 1;
  const bool reads = !bcast || group.root();
  config::ModelConfig cfg;
  std::vector<uint8_t> cfg_text;
  on_every_rank(group, [&] {
    if (reads) {
      cfg = config::load_model_config(model_dir);
      if (cfg.quant) {
        throw Error(ErrorKind::kArgument,
                    fmt::format("{}: the model is already GPTQ-quantized; quantize the original model", model_dir.string()));
      }
      if (bcast) {
        const std::string t = io::read_text_file(model_dir / "config.json");
        cfg_text.assign(t.begin(), t.end());
      }
    }
    return 0;
  });
  if (bcast) {
    group.broadcast(cfg_text);
    on_every_rank(group, [&] {
      if (!group.root()) {
        const std::string origin = fmt::format("{} (from rank 0)", (model_dir / "config.json").string());
        cfg = config::parse_model_config(std::string(cfg_text.begin(), cfg_text.end()), origin);
      }
      return 0;
    });
  }
  const arch::ArchDesc& desc = cfg.arch;
  const model::Decoder dec(cfg, desc);
  const std::string format = pipeline::resolve_format(qcfg);
  (void)pipeline::to_params(qcfg);  // validates bits, group size, damp before any work
  std::optional<io::TensorStore> store;
  std::vector<std::vector<int32_t>> samples;
  on_every_rank(group, [&] {
    if (!reads) return 0;
    store.emplace(io::TensorStore::open_dir(model_dir));
    const Tokenizer tok = Tokenizer::from_dir(model_dir);
    if (qcfg.method != "rtn") samples = pipeline::build_calibration(calib, tok, cfg.vocab_size, cfg.max_position_embeddings);
    const io::TensorInfo& emb = store->get(desc.embed + ".weight");
    if (emb.shape != Shape{cfg.vocab_size, cfg.hidden_size}) {
      throw Error(ErrorKind::kShape, fmt::format("{}: {}.weight has shape {}, expected {}", model_dir.string(), desc.embed,
                                                 shape_str(emb.shape), shape_str({cfg.vocab_size, cfg.hidden_size})));
    }
    return 0;
  });
  if (bcast) {
    std::vector<uint8_t> b;
    if (group.root()) b = encode_samples(samples);
    group.broadcast(b);
    if (!group.root()) samples = decode_samples(b);
  }

  json sig = {{"bits", qcfg.bits}, {"group_size", qcfg.group_size}, {"desc_act", qcfg.desc_act},
              {"static_groups", qcfg.static_groups}, {"act_group_aware", qcfg.act_group_aware}, {"sym", qcfg.sym}, {"damp", qcfg.damp_percent},
              {"mse", qcfg.mse}, {"grid", pipeline::resolve_grid(qcfg)}, {"mse_hessian", qcfg.mse_hessian}, {"damp_search", qcfg.damp_search}, {"true_sequential", qcfg.true_sequential}, {"method", qcfg.method},
              {"format", format}, {"calib_dtype", pipeline::resolve_calib_dtype(qcfg)}, {"calib_hash", hash_samples(samples)}, {"version", GPTQ_VERSION}};
  std::vector<json> files;
  if (store) {  // the signature matters only where the writer is: rank 0
    for (const auto& f : store->files()) {
      files.push_back({{"name", f->path().filename().string()}, {"bytes", std::filesystem::file_size(f->path())}});
    }
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

  pipeline::QuantizationPipeline pipe(dec, qcfg, samples, group, run.distribute_solve);
  const int64_t D = cfg.hidden_size;
  // Where the hidden states live (QuantizeRunOptions::hidden_states).
  const std::filesystem::path spill = pipe.spill_dir(run.hidden_states, run.offload_dir, std::filesystem::absolute(out).parent_path());
  if (!bcast) {
    const io::TensorInfo& emb = store->get(desc.embed + ".weight");
    pipe.start(
        [&](int32_t id, float* row) {
          const size_t es = dtype_size(emb.dtype);
          core::to_fp32(emb.dtype, emb.data + static_cast<size_t>(id) * D * es, static_cast<size_t>(D), row);
        },
        model::load_positions(*store, cfg, desc), spill);
  } else {
    // The embedding rows of the calibration tokens (sorted ids) and the position table, in
    // their stored dtypes: the same bytes every rank would read from the folder.
    std::vector<uint8_t> img;
    std::vector<int32_t> ids;
    std::vector<uint8_t> rows;
    if (group.root()) {
      for (const auto& v : samples) ids.insert(ids.end(), v.begin(), v.end());
      std::sort(ids.begin(), ids.end());
      ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
      const io::TensorInfo& emb = store->get(desc.embed + ".weight");
      const size_t rb = static_cast<size_t>(D) * dtype_size(emb.dtype);
      rows.resize(ids.size() * rb);
      for (size_t i = 0; i < ids.size(); ++i) std::memcpy(rows.data() + i * rb, emb.data + static_cast<size_t>(ids[i]) * rb, rb);
      std::vector<std::string> names;
      if (desc.positions == arch::Positions::kLearned) names.push_back(desc.position_embed + ".weight");
      img = image_of(*store, names,
                     {{"gptq.embed_ids", DType::kI32, {static_cast<int64_t>(ids.size())}, ids.data(), ids.size() * 4},
                      {"gptq.embed_rows", emb.dtype, {static_cast<int64_t>(ids.size()), D}, rows.data(), rows.size()}});
    }
    group.broadcast(img);
    const io::TensorStore got = io::TensorStore::from_images(one_image(std::move(img)), model_dir);
    const io::TensorInfo& gid = got.get("gptq.embed_ids");
    const io::TensorInfo& grows = got.get("gptq.embed_rows");
    ids.resize(static_cast<size_t>(gid.numel()));
    std::memcpy(ids.data(), gid.data, ids.size() * sizeof(int32_t));
    pipe.start(
        [&](int32_t id, float* row) {
          const auto it = std::lower_bound(ids.begin(), ids.end(), id);
          if (it == ids.end() || *it != id) {
            throw Error(ErrorKind::kFormat, fmt::format("dist: rank 0 sent no embedding row for token {}", id));
          }
          const size_t es = dtype_size(grows.dtype);
          core::to_fp32(grows.dtype, grows.data + static_cast<size_t>(it - ids.begin()) * D * es, static_cast<size_t>(D), row);
        },
        model::load_positions(got, cfg, desc), spill);
  }

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
    model::BlockWeights block;
    if (!bcast) {
      block = model::load_block(*store, cfg, desc, static_cast<int>(layer));
    } else {
      // Rank 0 sends the layer's tensors as stored; every rank (rank 0 too) loads the block from
      // those bytes.
      std::vector<uint8_t> img;
      if (group.root()) {
        const std::string prefix = desc.block_module(static_cast<int>(layer), "");
        std::vector<std::string> names;
        for (const std::string& n : store->names()) {
          if (n.compare(0, prefix.size(), prefix) == 0) names.push_back(n);
        }
        img = image_of(*store, names);
      }
      const auto t_send = std::chrono::steady_clock::now();
      group.broadcast(img);
      if (group.root()) {
        core::log_info("layer {}: {:.1f} MB of weights broadcast in {:.3f} s", layer, static_cast<double>(img.size()) / 1e6,
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - t_send).count());
      }
      const io::TensorStore got = io::TensorStore::from_images(one_image(std::move(img)), model_dir);
      block = model::load_block(got, cfg, desc, static_cast<int>(layer));
    }
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
          block.at(ld.role).set_weight(model::dequantize_packed(p, format));
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
    writer->finalize(*store, cfg, summary);
    if (!run.dequantized_out.empty()) io::write_safetensors(run.dequantized_out, dequant_out);
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return report;
}

}  // namespace gptq
