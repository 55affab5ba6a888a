#include "quant/damp_search.h"

#include <fmt/format.h>

#include <cmath>

#include "core/gemm.h"
#include "gptq/error.h"

namespace gptq::quant {

double output_error(const float* w, const float* q, int64_t n, int64_t k, const std::vector<double>& h) {
  if (n < 1 || k < 1 || static_cast<int64_t>(h.size()) != k * k) {
    throw Error(ErrorKind::kArgument,
                fmt::format("output_error: W is [{}, {}] but H has {} entries", n, k, h.size()));
  }
  std::vector<float> e(static_cast<size_t>(n * k)), hf(h.begin(), h.end()), eh(static_cast<size_t>(n * k));
  for (int64_t i = 0; i < n * k; ++i) e[i] = w[i] - q[i];
  core::sgemm_deterministic(false, false, n, k, k, 1.0f, e.data(), k, hf.data(), k, 0.0f, eh.data(), k);
  double total = 0;
  for (int64_t r = 0; r < n; ++r) {
    double s = 0;
    for (int64_t j = 0; j < k; ++j) s += static_cast<double>(e[r * k + j]) * eh[r * k + j];
    total += s;
  }
  return total / static_cast<double>(n);
}

std::vector<double> default_damp_candidates() { return {0.001, 0.003, 0.01, 0.03, 0.1}; }

DampChoice choose_damp(const float* w, int64_t n, int64_t k, const std::vector<double>& ha,
                       const std::vector<double>& hb, const QuantParams& p,
                       const std::vector<double>& candidates) {
  if (candidates.empty()) throw Error(ErrorKind::kArgument, "damp search: no candidate damp_percent");
  for (double c : candidates) {
    if (!(c > 0 && c < 1)) {
      throw Error(ErrorKind::kArgument, fmt::format("damp search: candidate damp_percent {} is not in (0, 1)", c));
    }
  }
  DampChoice out;
  double best = INFINITY;
  for (double c : candidates) {
    QuantParams pc = p;
    pc.damp_percent = c;
    const QuantResult ra = gptq_quantize(w, n, k, ha, pc);
    const QuantResult rb = gptq_quantize(w, n, k, hb, pc);
    const double err = output_error(w, ra.dequant.data(), n, k, hb) + output_error(w, rb.dequant.data(), n, k, ha);
    out.errors.push_back(err);
    if (err < best || (err == best && c < out.damp_percent)) {
      best = err;
      out.damp_percent = c;
    }
  }
  return out;
}

}  // namespace gptq::quant
