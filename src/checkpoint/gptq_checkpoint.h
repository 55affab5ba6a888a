// The GPTQ checkpoint format (SPEC §1-2): tensor names, the quantization config files, the
// folder layout, shards and atomic publication. No GPTQ maths here: codes arrive already packed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/model_config.h"
#include "gptq/tensor.h"
#include "io/safetensors.h"

namespace gptq::checkpoint {

// One quantized linear, ready for disk. Shapes per SPEC §1 (K inputs, N outputs, G groups).
struct PackedLinear {
  std::string module;              // "model.layers.3.self_attn.q_proj"
  int64_t n = 0, k = 0, groups = 0;
  int bits = 4;
  // Written by us: K and N multiples of 32. Read from a file (model::read_packed_linear): padded
  // to whole packs of 32 inputs / outputs, i.e. [ceil(K/32)*b, N] and [G, ceil(N/32)*b].
  std::vector<int32_t> qweight;    // [K*b/32, N]
  std::vector<int32_t> qzeros;     // [G, N*b/32], already in the file's zero convention
  std::vector<uint16_t> scales;    // [G, N] fp16 bits
  std::vector<int32_t> g_idx;      // [K]
  std::vector<uint16_t> bias;      // [N] fp16 bits, or empty
};

// The tensors of a packed linear as named on disk (pointers into `p`, which must outlive them).
// Throws Error(kArgument) naming the module when bits is not 2/3/4/8, K or N is not a positive
// multiple of 32, or a vector's size disagrees with n/k/groups/bits.
std::vector<io::TensorToWrite> tensors_of(const PackedLinear& p);

// Files copied verbatim from the source folder when present: generation_config.json and the
// tokenizer files.
const std::vector<std::string>& copied_file_names();

struct WriterOptions {
  uint64_t max_shard_bytes = 4'000'000'000ull;  // --max-shard-size (decimal GB like HF)
  bool force = false;                           // replace an existing output folder
  bool resume = true;                           // keep finished layer parts of an interrupted run
  std::string run_signature;                    // identifies the arguments; parts of a run with
                                                // another signature are discarded, not reused
};

// Everything config.json's "quantization_config" and quantize_config.json carry.
struct QuantizationSummary {
  config::QuantizationConfig q;                  // bits, group_size, desc_act, sym, damp, ...
  bool damp_auto_increment = true;
  bool mse = false;
  bool mse_hessian = false;   // the search weighted by the Hessian (meta only)
  bool damp_search = false;   // damp_percent chosen per linear (meta only)
  bool act_group_aware = false;  // meta only, as GPTQModel records it
  std::string grid = "gptq";     // "ggml": llama.cpp's scale rule (meta only; the codes and
                                 // scales are a plain symmetric checkpoint either way)
  // Block linears left unquantized, by full module name (e.g. K or N not a multiple of 32).
  std::vector<std::string> unquantized_modules;
  // Modules quantized with other settings than q and its dynamic rules give them (a group larger
  // than K clamped to one group per row): module -> its complete settings.
  std::map<std::string, config::DynamicRule> module_overrides;
  // Suffixes of the block linears ("self_attn.q_proj", ...) in quantization order, grouped as
  // the true-sequential groups, used for modules_in_block_to_quantize.
  std::vector<std::vector<std::string>> block_linear_groups;
  int64_t num_layers = 0;
  std::string block_prefix = "model.layers.{layer}.";
};

// Writes a quantized model folder. Work happens in "<out>.partial/": each finished decoder
// layer is saved there as its own part file (atomically), so an interrupted run can resume from
// the last finished layer. finalize() assembles the shards, the index, the configs and the
// tokenizer files, then renames the folder to <out> (replacing it only with force).
class CheckpointWriter {
 public:
  // Throws Error(kArgument) if out exists and !force, if out is the source folder, or if
  // max_shard_bytes is 0. Creates or reopens the partial folder: a partial folder holding a
  // run.json with the same signature is kept when resume is on (its valid parts are reopened,
  // unreadable parts and temporaries are removed, other files in parts/ are left to the caller,
  // anything else in the folder is removed); otherwise it is wiped. A "<out>.partial" that holds other
  // things than ours (no run.json) is refused unless force.
  CheckpointWriter(std::filesystem::path source_dir, std::filesystem::path out, WriterOptions opts);

