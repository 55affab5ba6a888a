#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "api/sampling.h"
#include "gptq/error.h"
#include "gptq/runtime.h"
#include "api/causal_lm_impl.h"

namespace gptq {

GenerateResult CausalLM::generate(const std::string& prompt, const GenerateOptions& opts,
                                  const TokenCallback& on_text) const {
  return generate_ids(tokenizer().encode(prompt, true), opts, on_text);
}

GenerateResult CausalLM::generate_ids(const std::vector<int32_t>& prompt_ids, const GenerateOptions& opts,
                                      const TokenCallback& on_text) const {
  using Clock = std::chrono::steady_clock;
  impl_->check_usable();
  const auto& dec = *impl_->decoder;
  const auto& tok = tokenizer();
  const int64_t V = impl_->cfg.vocab_size;
  const int64_t ctx = context_length();
  GenerateResult r;
  r.prompt_ids = prompt_ids;
  if (prompt_ids.empty()) {
    throw Error(ErrorKind::kArgument, "the prompt is empty and the tokenizer adds no BOS token: nothing to continue");
  }
  if (static_cast<int64_t>(prompt_ids.size()) >= ctx) {
    throw Error(ErrorKind::kArgument, fmt::format("the prompt has {} tokens; the model's context is {}",
                                                  prompt_ids.size(), ctx));
  }
  std::vector<int32_t> eos = tok.eos_ids();
  for (int32_t e : impl_->cfg.eos_token_ids) {
    if (std::find(eos.begin(), eos.end(), e) == eos.end()) eos.push_back(e);
  }
  const int64_t budget = opts.n_predict < 0 ? ctx : opts.n_predict;
  const int64_t capacity = std::min<int64_t>(ctx, static_cast<int64_t>(prompt_ids.size()) + budget);
  // The arena is sized for the prompt's prefill; decode steps then allocate nothing.
  auto cache = dec.make_cache(capacity, std::max<int64_t>(1, static_cast<int64_t>(prompt_ids.size())));
  std::vector<float> logits(static_cast<size_t>(V));
  std::mt19937_64 rng(opts.seed);
  Tokenizer::StreamDecoder sd(tok);
  // Feed the prompt through the stream decoder so the first new piece decodes in context (the
  // sentencepiece decoder strips one leading space at the start of the text only).
  for (int32_t id : prompt_ids) sd.push(id);

  auto t0 = Clock::now();
  dec.forward(impl_->weights, prompt_ids.data(), static_cast<int64_t>(prompt_ids.size()), cache, 1, logits.data());
  r.prefill_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  t0 = Clock::now();
  for (int64_t i = 0; i < budget && cache.size() < capacity + 1; ++i) {
    check_interrupt();
    const int32_t next = api::sample_token(logits.data(), V, opts, rng);
    r.new_ids.push_back(next);
    const bool is_eos = std::find(eos.begin(), eos.end(), next) != eos.end();
    if (is_eos && !opts.ignore_eos) {
      r.stopped_at_eos = true;
      break;
    }
    const std::string piece = sd.push(next);
    r.text += piece;
    if (on_text && !piece.empty()) on_text(piece);
    if (i + 1 == budget || cache.size() >= capacity) break;
    if (dec.rope_invalidates_cache(cache.size(), 1)) {
      // LongRoPE reaching past original_max_position_embeddings: every position again, long factors.
      std::vector<int32_t> all = prompt_ids;
      all.insert(all.end(), r.new_ids.begin(), r.new_ids.end());
      cache.clear();
      dec.forward(impl_->weights, all.data(), static_cast<int64_t>(all.size()), cache, 1, logits.data());
    } else {
      dec.forward(impl_->weights, &next, 1, cache, 1, logits.data());
    }
  }
  const std::string tail = sd.flush();
  r.text += tail;
  if (on_text && !tail.empty()) on_text(tail);
  r.decode_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

}  // namespace gptq
