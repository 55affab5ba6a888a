#include "backend/cpu/dense.h"

#include <algorithm>

#include "core/parallel.h"

namespace gptq::backend {

void dense_gemv(const float* w, int64_t n, int64_t k, const float* x, float* y) {
  // Rows in chunks of 16 so threads get balanced, contiguous slices of W (a streaming read).
  const int64_t chunks = (n + 15) / 16;
  core::parallel_for(chunks, [&](int64_t c0, int64_t c1) {
    for (int64_t r = c0 * 16; r < std::min(n, c1 * 16); ++r) {
      const float* wr = w + r * k;
      // Eight partial sums: independent chains the compiler vectorizes and the CPU pipelines.
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t j = 0;
      for (; j + 8 <= k; j += 8) {
        for (int u = 0; u < 8; ++u) acc[u] += wr[j + u] * x[j + u];
      }
      float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
      for (; j < k; ++j) s += wr[j] * x[j];
      y[r] = s;
    }
  });
}

}  // namespace gptq::backend
