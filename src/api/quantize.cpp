// CausalLM::quantize / save_quantized: the in-memory path of the C++ API (AutoGPTQ's
// quantize() and save_quantized()). The CLI uses the streaming gptq::quantize_model instead.
#include <fmt/format.h>

#include <chrono>

#include "core/dtype.h"
#include "gptq/error.h"
#include "api/causal_lm_impl.h"
#include "pipeline/quantize_pipeline.h"

namespace gptq {

QuantizeReport CausalLM::quantize(const std::vector<std::string>& examples, const ProgressCallback& progress) {
  std::vector<std::vector<int32_t>> ids;
  for (const auto& e : examples) {
    auto v = tokenizer().encode(e, true);
    if (static_cast<int64_t>(v.size()) > context_length()) v.resize(static_cast<size_t>(context_length()));
    if (!v.empty()) ids.push_back(std::move(v));
  }
  return quantize(ids, progress);
}

QuantizeReport CausalLM::quantize(const std::vector<std::vector<int32_t>>& examples, const ProgressCallback& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  auto& im = *impl_;
  im.check_usable();
  if (im.cfg.quant) throw Error(ErrorKind::kArgument, im.dir.string() + ": the model is already quantized");
  if (!im.packed.empty()) throw Error(ErrorKind::kArgument, "quantize() was already called on this model");
  if (examples.empty() && im.qcfg.method != "rtn") {
    throw Error(ErrorKind::kArgument, "quantize() needs at least one calibration example");
  }
  for (const auto& e : examples) {
    if (e.empty()) throw Error(ErrorKind::kArgument, "quantize(): an example has no tokens");
    if (static_cast<int64_t>(e.size()) > context_length()) {
      throw Error(ErrorKind::kArgument, fmt::format("quantize(): an example has {} tokens, more than the context of {}",
                                                    e.size(), context_length()));
    }
    for (int32_t id : e) {
      if (id < 0 || id >= im.cfg.vocab_size) {
        throw Error(ErrorKind::kArgument, fmt::format("quantize(): token id {} outside [0, {})", id, im.cfg.vocab_size));
      }
    }
  }
  pipeline::QuantizationPipeline pipe(*im.decoder, im.qcfg, examples);
  QuantizeReport rep;
  rep.layers = im.cfg.num_hidden_layers;
  rep.calibration_tokens = pipe.tokens();
  // Blocks are quantized in place: once the first one has changed, a failure (or an interrupt)
  // leaves a model that is neither the original nor quantized, so it is marked unusable.
  try {
    // Hidden states above kAutoOffloadBytes go to a scratch file in the temporary folder.
    pipe.start([&](int32_t id, float* row) { im.weights.embed.row(id, row); }, im.weights.positions,
               pipe.spill_dir("auto", {}, {}));
    im.packed.resize(static_cast<size_t>(rep.layers));
    for (int64_t l = 0; l < rep.layers; ++l) {
      auto res = pipe.quantize_layer(l, im.weights.blocks[l], progress);
      im.packed[l] = std::move(res.packed);
      rep.modules.insert(rep.modules.end(), res.reports.begin(), res.reports.end());
      if (progress) progress({"quantize", l + 1, rep.layers, fmt::format("layer {} done", l)});
    }
  } catch (const std::exception& e) {
    im.packed.clear();
    im.unusable = im.dir.string() + ": quantize() stopped part-way (" + e.what() +
                  "), so the weights are partly quantized; load the model again";
    throw;
  }
  im.reports = rep.modules;
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

void validate_quantize_config(const QuantizeConfig& q) {
  (void)pipeline::to_params(q);
  (void)pipeline::resolve_format(q);
}

void CausalLM::save_quantized(const std::filesystem::path& out, bool force, uint64_t max_shard_bytes) const {
  const auto& im = *impl_;
  im.check_usable();
  if (im.packed.empty()) throw Error(ErrorKind::kArgument, "save_quantized(): call quantize() first");
  checkpoint::WriterOptions wo;
  wo.force = force;
  wo.resume = false;
  wo.max_shard_bytes = max_shard_bytes;
  wo.run_signature = "in-memory";
  checkpoint::CheckpointWriter writer(im.dir, out, wo);
  auto summary = pipeline::make_summary(im.qcfg, im.cfg, im.decoder->desc());
  const config::QuantizationConfig base = pipeline::base_config(im.qcfg);
  for (const auto& r : im.reports) pipeline::add_to_summary(r, base, summary);
  for (size_t l = 0; l < im.packed.size(); ++l) {
    std::vector<io::TensorToWrite> tensors;
    for (const auto& p : im.packed[l]) {
      auto t = checkpoint::tensors_of(p);
      tensors.insert(tensors.end(), t.begin(), t.end());
    }
    writer.write_layer(static_cast<int64_t>(l), tensors);
  }
  writer.finalize(*im.store, im.cfg, summary);
}

}  // namespace gptq
