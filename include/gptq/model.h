// A causal language model loaded from a Hugging Face folder (dense or GPTQ-quantized).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gptq/eval.h"
#include "gptq/generate.h"
#include "gptq/progress.h"
#include "gptq/quantize.h"
#include "gptq/tokenizer.h"

namespace gptq {

namespace api {
struct Access;
}

// Where a model's ops and linears run. Only the CPU exists today; the executor names a device and
// takes its ops from the backend (src/backend/ops.h), so a GPU backend adds a value here.
enum class Device { kCpu };

struct LoadOptions {
  int threads = 0;                  // 0: all cores
  Device device = Device::kCpu;
  ProgressCallback progress;        // may be empty
  // GPTQ checkpoints: run dequantized fp32 weights instead of the quantized kernels (a
  // reference for checking the kernels; uses 8x the memory of 4-bit weights).
  bool dequantize = false;
  // The output projection (lm_head, or the tied embedding's copy used as one): 0 keeps it as
  // stored (16-bit for BF16/F16 checkpoints); 8 rounds a copy to 8 bits at load (symmetric,
  // fp16 scales per 128 inputs), which halves the largest single read of a decode step at a small
  // cost in logits (README: speed and quality tables). Other values: Error(kArgument).
  int lm_head_bits = 0;
};

struct ModelInfo {
  std::string model_type;
  std::string architecture;         // "LlamaForCausalLM"
  int64_t layers = 0, hidden = 0, intermediate = 0, heads = 0, kv_heads = 0, head_dim = 0;
  int64_t vocab = 0, max_positions = 0;
  int64_t parameters = 0;           // as stored (a quantized linear counts N*K)
  bool tied_embeddings = false;
  std::string dtype;                // dtypes of the stored tensors, e.g. "F32", "BF16+I32"
  uint64_t file_bytes = 0;          // bytes of *.safetensors
  bool quantized = false;
  int bits = 0, group_size = 0;
  bool desc_act = false, sym = true;
  std::string checkpoint_format;
  int64_t quantized_linears = 0, dense_linears = 0;
};

class CausalLM {
 public:
  // Loads config.json, tokenizer and weights. Throws gptq::Error naming the file and problem.
  static CausalLM from_pretrained(const std::filesystem::path& dir, const LoadOptions& opts = {});
  // As above, remembering the settings that quantize() will use (checked first with
  // validate_quantize_config).
  static CausalLM from_pretrained(const std::filesystem::path& dir, const QuantizeConfig& qcfg,
                                  const LoadOptions& opts = {});

  CausalLM(CausalLM&&) noexcept;
  CausalLM& operator=(CausalLM&&) noexcept;
  ~CausalLM();

  const Tokenizer& tokenizer() const;
  ModelInfo info() const;
  int64_t context_length() const;

  // Logits [ids.size(), vocab] of a whole sequence (row i predicts token i+1).
  std::vector<float> logits(const std::vector<int32_t>& ids) const;

  GenerateResult generate(const std::string& prompt, const GenerateOptions& opts,
                          const TokenCallback& on_text = {}) const;
  GenerateResult generate_ids(const std::vector<int32_t>& prompt_ids, const GenerateOptions& opts,
                              const TokenCallback& on_text = {}) const;

  PerplexityResult perplexity(const std::string& text, const PerplexityOptions& opts,
                              const ProgressCallback& progress = {}) const;
  PerplexityResult perplexity_ids(const std::vector<int32_t>& stream, const PerplexityOptions& opts,
                                  const ProgressCallback& progress = {}) const;

  // GPTQ on the loaded weights with the settings given to from_pretrained, calibrated on the
  // examples: token ids (each 1..context_length() ids in [0, vocab)), or texts tokenized with BOS,
  // cut to the context, and dropped when empty. Afterwards logits/generate/perplexity run the
  // quantized weights (dequantized to fp32). Each example is one sequence: nothing is padded, so
  // callers strip padding first. If it throws after it has started changing weights (a bad
  // Hessian, an interrupt: gptq/runtime.h), the model is left unusable: every later call throws
  // Error(kArgument) saying so, and the model must be loaded again.
  QuantizeReport quantize(const std::vector<std::vector<int32_t>>& examples,
                          const ProgressCallback& progress = {});
  QuantizeReport quantize(const std::vector<std::string>& examples, const ProgressCallback& progress = {});
  // Writes the quantized model as a GPTQ folder (atomically; an existing folder only with force).
  void save_quantized(const std::filesystem::path& out, bool force = false,
                      uint64_t max_shard_bytes = 4'000'000'000ull) const;

  struct Impl;  // defined in src/api; not part of the public API

 private:
  friend struct api::Access;
  explicit CausalLM(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gptq
