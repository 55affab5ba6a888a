// GPTQ checkpoints as GGUF files that llama.cpp runs, with GPTQ's integer codes carried into
// ggml blocks exactly where the formats line up (see README "GGUF export").
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace gptq {

struct GgufExportOptions {
  bool force = false;  // replace an existing output file
  // 2/3-bit codes stored exactly in Q4_0 (4.5 bits per weight); without it they are refused.
  bool widen = false;
  // Linears with no exact ggml block (act-order with scattered groups, groups of 16, 8-bit
  // asymmetric) re-rounded by ggml's round-to-nearest rule from the dequantized weights (Q4_0 for
  // up to 4 bits, Q8_0 for 8), each one reported; without it they are refused with the reason.
  bool requant = false;
  // Type of the token embedding and the output head: "f32", "f16", "q8_0" or "q4_0". Empty: F16
  // for a 16-bit source, F32 for an fp32 one. Norms are always F32; block linears left
  // unquantized in the checkpoint are F32 when this resolves to f32, else F16.
  std::string dense_type;
  // tokenizer.ggml.pre for byte-level BPE tokenizers; empty: recognised from tokenizer.json's
  // pre-tokenizer (gpt-2, smollm, qwen2, llama-bpe), an error naming the file otherwise.
  std::string tokenizer_pre;
  std::string name;  // general.name; empty: the folder's name
};

struct GgufTensorReport {
  std::string name;    // the GGUF tensor name, "blk.0.attn_q.weight"
  std::string type;    // "Q4_0", "F16", ...
  std::string source;  // the checkpoint tensor or module it came from
  std::string note;    // "exact", "widened 3-bit", "re-rounded (...)", "rows permuted for RoPE"
};

struct GgufExportReport {
  std::filesystem::path output;
  uint64_t bytes = 0;
  int64_t exact_linears = 0, widened_linears = 0, requantized_linears = 0, dense_linears = 0;
  // Q4_1 blocks whose offset m = -d*z is not an fp16 number (rounded to the nearest one), and the
  // largest rounding over d.
  int64_t q4_1_blocks = 0, q4_1_inexact_offsets = 0;
  double q4_1_max_offset_error = 0;
  std::vector<GgufTensorReport> tensors;
};

// Writes `model_dir` (a GPTQ folder of ours or the community's; a dense folder exports its
// linears with dense_type rules) as one GGUF file, atomically. Error(kArgument) if `out` exists
// and !force; Error(kUnsupported) naming the module and saying what to use instead for codes
// that fit no ggml block (unless requant/widen), an architecture llama.cpp has no mapping for
// here, or a tokenizer it cannot express; the loader's errors for bad folders.
GgufExportReport export_gguf(const std::filesystem::path& model_dir,
                             const std::filesystem::path& out, const GgufExportOptions& opts = {});

}  // namespace gptq
