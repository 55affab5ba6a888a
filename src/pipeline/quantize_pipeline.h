// GPTQ over a whole model, layer by layer (SPEC §3): capture the inputs of each decoder layer,
// run its true-sequential groups collecting Hessians, quantize each linear, put the dequantized
// weights back, and recompute the layer's outputs as the next layer's inputs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "arch/arch.h"
#include "checkpoint/gptq_checkpoint.h"
#include "config/model_config.h"
#include "dist/dist.h"
#include "gptq/quantize.h"
#include "model/decoder.h"
#include "model/weights.h"
#include "pipeline/hidden_states.h"
#include "quant/quantizer.h"

namespace gptq::pipeline {

struct LayerResult {
  std::vector<checkpoint::PackedLinear> packed;  // the linears that were quantized
  std::vector<ModuleReport> reports;             // every block linear, quantized or not
};

// The file format a config asks for: "gptq" or "gptq_v2" (empty: "gptq", v1, whose asymmetric
// zeros are packed as GPTQModel packs them, see quant::qzeros_v2_to_v1).
std::string resolve_format(const QuantizeConfig& q);
// "fp32" or "bf16" for q.calib_dtype ("" is fp32). Throws
// Error(kArgument) for any other value.
std::string resolve_calib_dtype(const QuantizeConfig& q);
// "gptq" or "ggml" (QuantizeConfig::grid, "" meaning "gptq"); Error(kArgument) for another
// name, or "ggml" with settings llama.cpp's grid does not have (not symmetric 4/8-bit).
std::string resolve_grid(const QuantizeConfig& q);
// The base settings as quant params; also checks every dynamic rule (regex, and the settings it
// gives through quant::validate). Error(kArgument) naming the field or rule.
quant::QuantParams to_params(const QuantizeConfig& q);
// q's base settings and dynamic rules in the checkpoint config's terms (scheme_for per module).
config::QuantizationConfig base_config(const QuantizeConfig& q);
// `base` with a module's bits, group size, act-order and symmetry.
quant::QuantParams params_for(const quant::QuantParams& base, const config::ModuleScheme& s);
// Records a finished module in the summary: unquantized, or quantized with other settings than
// the rules give it (a clamped group), which then gets a rule of its own.
void add_to_summary(const ModuleReport& r, const config::QuantizationConfig& base, checkpoint::QuantizationSummary& s);

// What the checkpoint's config files say about a run (format resolved, groups from the arch).
checkpoint::QuantizationSummary make_summary(const QuantizeConfig& q, const config::ModelConfig& cfg,
                                             const arch::ArchDesc& desc);

class QuantizationPipeline {
 public:
  // With a group of several ranks (quantize_model under mpirun), this rank keeps and runs only
  // the samples of its shards (sharded_hessian.h); rank 0 solves every linear and sends the
  // packed results to the others, so every rank ends each layer with the same weights. With
  // `distribute_solve`, the linears of each true-sequential group are spread over the ranks
  // instead (assign_solvers), each solver receiving its slot's Hessian and broadcasting its
  // results; the output is the same bytes.
  QuantizationPipeline(const model::Decoder& decoder, const QuantizeConfig& q, std::vector<std::vector<int32_t>> samples,
                       dist::Group group = dist::Group::single(), bool distribute_solve = false);

  // Sets every sample's hidden state to its embedding. `embed_row(id, out)` writes row id of the
  // embedding matrix (so callers can read rows straight from a mapped file).
  // `positions`: the learned position table [P, D] for architectures that have one.
  // `spill_dir`: keep the hidden states in a scratch file there (HiddenStates); empty: in memory.
  void start(const std::function<void(int32_t, float*)>& embed_row, const std::vector<float>& positions = {},
             const std::filesystem::path& spill_dir = {});

  // Quantizes block `layer` in place (dense weights replaced by their dequantized values) and
  // advances the hidden states through the quantized block. Dense 16-bit linears are widened to
  // fp32 first, so the result does not depend on how the block was loaded.
  LayerResult quantize_layer(int64_t layer, model::BlockWeights& block, const ProgressCallback& progress = {});

  // Advances the hidden states through a block without quantizing it (resumed layers).
  void advance(const model::BlockWeights& block);

