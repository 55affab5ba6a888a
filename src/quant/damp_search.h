// Damping chosen per linear by cross-validation over the calibration sequences. Pure maths, like
// the rest of src/quant: the caller collects the two Hessians.
#pragma once

#include <cstdint>
#include <vector>

#include "quant/quantizer.h"

namespace gptq::quant {

// tr((W - Q) H (W - Q)^T) / N, the output error GPTQ minimises for inputs whose second moment is
// H ([K, K], symmetric): W and Q are [N, K] row-major. Computed as one fp32 GEMM (deterministic
// for any thread count) with the final sums in double.
double output_error(const float* w, const float* q, int64_t n, int64_t k, const std::vector<double>& h);

// The damp_percent values tried by default: GPTQ's 0.01 and half-decades around it.
std::vector<double> default_damp_candidates();

struct DampChoice {
  double damp_percent = 0;     // the winner
  std::vector<double> errors;  // per candidate: summed held-out output error of both folds
};

// Two-fold cross-validation: `ha` and `hb` are the Hessians of two disjoint halves of the
// calibration sequences. For each candidate damp_percent (p's other fields as given), W is
// quantized with ha and scored on hb, and with hb and scored on ha; the candidate with the least
// summed error wins (the smaller damp on an exact tie). Each solve is a full gptq_quantize, so
// this costs 2 * candidates solves. Throws what gptq_quantize throws, and Error(kArgument) for an
// empty candidate list or a candidate outside (0, 1).
DampChoice choose_damp(const float* w, int64_t n, int64_t k, const std::vector<double>& ha,
                       const std::vector<double>& hb, const QuantParams& p,
                       const std::vector<double>& candidates);

}  // namespace gptq::quant