  // Whether a part for `layer` from a run with the same signature is already on disk.
  bool has_layer(int64_t layer) const;
  // Saves layer `layer`'s tensors (quantized linears plus any block tensors kept as they were),
  // replacing an earlier part of that layer. A tensor named in a part replaces the source tensor
  // of the same name in the final folder.
  void write_layer(int64_t layer, const std::vector<io::TensorToWrite>& tensors);
  // Tensors of a saved layer part (to rebuild the quantized weights when resuming). Valid until
  // the layer is written again or finalize() returns. Error(kArgument) if there is none.
  const io::SafetensorsFile& layer_part(int64_t layer);

  // Writes the final folder: every tensor of `source` that no layer part replaced (embeddings,
  // norms, lm_head, unquantized linears: original names and dtypes; a tied lm_head is not
  // duplicated), all layer parts, sharded by max_shard_bytes with model.safetensors.index.json
  // when more than one shard; config.json = source config + quantization_config;
  // quantize_config.json; generation_config.json and tokenizer files copied. Then renames.
  void finalize(const io::TensorStore& source, const config::ModelConfig& cfg, const QuantizationSummary& s);

  const std::filesystem::path& partial_dir() const { return partial_; }
  const std::filesystem::path& out_dir() const { return out_; }
  // "parts/layer-00003.safetensors" inside the partial folder.
  std::filesystem::path part_path(int64_t layer) const;

 private:
  void open_partial();
  void check_open() const;
  void release_pages(const io::TensorStore& source, const io::TensorInfo& t) const;

  std::filesystem::path source_dir_, out_, partial_;
  WriterOptions opts_;
  std::map<int64_t, std::unique_ptr<io::SafetensorsFile>> parts_;
  bool finalized_ = false;
};

// The "quantization_config" object (JSON text) for config.json; quantize_config.json holds the
// same keys. Every unquantized block linear gets a "dynamic" rule "-:<escaped module name>$";
// a suffix left unquantized in every layer is also left out of "modules_in_block_to_quantize"
// (written only then). Then come a "+:" rule per module_overrides entry and q.dynamic's rules.
// desc_act with static_groups is written as desc_act false (meta.desc_act keeps the setting). Error(kArgument) for bits not in
// {2,3,4,8}, an unknown checkpoint_format, a bad group size, a block_prefix without "{layer}",
// or a summary that leaves every block linear unquantized.
std::string quantization_config_json(const QuantizationSummary& s);

// A regular expression matching exactly `name` (metacharacters escaped, "$" appended; matched
// from the start as Python's re.match does).
std::string exact_module_regex(const std::string& name);

// Finds the raw tensors of a quantized linear in a store and checks dtypes and shapes against
// the config before anything is allocated: qweight I32 [ceil(K*b/32), N], qzeros I32 [G, ceil(N*b/32)],
// scales F16 [G, N], g_idx I32 [K] (optional, every value in [0, G)), bias F16/F32/BF16 [N]
// (optional). K and N need not be multiples of 32 at 2, 4 and 8 bits: qweight then has
// ceil(K*b/32) rows and qzeros ceil(N*b/32) words per row, the last word part-filled (as
// GPTQModel packs them), and G = ceil(K/g) with a partial last group. Throws
// Error(kUnsupported) for bits not in {2,3,4,8}; Error(kShape) for K or N not a multiple of 32
// at 3 bits, a missing tensor, a wrong dtype or shape, or a g_idx value out of range,
// naming the file, the tensor, what was expected and what was found; Error(kConfig) for a bad
// group size. The tensors are not converted: v1 files store z - 1 per field (zeros_are_v1), and
// adding the 1 back is the reader's business.
struct QuantizedLinearTensors {
  const io::TensorInfo* qweight = nullptr;
  const io::TensorInfo* qzeros = nullptr;
  const io::TensorInfo* scales = nullptr;
  const io::TensorInfo* g_idx = nullptr;   // may be null in old files: k / g assumed
  const io::TensorInfo* bias = nullptr;    // may be null
  int64_t n = 0, k = 0, groups = 0;
  int bits = 4;
  int group_size = 0;                      // resolved (K when -1)
  bool zeros_are_v1 = true;
};
QuantizedLinearTensors find_quantized_linear(const io::TensorStore& store, const std::string& module, int64_t n,
                                             int64_t k, const config::QuantizationConfig& q);

}  // namespace gptq::checkpoint
