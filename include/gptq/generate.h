// Options for text generation.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace gptq {

struct GenerateOptions {
  int n_predict = 128;       // new tokens at most (-1: until EOS or the context is full)
  float temperature = 0.8f;  // 0: greedy (argmax)
  int top_k = 40;            // 0: off
  float top_p = 0.95f;       // 1: off
  uint64_t seed = 0;
  bool ignore_eos = false;   // keep going after an end-of-sequence token
};

struct GenerateResult {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> new_ids;
  std::string text;          // decoded continuation only
  double prefill_seconds = 0;
  double decode_seconds = 0;
  bool stopped_at_eos = false;
};

// Receives each piece of decoded text as soon as it is complete UTF-8.
using TokenCallback = std::function<void(const std::string& piece)>;

}  // namespace gptq
