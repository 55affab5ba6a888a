// Settings for GPTQ quantization, as AutoGPTQ's BaseQuantizeConfig names them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace gptq {

// A per-module override, as GPTQModel's "dynamic" rules define them. `rule` is "-:REGEX"
// (matching modules stay unquantized) or "+:REGEX" / "REGEX" (matching modules are quantized
// with the fields set here instead of the base settings). REGEX (ECMAScript syntax) is matched
// from the start of the full module name, as Python's re.match; the first matching rule wins.
// The rules are written to the checkpoint's "dynamic" key as given.
struct DynamicOverride {
  std::string rule;
  std::optional<int> bits, group_size;
  std::optional<bool> desc_act, sym;
};

// One --dynamic argument: "REGEX=bits:8,group_size:64,sym:false,desc_act:true" (a "+:" rule
// unless REGEX starts with "-:"), or "-:REGEX" alone. Error(kArgument) naming the argument for a
// bad field, value or regex, or bits not 2/3/4/8.
DynamicOverride parse_dynamic_arg(const std::string& arg);
// A JSON file holding the "dynamic" object as quantization_config writes it ({"+:REGEX":
// {"bits": 8}, "-:REGEX": {}}), or an object with a "dynamic" key. Rules keep the file's order.
// Error(kArgument) naming the file for bad JSON, a bad rule or an unknown field.
std::vector<DynamicOverride> read_dynamic_file(const std::filesystem::path& file);

struct QuantizeConfig {
  int bits = 4;                // 2, 3, 4 or 8
  int group_size = 128;        // -1: one group per output row
  bool desc_act = false;       // act-order
  bool static_groups = false;
  bool sym = true;
  double damp_percent = 0.01;  // raised by 0.01 while the Cholesky factorization fails
  bool mse = false;
  // With mse (and implying it): the clipping search weights each column's squared rounding error
  // by GPTQ's loss weight for it (1 / U[j,j]^2, from the Hessian), the way an importance matrix
  // weights llama.cpp's search, instead of the unweighted |error|^2.4. GPTQ only.
  bool mse_hessian = false;
  // Choose damp_percent per linear among 0.001..0.1 by two-fold cross-validation over the
  // calibration sequences (even / odd): the candidate whose solve on one half leaves the least
  // output error on the other. Ten extra solves per linear; damp_percent is then ignored.
  bool damp_search = false;
  bool true_sequential = true;
  std::string method = "gptq";  // "gptq" or "rtn"
  std::string format = "";      // "gptq" (v1) or "gptq_v2"; empty: "gptq"
  std::vector<DynamicOverride> dynamic = {};  // per-module overrides, first match wins
  // GPTQModel's group-aware act-order (its default): columns by descending H[k,k] within each
  // group, groups by their largest H[k,k]. g_idx stays k / g, so the folder is declared
  // desc_act false and loads wherever plain folders do. Not with desc_act.
  bool act_group_aware = false;
  // Precision of the calibration Hessians H = 2/n sum x x^T: "fp32" (x as computed, fp32 sums of
  // 512 products added in double; also what "" means) or "bf16" (x rounded to bf16, fp32 sums,
  // with vdpbf16ps where the CPU has AVX512-BF16, else a slow exact emulation). fp32 stays the
  // default everywhere: bf16 cost 4% perplexity on SmolLM2 (README "Calibration in bf16").
  std::string calib_dtype = "";
  // The grid each group's codes live on. "gptq" (also ""): SPEC §3, scale = 2 max|w| / maxq.
  // "ggml": llama.cpp's own rule, so that the folder exports to GGUF as the blocks llama-quantize
  // would lay out: 4-bit, d = (the group's value of largest magnitude) / -8 rounded to fp16
  // (Q4_0; d is negative where that value is positive, codes 0..15 with zero 8, and the extreme
  // lands on code 0), 8-bit, d = max|w| / 127 rounded to fp16 (Q8_0, codes 1..255 with zero 128).
  // Codes and the error feedback use the fp16 d. Symmetric 4- and 8-bit only; the folder stays a
  // plain GPTQ v1 symmetric checkpoint. With mse, the shrink search runs on this grid.
  std::string grid = "";
};

// Throws Error(kArgument) naming the field when a setting is out of range (bits not 2/3/4/8,
// group_size not -1 or 16..1024, damp_percent not in (0, 1), an unknown method or format, a
// dynamic rule that is not a valid regex or whose settings are out of range).
// quantize_model and CausalLM::from_pretrained with
// a QuantizeConfig call it before any work.
void validate_quantize_config(const QuantizeConfig& q);

}  // namespace gptq

#include <filesystem>
#include <vector>

#include "gptq/progress.h"

