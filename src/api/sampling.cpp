#include "api/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace gptq::api {

int32_t sample_token(float* logits, int64_t vocab, const GenerateOptions& opts, std::mt19937_64& rng) {
  if (opts.temperature <= 0.0f) {
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  }
  std::vector<int32_t> idx(static_cast<size_t>(vocab));
  std::iota(idx.begin(), idx.end(), 0);
  int64_t keep = vocab;
  if (opts.top_k > 0 && opts.top_k < vocab) keep = opts.top_k;
  // Sort the candidates by logit, descending; ties by id so the result is reproducible.
  auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(), by_logit);
  idx.resize(static_cast<size_t>(keep));
  std::vector<double> p(idx.size());
  const double mx = logits[idx[0]];
  double sum = 0;
  for (size_t i = 0; i < idx.size(); ++i) {
    p[i] = std::exp((logits[idx[i]] - mx) / opts.temperature);
    sum += p[i];
  }
  for (auto& v : p) v /= sum;
  if (opts.top_p < 1.0f) {
    double cum = 0;
    size_t n = 0;
    while (n < p.size()) {
      cum += p[n++];
      if (cum >= opts.top_p) break;
    }
    p.resize(n);
    idx.resize(n);
  }
  std::discrete_distribution<size_t> dist(p.begin(), p.end());
  return idx[dist(rng)];
}

}  // namespace gptq::api
