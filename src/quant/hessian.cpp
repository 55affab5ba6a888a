// H = (2/n) sum x x^T for one linear's calibration inputs.
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "backend/cpu/isa.h"
#include "core/gemm.h"
#include "core/parallel.h"
#include "gptq/error.h"
#include "quant/hessian_kernels.h"
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
  if (backend::active_isa() == backend::Isa::kAmx && backend::request_amx_tile_permission()) {
    // On AMX tiles, x split in two bf16 parts (hessian_kernels.h); the scratch holds the packed
    // operands (32-bit words, as many as floats).
    scratch.resize(static_cast<size_t>(detail::xtx_amx_scratch_elems(rows, k)));
    detail::xtx_chunk_amx(x, rows, k, sum, reinterpret_cast<uint32_t*>(scratch.data()));
    return;
  }
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

// fp32 -> bf16, round to nearest even; fp32 denormals become signed zeros (as vdpbf16ps treats
// bf16 denormals). x is finite (add() checked it).
uint16_t to_bf16(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7F800000u) == 0) u &= 0x80000000u;
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// The bf16 path of accumulate_chunk: x packed in token pairs (hessian_kernels.h), then tiles of
// the upper triangle spread over the threads. Every output is one task's, summed in token order,
// so the result does not depend on the thread count.
void accumulate_chunk_bf16(const float* x, int64_t rows, int64_t k, double* sum,
                           std::vector<uint32_t>& packed) {
  if (rows == 0) return;
  const int64_t pairs = (rows + 1) / 2;
  const int64_t kp = (k + detail::kBf16Panel - 1) / detail::kBf16Panel * detail::kBf16Panel;
  packed.assign(static_cast<size_t>(pairs * kp), 0u);
  for (int64_t t = 0; t < pairs; ++t) {
    const float* a = x + 2 * t * k;
    const float* b = 2 * t + 1 < rows ? a + k : nullptr;
    for (int64_t i = 0; i < k; ++i) {
      packed[detail::bf16_index(t, i, pairs)] = to_bf16(a[i]) | (b ? uint32_t{to_bf16(b[i])} << 16 : 0u);
    }
  }
  const int64_t tiles = (k + detail::kBf16Tile - 1) / detail::kBf16Tile;
  const int64_t tasks = tiles * (tiles + 1) / 2;  // (it, jt) with jt >= it
  const bool avx512 = backend::has_bf16(backend::active_isa());
  const uint32_t* p = packed.data();
  core::parallel_for_dynamic(tasks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      // Task c -> row tile it, column tile jt >= it (row-major over the upper triangle).
      int64_t it = 0, rem = c;
      while (rem >= tiles - it) rem -= tiles - it++;
      const int64_t jt = it + rem;
      const int64_t i0 = it * detail::kBf16Tile, i1 = std::min(k, i0 + detail::kBf16Tile);
      const int64_t j0 = jt * detail::kBf16Tile, j1 = std::min(k, j0 + detail::kBf16Tile);
      (avx512 ? detail::bf16_xtx_tile_avx512bf16 : detail::bf16_xtx_tile_scalar)(p, pairs, k, i0, i1, j0, j1, sum);
    }
  });
}

}  // namespace

namespace detail {

void bf16_xtx_tile_scalar(const uint32_t* p, int64_t pairs, int64_t k, int64_t i0, int64_t i1,
                          int64_t j0, int64_t j1, double* sum) {
  auto lo = [](uint32_t v) { return std::bit_cast<float>(v << 16); };
  auto hi = [](uint32_t v) { return std::bit_cast<float>(v & 0xFFFF0000u); };
  for (int64_t i = i0; i < i1; ++i) {
    for (int64_t j = std::max(i, j0); j < j1; ++j) {
      float s = 0.0f;
      for (int64_t t = 0; t < pairs; ++t) {
        const uint32_t a = p[bf16_index(t, i, pairs)], b = p[bf16_index(t, j, pairs)];
        s = s + hi(a) * hi(b);  // exact products: one rounding per step
        s = s + lo(a) * lo(b);
      }
      sum[i * k + j] += s;
    }
  }
}

}  // namespace detail

HessianAccumulator::HessianAccumulator(int64_t k, CalibDtype dtype) : k_(k), dtype_(dtype) {
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
      accumulate(x + done * k_, kChunkRows);
      done += kChunkRows;
      continue;
    }
    const int64_t take = std::min(kChunkRows - pending_rows_, rows - done);
    pending_.resize(static_cast<size_t>(kChunkRows * k_));
    std::copy(x + done * k_, x + (done + take) * k_, pending_.begin() + pending_rows_ * k_);
    pending_rows_ += take;
    done += take;
    if (pending_rows_ == kChunkRows) {
      accumulate(pending_.data(), kChunkRows);
      pending_rows_ = 0;
    }
  }
}

void HessianAccumulator::accumulate(const float* x, int64_t rows) {
  if (dtype_ == CalibDtype::kBf16) {
    accumulate_chunk_bf16(x, rows, k_, sum_.data(), packed_);
  } else {
    accumulate_chunk(x, rows, k_, sum_.data(), scratch_);
  }
}

std::vector<double> HessianAccumulator::hessian() const { return hessian_from_sum(raw_sum(), k_, n_); }

std::vector<double> HessianAccumulator::hessian_from_sum(std::vector<double> h, int64_t k, int64_t tokens) {
  if (static_cast<int64_t>(h.size()) != k * k) {
    throw Error(ErrorKind::kArgument, fmt::format("hessian_from_sum: {} values for K = {}", h.size(), k));
  }
  // Scale the upper triangle and mirror it, in 64 x 64 tiles so that the strided (mirrored)
  // side stays in cache.
  const double scale = tokens > 0 ? 2.0 / static_cast<double>(tokens) : 0.0;
  constexpr int64_t kTile = 64;
  for (int64_t i0 = 0; i0 < k; i0 += kTile) {
    const int64_t i1 = std::min(k, i0 + kTile);
    for (int64_t j0 = i0; j0 < k; j0 += kTile) {
      const int64_t j1 = std::min(k, j0 + kTile);
      for (int64_t i = i0; i < i1; ++i) {
        for (int64_t j = std::max(i, j0); j < j1; ++j) h[i * k + j] *= scale;
      }
      for (int64_t j = j0; j < j1; ++j) {
        for (int64_t i = i0; i < std::min(i1, j); ++i) h[j * k + i] = h[i * k + j];
      }
    }
  }
  return h;
}

std::vector<double> HessianAccumulator::raw_sum() const {
  std::vector<double> h = sum_;
  if (pending_rows_ > 0) {
    // The buffered tail goes through the same chunk path, as it would when the chunk fills.
    if (dtype_ == CalibDtype::kBf16) {
      std::vector<uint32_t> packed;
      accumulate_chunk_bf16(pending_.data(), pending_rows_, k_, h.data(), packed);
    } else {
      std::vector<float> scratch;
      accumulate_chunk(pending_.data(), pending_rows_, k_, h.data(), scratch);
    }
  }
  return h;
}

}  // namespace gptq::quant