namespace gptq {

inline constexpr int kDefaultSeqlen = 2048;

// Where calibration tokens come from.
struct CalibrationOptions {
  // Plain text: nsamples random windows of seqlen tokens (BOS first when the tokenizer adds
  // one), as the GPTQ paper samples them. JSONL (".jsonl"/".json" file): one sequence per row
  // from "input_ids" (used as given) or "text" (tokenized); rows longer than seqlen are cut to
  // it, with a warning. Empty: a small built-in English text.
  std::filesystem::path file;
  int nsamples = 128;
  int seqlen = 0;  // 0: min(kDefaultSeqlen, the model's max_position_embeddings)
  uint64_t seed = 0;
};

struct ModuleReport {
  std::string module;       // "model.layers.0.self_attn.q_proj"
  int bits = 0;             // 0 when left unquantized
  int group_size = 0;       // as written for this module (-1: one group per row)
  int64_t n = 0, k = 0;
  double loss = 0;          // GPTQ's error sum ||(w - q) / d||^2 / 2 over columns
  double damp = 0;          // damp_percent that made the Cholesky factorization succeed
  double seconds = 0;
  std::string note;         // why it was left unquantized, a clamped group, or "resumed"
};

struct QuantizeReport {
  std::vector<ModuleReport> modules;
  int64_t layers = 0;
  int64_t layers_resumed = 0;   // finished layers found on disk from an interrupted run
  int64_t calibration_tokens = 0;
  double seconds = 0;
  std::filesystem::path output;
};

struct QuantizeRunOptions {
  int threads = 0;
  bool force = false;                           // replace an existing output folder
  uint64_t max_shard_bytes = 4'000'000'000ull;
  ProgressCallback progress;
  // Writes a safetensors file with the fp32 dequantized weight of every quantized linear
  // (named by module) for independent checks (scripts/gptq_format.py verify).
  std::filesystem::path dequantized_out;
  // Under mpirun (docs/distributed.md). broadcast_weights: rank 0 alone reads the model folder
  // (and the calibration file); the config, the calibration tokens, the embedding rows they use
  // and each layer's tensors reach the other ranks from it, so they need no copy of the model.
  // distribute_solve: the linears of each true-sequential group are solved on several ranks at
  // once (each solver holds its input's Hessian, as rank 0 does). Neither changes the output.
  bool broadcast_weights = false;
  bool distribute_solve = false;
  // Where the calibration hidden states stay between layers (nsamples x seqlen x hidden_size
  // fp32: 2 GiB for 128 x 2048 tokens of a 2048-wide model; true-sequential calibration also
  // saves 2 x hidden_size + intermediate_size more per token, the inputs of later passes, and
  // without room for those on disk recomputes them). "memory"; "disk": unnamed
  // scratch files in `offload_dir`, read and written once per pass over the samples, so that
  // only one sample's states are resident; "auto" (also ""): disk when they exceed
  // kAutoOffloadBytes. Both give the same output bytes.
  std::string hidden_states = "auto";
  // Folder of the scratch file; empty: the output folder's parent (else the system's temporary
  // folder where that does not exist, as on another rank under mpirun).
  std::filesystem::path offload_dir;
};

// Hidden states above this size go to disk with hidden_states "auto" (128 MiB: the 1.1B shape at 32 x 512 keeps
// 736 MiB of them with the saved sublayer inputs).
inline constexpr uint64_t kAutoOffloadBytes = 128ull << 20;

// Quantizes the model in `model_dir` layer by layer, streaming weights from the mmapped files
// (one decoder layer resident in fp32), and writes a GPTQ folder to `out`. An interrupted run
// started again with the same arguments resumes after the last finished layer and produces the
// same files.
QuantizeReport quantize_model(const std::filesystem::path& model_dir, const std::filesystem::path& out,
                              const QuantizeConfig& qcfg, const CalibrationOptions& calib,
                              const QuantizeRunOptions& run = {});

}  // namespace gptq

namespace gptq {

struct SolveLayerReport {
  int64_t n = 0, k = 0;
  double loss = 0, damp = 0, seconds = 0;
  double output_error = 0;      // tr((W - Q) H (W - Q)^T) / N, the quantity GPTQ minimises
};

// One linear from files: `weight` [N, K] and `hessian` [K, K] (fp32) in, a safetensors file
// with qweight/qzeros/scales/g_idx (packed as the checkpoint stores them, in qcfg's format) and
// `dequantized` [N, K] fp32 out. For benchmarking and checking the solver alone.
SolveLayerReport solve_layer(const std::filesystem::path& weight_file, const std::filesystem::path& hessian_file,
                             const std::filesystem::path& out_file, const QuantizeConfig& qcfg, int threads = 0);

}  // namespace gptq
