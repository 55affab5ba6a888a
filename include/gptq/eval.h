// Perplexity evaluation.
#pragma once

#include <cstdint>
#include <vector>

namespace gptq {

struct PerplexityOptions {
  int64_t ctx = 512;            // window length in tokens
  // false (default): the GPTQ-paper convention: tokenize the text once (BOS first as the
  // tokenizer adds it), cut into non-overlapping windows of ctx tokens, drop the remainder,
  // score every token but each window's first.
  // true: every window is [BOS] + ctx-1 text tokens (no BOS in the stream), all ctx-1 scored.
  bool bos_per_window = false;
  int64_t max_windows = -1;     // evaluate only the first N windows (-1: all)
  // llama.cpp's llama-perplexity convention (to compare with it on the same tokens): windows as
  // in the default, each window's first token replaced by BOS when the tokenizer adds one, and
  // only the second half scored (tokens ctx/2 + 1 ... ctx - 1). Not with bos_per_window.
  bool llama_cpp = false;
};

struct PerplexityResult {
  double ppl = 0;               // exp(nll)
  double nll = 0;               // mean negative log-likelihood per scored token (nats)
  int64_t tokens = 0;           // tokens scored
  int64_t windows = 0;
  std::vector<double> window_nll_sum;  // summed NLL of each window
  double seconds = 0;
};

}  // namespace gptq

namespace gptq {

class CausalLM;

struct BenchOptions {
  int64_t prompt_tokens = 512;  // pp: tokens in one prefill
  int64_t gen_tokens = 128;     // tg: decode steps
  int repetitions = 1;
  uint64_t seed = 0;
  bool measure_bandwidth = true;  // false: read_bandwidth_gb_s and roofline_fraction stay 0
};

struct BenchResult {
  double prefill_tok_s = 0;
  double decode_tok_s = 0;
  uint64_t weight_bytes = 0;      // bytes of weights one decode step reads
  double read_bandwidth_gb_s = 0; // measure_read_bandwidth() over 1 GiB, in the same run
  double roofline_fraction = 0;   // weight_bytes * decode_tok_s / bandwidth
  int threads = 1;
};

// Times one prefill of prompt_tokens random ids and gen_tokens decode steps (llama-bench's pp
// and tg), and measures memory read bandwidth in the same run.
BenchResult benchmark(const CausalLM& model, const BenchOptions& opts);

// Measures read bandwidth (GB/s, 1e9 bytes) with a summing loop over `bytes` bytes: integer sums,
// four prefetched streams per thread (one stream per core reads 20-30% less on this machine).
// Best of three passes.
double measure_read_bandwidth(uint64_t bytes = 1ull << 30);

}  // namespace gptq
