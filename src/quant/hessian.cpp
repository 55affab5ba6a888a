// H = (2/n) sum x x^T for one linear's calibration inputs.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/gemm.h"
#include "gptq/error.h"
#include "quant/quantizer.h"

namespace gptq::quant {
namespace {

// Output rows per sgemm panel: the panel's fp32 scratch is kPanelRows x K (4 MiB at K = 4096).
constexpr int64_t kPanelRows = 256;

// sum (upper triangle, [K, K] double) += x^T x for one chunk x [rows, K]. Panel by panel of
// output rows [p0, p0+pw): scratch [pw, K-p0] = x[:, p0:p0+pw]^T x[:, p0:K] in one sgemm, then
// added into the double sum. This computes the upper triangle plus the lower half of each
// diagonal panel (~(K^2 + K*kPanelRows)/2 outputs) without a K x K fp32 buffer.
void accumulate_chunk(const float* x, int64_t rows, int64_t k, double* sum,
                      std::vector<float>& scratch) {
  if (rows == 0) return;
  scratch.resize(static_cast<size_t>(std::min(k, kPanelRows) * k));
  for (int64_t p0 = 0; p0 < k; p0 += kPanelRows) {
    const int64_t pw = std::min(kPanelRows, k - p0), cols = k - p0;
    core::sgemm_deterministic(true, false, pw, cols, rows, 1.0f, x + p0, k, x + p0, k, 0.0f,
                              scratch.data(), cols);
    for (int64_t i = 0; i < pw; ++i) {
      double* dst = sum + (p0 + i) * k + p0;
      const float* src = scratch.data() + i * cols;
      for (int64_t j = i; j < cols; ++j) dst[j] += src[j];
    }
  }
}

}  // namespace

HessianAccumulator::HessianAccumulator(int64_t k) : k_(k) {
  if (k < 1) {
    throw Error(ErrorKind::kArgument, fmt::format("HessianAccumulator: K = {} must be >= 1", k));
  }
  sum_.assign(static_cast<size_t>(k * k), 0.0);
}

void HessianAccumulator::add(const float* x, int64_t rows) {
  if (rows < 0 || (rows > 0 && !x)) {
    throw Error(ErrorKind::kArgument,
                fmt::format("HessianAccumulator::add: bad input ({} rows, data {})", rows,
                            x ? "set" : "null"));
  }
  const int64_t total = rows * k_;
  for (int64_t i = 0; i < total; ++i) {
    if (!std::isfinite(x[i])) {
      throw Error(ErrorKind::kNumeric,
                  fmt::format("HessianAccumulator::add: input [{}, {}] holds {} at token {}, "
                              "feature {}",
                              rows, k_, std::isnan(x[i]) ? "NaN" : "Inf", i / k_, i % k_));
    }
  }
  n_ += rows;
  int64_t done = 0;
  while (done < rows) {
    if (pending_rows_ == 0 && rows - done >= kChunkRows) {  // a whole chunk straight from x
      accumulate_chunk(x + done * k_, kChunkRows, k_, sum_.data(), scratch_);
      done += kChunkRows;
      continue;
    }
    const int64_t take = std::min(kChunkRows - pending_rows_, rows - done);
    pending_.resize(static_cast<size_t>(kChunkRows * k_));
    std::copy(x + done * k_, x + (done + take) * k_, pending_.begin() + pending_rows_ * k_);
    pending_rows_ += take;
    done += take;
    if (pending_rows_ == kChunkRows) {
      accumulate_chunk(pending_.data(), kChunkRows, k_, sum_.data(), scratch_);
      pending_rows_ = 0;
    }
  }
}

std::vector<double> HessianAccumulator::hessian() const {
  std::vector<double> h = sum_;
  if (pending_rows_ > 0) {
    // The buffered tail goes through the same chunk path, as it would when the chunk fills.
    std::vector<float> scratch;
    accumulate_chunk(pending_.data(), pending_rows_, k_, h.data(), scratch);
  }
  // Scale the upper triangle and mirror it, in 64 x 64 tiles so that the strided (mirrored)
  // side stays in cache.
  const double scale = n_ > 0 ? 2.0 / static_cast<double>(n_) : 0.0;
  constexpr int64_t kTile = 64;
  for (int64_t i0 = 0; i0 < k_; i0 += kTile) {
    const int64_t i1 = std::min(k_, i0 + kTile);
    for (int64_t j0 = i0; j0 < k_; j0 += kTile) {
      const int64_t j1 = std::min(k_, j0 + kTile);
      for (int64_t i = i0; i < i1; ++i) {
        for (int64_t j = std::max(i, j0); j < j1; ++j) h[i * k_ + j] *= scale;
      }
      for (int64_t j = j0; j < j1; ++j) {
        for (int64_t i = i0; i < std::min(i1, j); ++i) h[j * k_ + i] = h[i * k_ + j];
      }
    }
  }
  return h;
}

std::vector<double> HessianAccumulator::raw_sum() const {
  std::vector<double> h = sum_;
  if (pending_rows_ > 0) {
    std::vector<float> scratch;
    accumulate_chunk(pending_.data(), pending_rows_, k_, h.data(), scratch);
  }
  return h;
}

}  // namespace gptq::quant
