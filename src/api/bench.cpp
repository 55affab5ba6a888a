#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <random>
#include <vector>

#include "core/parallel.h"
#include "gptq/error.h"
#include "api/causal_lm_impl.h"

namespace gptq {

double measure_read_bandwidth(uint64_t bytes) {
  // Integer data and sums: integer adds may be reordered, so the compiler vectorizes the loop and
  // it is bound by memory, not by add latency.
  const int64_t n = static_cast<int64_t>(bytes / sizeof(uint32_t));
  std::vector<uint32_t> buf(static_cast<size_t>(n));
  core::parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) buf[i] = static_cast<uint32_t>(i & 7);
  });
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    std::mutex mu;
    uint64_t total = 0;
    core::parallel_for(n, [&](int64_t b, int64_t e) {
      // Four streams per thread (the thread's range cut in four, read in lockstep) with software
      // prefetch 512 bytes ahead: one sequential stream per core keeps too few reads in flight
      // and reads 20-30% less than the memory delivers, less than the kernels reach; four
      // streams is what the decode kernel reads (four 8-column blocks at a time).
      constexpr int kStreams = 4;
      constexpr int64_t kStep = 16;  // 64 bytes per stream and step
      const int64_t len = (e - b) / kStreams / kStep * kStep;
      const uint32_t* p[kStreams];
      for (int s = 0; s < kStreams; ++s) p[s] = buf.data() + b + s * len;
      uint32_t acc[kStreams][kStep] = {};
      for (int64_t i = 0; i < len; i += kStep) {
        for (int s = 0; s < kStreams; ++s) {
          __builtin_prefetch(p[s] + i + 128);
          for (int j = 0; j < kStep; ++j) acc[s][j] += p[s][i + j];
        }
      }
      uint64_t sum = 0;
      for (auto& a : acc)
        for (uint32_t v : a) sum += v;
      for (int64_t i = b + kStreams * len; i < e; ++i) sum += buf[i];
      std::lock_guard<std::mutex> lock(mu);
      total += sum;
    });
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    volatile uint64_t sink = total;
    (void)sink;
    best = std::max(best, static_cast<double>(bytes) / sec / 1e9);
  }
  return best;
}

BenchResult benchmark(const CausalLM& model, const BenchOptions& opts) {
  using Clock = std::chrono::steady_clock;
  const auto& impl = api::impl(model);
  const auto& dec = *impl.decoder;
  const int64_t V = impl.cfg.vocab_size;
  if (opts.prompt_tokens < 1 || opts.gen_tokens < 0) throw Error(ErrorKind::kArgument, "bench: -p must be >= 1, -n >= 0");
  const int64_t total = opts.prompt_tokens + opts.gen_tokens;
  if (total > model.context_length()) {
    throw Error(ErrorKind::kArgument, fmt::format("bench: -p + -n = {} exceeds the model's context of {}", total,
                                                  model.context_length()));
  }
  BenchResult r;
  r.threads = core::num_threads();
  std::mt19937_64 rng(opts.seed);
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(V - 1));
  std::vector<int32_t> prompt(static_cast<size_t>(opts.prompt_tokens));
  for (auto& t : prompt) t = pick(rng);
  std::vector<float> logits(static_cast<size_t>(V));
  double best_pp = 0, best_tg = 0;
  for (int rep = 0; rep < std::max(1, opts.repetitions); ++rep) {
    auto cache = dec.make_cache(total, std::max<int64_t>(1, opts.prompt_tokens));
    auto t0 = Clock::now();
    dec.forward(impl.weights, prompt.data(), opts.prompt_tokens, cache, 1, logits.data());
    const double pp = std::chrono::duration<double>(Clock::now() - t0).count();
    // Decode from an empty cache, as llama-bench's tg does.
    cache.clear();
    int32_t tok = prompt[0];
    t0 = Clock::now();
    for (int64_t i = 0; i < opts.gen_tokens; ++i) {
      dec.forward(impl.weights, &tok, 1, cache, 1, logits.data());
      tok = pick(rng);
    }
    const double tg = std::chrono::duration<double>(Clock::now() - t0).count();
    best_pp = std::max(best_pp, opts.prompt_tokens / pp);
    if (opts.gen_tokens > 0) best_tg = std::max(best_tg, opts.gen_tokens / tg);
  }
  r.prefill_tok_s = best_pp;
  r.decode_tok_s = best_tg;
  const auto& embed = impl.weights.embed;
  uint64_t bytes = impl.weights.head().weight_bytes() + impl.weights.final_norm.size() * sizeof(float) +
                   embed.weight_bytes() / static_cast<uint64_t>(embed.n());  // one embedding row
  for (const auto& b : impl.weights.blocks) {
    for (const auto& l : b.linears) bytes += l.weight_bytes();
    for (const auto& n : b.norms) bytes += n.size() * sizeof(float);
  }
  r.weight_bytes = bytes;
  if (!opts.measure_bandwidth) return r;
  r.read_bandwidth_gb_s = measure_read_bandwidth();
  if (r.read_bandwidth_gb_s > 0) r.roofline_fraction = bytes * r.decode_tok_s / 1e9 / r.read_bandwidth_gb_s;
  return r;
}

}  // namespace gptq