  int64_t tokens() const;
  // Tokens of the samples this rank keeps (all of them on one process).
  int64_t kept_tokens() const;
  // Where start() should keep the hidden states (QuantizeRunOptions::hidden_states): empty for
  // memory; else `dir`, or when that is empty `parent` (the system's temporary folder where
  // that is no folder). Logs the choice of a scratch file.
  std::filesystem::path spill_dir(const std::string& mode, const std::filesystem::path& dir,
                                  const std::filesystem::path& parent) const;

 private:
  bool owns(size_t sample) const {
    return static_cast<int64_t>(sample) / shard_size_ % group_.size() == group_.rank();
  }

  // The rank that solves each of `todo` (same order): all 0, or with distribute_solve_ the
  // largest linears first, each to the least loaded rank. Depends on the shapes and N only.
  std::vector<int> assign_solvers(const std::vector<arch::Role>& todo, const model::BlockWeights& block) const;

  // Where a pass starts or stops: sublayer s at its top (2s) or at its output linear (2s + 1).
  // A pass stopped anywhere in sublayer s leaves the residual stream at the start of s.
  struct Point {
    size_t sublayer = 0;
    bool at_output = false;
    size_t key() const { return 2 * sublayer + (at_output ? 1 : 0); }
  };

  // One pass over this rank's samples, starting at `from`: the residual stream at the start of
  // from.sublayer comes from mid_ when that is > 0 (the block input still in hidden_), and with
  // from.at_output the output linear's input from out_in_. save_mid: the residual stream where
  // the pass stops (the start of stop_at's sublayer) goes to mid_; save_output: the input of
  // stop_at, the output linear of that sublayer, goes to out_in_ of that sublayer.
  void run_block(const model::BlockWeights& block, const model::LinearInputHook* hook, std::optional<arch::Role> stop_at,
                 bool update_hidden, Point from, bool save_mid = false, bool save_output = false);
  // The furthest saved point at or before `stop` (a pass to the end: none given).
  Point resume_point(std::optional<Point> stop) const;
  // Widths of the states true-sequential calibration saves besides the block input: mid_ (D),
  // then the input of each sublayer's output linear; empty when nothing is reused.
  std::vector<int64_t> saved_widths() const;

  const model::Decoder& dec_;
  QuantizeConfig q_;
  quant::QuantParams params_;
  config::QuantizationConfig base_;
  std::string format_;
  quant::CalibDtype calib_;
  std::vector<std::vector<int32_t>> samples_;
  HiddenStates hidden_;                     // per sample [T_s, D]: the current block's input
  // True-sequential runs: per sample, the residual stream at the start of sublayer mid_at_ of
  // the current block, saved by the first pass that reaches it once every linear before it has
  // its final weights, so that later passes (the MLP's groups, the final advance) start there
  // instead of recomputing attention (the same bits: the same ops on the same inputs).
  HiddenStates mid_;
  size_t mid_at_ = 0;                       // 0: none saved for this block
  // Per sublayer, the input of its output linear (o_proj, down_proj) [T_s, K], saved by the pass
  // that collects that linear's Hessian once every other linear up to it is final: later passes
  // start at the linear instead of recomputing attention or the MLP's up projections.
  std::vector<HiddenStates> out_in_;
  std::vector<bool> out_saved_;             // for the current block
  bool reuse_ = false;                      // saved_widths() not empty (GPTQ_RECOMPUTE_SUBLAYERS=1: off)
  size_t current_sample_ = 0;               // the sample run_block is on (hooks read it)
  dist::Group group_;
  bool distribute_solve_ = false;
  int64_t shard_size_ = 8;                  // samples per canonical shard
};

// Solved linears as bytes, for sending from their solver to the other ranks (same build on every rank).
std::vector<uint8_t> encode_results(const std::vector<ModuleReport>& reports,
                                    const std::vector<checkpoint::PackedLinear>& packed);
void decode_results(const std::vector<uint8_t>& bytes, std::vector<ModuleReport>& reports,
                    std::vector<checkpoint::PackedLinear>& packed);

// Packs a quantization result for disk in the given format ("gptq" or "gptq_v2").
checkpoint::PackedLinear pack_result(const std::string& module, const quant::QuantResult& r, const std::string& format,
                                     const std::vector<float>& bias);
// Rebuilds a PackedLinear from a layer part file (resume).
checkpoint::PackedLinear read_packed(const io::SafetensorsFile& part, const std::string& module, int64_t n, int64_t k,
                                     int bits, int group_size);

}  // namespace gptq::pipeline
