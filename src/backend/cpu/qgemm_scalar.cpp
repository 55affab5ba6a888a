// Scalar reference kernel for GPTQ linears in the packed layout (qgemm_kernels.h): plain C++,
// written to be obviously correct rather than fast. It is the kernel on CPUs without AVX2 and the
// one the AVX2 kernels are tested against.

#include <cstdint>
#include <vector>

#include "backend/cpu/qgemm_kernels.h"
#include "backend/cpu/qlayout.h"
#include "core/dtype.h"
#include "core/parallel.h"

namespace gptq::backend::detail {

void qgemm_scalar(const PackedLayer& w, const float* xp, int64_t m, float* y) {
  const int64_t unit_words = int64_t{w.bits} * kBlockN;
  core::parallel_for(w.n_blocks, [&](int64_t b0, int64_t b1) {
    std::vector<float> column(static_cast<size_t>(w.kp));  // [kp] one dequantized column
    for (int64_t blk = b0; blk < b1; ++blk) {
      for (int lane = 0; lane < kBlockN; ++lane) {
        // Dequantize column n: W[n, k] = s * (q - z) for its group.
        for (int64_t u = 0; u < w.n_units; ++u) {
          const int64_t meta = (blk * w.n_seg + w.unit_seg[u]) * kBlockN + lane;
          const float scale = core::fp16_to_fp32(w.scales[meta]);
          const int zero = w.zeros[meta] + w.zero_offset;
          const uint32_t* unit = w.words + (blk * w.n_units + u) * unit_words;
          for (int kk = 0; kk < kUnitK; ++kk) {
            const int q = static_cast<int>(get_code(unit, lane, w.bits, kk));
            column[u * kUnitK + kk] = scale * static_cast<float>(q - zero);
          }
        }
        // y[r, n] = sum_k x[r, k] W[n, k], summed in double in input order.
        const int64_t n = blk * kBlockN + lane;
        for (int64_t r = 0; r < m; ++r) {
          const float* xr = xp + r * w.kp;
          double acc = 0;
          for (int64_t k = 0; k < w.kp; ++k) acc += static_cast<double>(column[k]) * xr[k];
          y[r * w.n + n] = static_cast<float>(acc);
        }
      }
    }
  });
}

}  // namespace gptq::backend::detail
