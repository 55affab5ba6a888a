#include <fmt/format.h>

#include <chrono>
#include <cmath>

#include "gptq/error.h"
#include "gptq/runtime.h"
#include "api/causal_lm_impl.h"

namespace gptq {

PerplexityResult CausalLM::perplexity(const std::string& text, const PerplexityOptions& opts,
                                      const ProgressCallback& progress) const {
  return perplexity_ids(tokenizer().encode(text, false), opts, progress);
}

PerplexityResult CausalLM::perplexity_ids(const std::vector<int32_t>& stream, const PerplexityOptions& opts,
                                          const ProgressCallback& progress) const {
  const auto t_start = std::chrono::steady_clock::now();
  impl_->check_usable();
  const auto& dec = *impl_->decoder;
  const auto& tok = tokenizer();
  const int64_t V = impl_->cfg.vocab_size, ctx = opts.ctx;
  if (ctx < 2) throw Error(ErrorKind::kArgument, fmt::format("context {} is too short (at least 2 tokens)", ctx));
  if (ctx > context_length()) {
    throw Error(ErrorKind::kArgument,
                fmt::format("context {} exceeds the model's max_position_embeddings = {}", ctx, context_length()));
  }
  const int32_t bos = tok.bos_id() >= 0 ? tok.bos_id() : impl_->cfg.bos_token_id;
  // Build the windows as (offset into `ids`, whether to put BOS first).
  std::vector<int32_t> ids;
  int64_t stride, n_windows;
  if (opts.bos_per_window) {
    if (bos < 0) throw Error(ErrorKind::kArgument, "--bos-per-window needs a BOS token, and this tokenizer has none");
    ids = stream;
    stride = ctx - 1;
  } else {
    if (tok.add_bos() && bos >= 0) ids.push_back(bos);
    ids.insert(ids.end(), stream.begin(), stream.end());
    stride = ctx;
  }
  if (opts.llama_cpp && opts.bos_per_window) {
    throw Error(ErrorKind::kArgument, "the llama.cpp convention and --bos-per-window exclude each other");
  }
  n_windows = static_cast<int64_t>(ids.size()) / stride;
  if (opts.max_windows >= 0) n_windows = std::min(n_windows, opts.max_windows);
  if (n_windows == 0) {
    throw Error(ErrorKind::kArgument,
                fmt::format("the text has {} tokens, fewer than one window of {}", ids.size(), ctx));
  }
  PerplexityResult r;
  r.windows = n_windows;
  std::vector<float> logits(static_cast<size_t>(ctx * V));
  std::vector<int32_t> win(static_cast<size_t>(ctx));
  auto cache = dec.make_cache(ctx);
  double total = 0;
  for (int64_t w = 0; w < n_windows; ++w) {
    check_interrupt();
    if (opts.bos_per_window) {
      win[0] = bos;
      std::copy(ids.begin() + w * stride, ids.begin() + (w + 1) * stride, win.begin() + 1);
    } else {
      std::copy(ids.begin() + w * stride, ids.begin() + (w + 1) * stride, win.begin());
      if (opts.llama_cpp && tok.add_bos() && bos >= 0) win[0] = bos;
    }
    cache.clear();
    dec.forward(impl_->weights, win.data(), ctx, cache, ctx, logits.data());
    double sum = 0;
    const int64_t first = opts.llama_cpp ? ctx / 2 + 1 : 1;
    for (int64_t j = first; j < ctx; ++j) {
      const float* row = logits.data() + (j - 1) * V;
      float mx = row[0];
      for (int64_t v = 1; v < V; ++v) mx = std::max(mx, row[v]);
      double z = 0;
      for (int64_t v = 0; v < V; ++v) z += std::exp(static_cast<double>(row[v]) - mx);
      const double lp = static_cast<double>(row[win[j]]) - mx - std::log(z);
      if (!std::isfinite(lp)) {
        throw Error(ErrorKind::kNumeric, fmt::format("non-finite log-probability in window {} position {}", w, j));
      }
      sum -= lp;
    }
    r.window_nll_sum.push_back(sum);
    total += sum;
    r.tokens += ctx - first;
    if (progress) progress({"perplexity", w + 1, n_windows, fmt::format("ppl {:.4f}", std::exp(total / r.tokens))});
  }
  r.nll = total / static_cast<double>(r.tokens);
  r.ppl = std::exp(r.nll);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return r;
}

}  // namespace gptq
