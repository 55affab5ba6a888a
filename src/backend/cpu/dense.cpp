#include "backend/cpu/dense.h"

#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "backend/cpu/dense_kernels.h"
#include "backend/cpu/isa.h"
#include "core/dtype.h"
#include "core/dot.h"
#include "core/parallel.h"
#include "gptq/error.h"

namespace gptq::backend {

void dense_gemv(const float* w, int64_t n, int64_t k, const float* x, float* y) {
  // Rows in chunks of 16 so threads get balanced, contiguous slices of W (a streaming read).
  const int64_t chunks = (n + 15) / 16;
  core::parallel_for(chunks, [&](int64_t c0, int64_t c1) {
    for (int64_t r = c0 * 16; r < std::min(n, c1 * 16); ++r) y[r] = core::dot_f32(w + r * k, x, k);
  });
}

void dense_gemm(const float* w, int64_t n, int64_t k, const float* x, int64_t m, float* y) {
  if (m < 0 || n < 0 || k < 0) {
    throw Error(ErrorKind::kArgument, fmt::format("dense_gemm: negative size ({} x {}, m = {})", n, k, m));
  }
  if (m == 1) {
    dense_gemv(w, n, k, x, y);  // a decode step: streams W once on the pool threads
    return;
  }
  if (m == 0 || n == 0) return;
  if (k == 0) {
    std::fill(y, y + m * n, 0.0f);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), 1.0f, x, static_cast<int>(k), w, static_cast<int>(k), 0.0f, y,
              static_cast<int>(n));
}

void add_bias(float* y, const float* bias, int64_t m, int64_t n) {
  for (int64_t i = 0; i < m; ++i) {
    float* row = y + i * n;
    for (int64_t j = 0; j < n; ++j) row[j] += bias[j];
  }
}

namespace detail {

void dense16_rows_scalar(Half h, const uint16_t* w, int64_t k, const float* x, int64_t r0,
                         int64_t r1, float* y) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint16_t* wr = w + r * k;
    // Same shape of sum as dense_gemv: eight partial sums, then the tail.
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    if (h == Half::kBF16) {
      for (; j + 8 <= k; j += 8) {
        for (int u = 0; u < 8; ++u) acc[u] += core::bf16_to_fp32(wr[j + u]) * x[j + u];
      }
    } else {
      for (; j + 8 <= k; j += 8) {
        for (int u = 0; u < 8; ++u) acc[u] += core::fp16_to_fp32(wr[j + u]) * x[j + u];
      }
    }
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; j < k; ++j) {
      const float wj = h == Half::kBF16 ? core::bf16_to_fp32(wr[j]) : core::fp16_to_fp32(wr[j]);
      s += wj * x[j];
    }
    y[r] = s;
  }
}

void widen16_scalar(Half h, const uint16_t* src, int64_t count, float* dst) {
  if (h == Half::kBF16) {
    for (int64_t i = 0; i < count; ++i) dst[i] = core::bf16_to_fp32(src[i]);
  } else {
    for (int64_t i = 0; i < count; ++i) dst[i] = core::fp16_to_fp32(src[i]);
  }
}

}  // namespace detail

namespace {

using detail::Half;

// The one place where the arguments of the 16-bit entry points are checked.
Half check_args(DType dtype, int64_t n, int64_t k, int64_t m, const char* what) {
  if (n < 0 || k < 0 || m < 0) {
    throw Error(ErrorKind::kArgument,
                fmt::format("{}: expected non-negative sizes, found n = {}, k = {}, m = {}", what, n,
                            k, m));
  }
  if (dtype == DType::kBF16) return Half::kBF16;
  if (dtype == DType::kF16) return Half::kF16;
  throw Error(ErrorKind::kArgument,
              fmt::format("{}: expected BF16 or F16 weights, found {}", what, dtype_name(dtype)));
}

// Rows per parallel chunk. Threads get contiguous slices of W (a streaming read); 16 rows keep
// two threads balanced on the small k/v projections (256 rows) and are a multiple of the AVX2
// kernel's rows per pass.
constexpr int64_t kChunkRows = 16;

// Bytes of the fp32 panel that dense16_gemm widens W into per sgemm call (2048 rows at k = 2048).
// Each sgemm call has a fixed cost (waking OpenBLAS's threads, packing x again), so panels are
// large: on the TinyLlama shape, pp64 with 2 threads ran at 49 tok/s with 256-row panels, 55 with
// 1024 and 61 with 2048 (the fp32 model: 58), measured in one session.
constexpr int64_t kPanelBytes = int64_t{16} << 20;

}  // namespace

void dense16_gemv(DType dtype, const uint16_t* w, int64_t n, int64_t k, const float* x, float* y) {
  const Half h = check_args(dtype, n, k, 1, "dense16_gemv");
  const bool avx2 = uses_avx2(active_isa());
  const int64_t chunks = (n + kChunkRows - 1) / kChunkRows;
  core::parallel_for(chunks, [&](int64_t c0, int64_t c1) {
    const int64_t r0 = c0 * kChunkRows, r1 = std::min(n, c1 * kChunkRows);
    if (avx2) {
      detail::dense16_rows_avx2(h, w, k, x, r0, r1, y);
    } else {
      detail::dense16_rows_scalar(h, w, k, x, r0, r1, y);
    }
  });
}

void dense16_gemm(DType dtype, const uint16_t* w, int64_t n, int64_t k, const float* x, int64_t m,
                  float* y) {
  check_args(dtype, n, k, m, "dense16_gemm");
  if (m == 1) {
    dense16_gemv(dtype, w, n, k, x, y);
    return;
  }
  if (m == 0 || n == 0) return;
  if (k == 0) {
    std::fill(y, y + m * n, 0.0f);
    return;
  }
  // Reused between calls: a prefill calls this for every linear, and a fresh multi-megabyte
  // allocation each time would be fresh pages to fault in each time.
  thread_local std::vector<float> panel;
  const int64_t panel_rows = std::max<int64_t>(8, kPanelBytes / (k * int64_t{sizeof(float)}));
  const int64_t rows = std::min(n, panel_rows);
  if (panel.size() < static_cast<size_t>(rows * k)) panel.resize(static_cast<size_t>(rows * k));
  for (int64_t p0 = 0; p0 < n; p0 += panel_rows) {
    const int64_t pr = std::min(panel_rows, n - p0);
    // Everything on the calling thread. sgemm must not be called from several threads at once
    // (OpenBLAS 0.3.21 then gives wrong results), and widening on the library's threads was worse
    // than widening here when those were OpenMP threads that kept spinning after their region
    // while OpenBLAS's threads wanted the same cores (pp64 fell from 49 to 15 tok/s on two cores).
    widen16(dtype, w + p0 * k, pr * k, panel.data());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(pr),
                static_cast<int>(k), 1.0f, x, static_cast<int>(k), panel.data(),
                static_cast<int>(k), 0.0f, y + p0, static_cast<int>(n));
  }
}

void widen16(DType dtype, const uint16_t* src, int64_t count, float* dst) {
  const Half h = check_args(dtype, count, 0, 0, "widen16");
  if (uses_avx2(active_isa())) {
    detail::widen16_avx2(h, src, count, dst);
  } else {
    detail::widen16_scalar(h, src, count, dst);
  }
}

}  // namespace gptq::backend
