// The reference kernels of the executor's row and element-wise ops: plain loops, any CPU.
#include <algorithm>
#include <cmath>

#include "backend/cpu/ops_kernels.h"

namespace gptq::backend::detail {

void rms_norm_scalar(const float* x, const float* w, float offset, int64_t rows, int64_t n, float eps, float* y) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* xi = x + i * n;
    float* yi = y + i * n;
    double ss = 0;
    for (int64_t j = 0; j < n; ++j) ss += static_cast<double>(xi[j]) * xi[j];
    const float r = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + eps);
    for (int64_t j = 0; j < n; ++j) yi[j] = (offset + w[j]) * (xi[j] * r);
  }
}

void layer_norm_scalar(const float* x, const float* w, const float* b, int64_t rows, int64_t n, float eps, float* y) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* xi = x + i * n;
    float* yi = y + i * n;
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += xi[j];
    const double mean = s / static_cast<double>(n);
    double v = 0;
    for (int64_t j = 0; j < n; ++j) v += (xi[j] - mean) * (xi[j] - mean);
    const float r = 1.0f / std::sqrt(static_cast<float>(v / static_cast<double>(n)) + eps);
    const float m = static_cast<float>(mean);
    for (int64_t j = 0; j < n; ++j) yi[j] = (xi[j] - m) * r * w[j] + (b ? b[j] : 0.0f);
  }
}

void add_scalar(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void scale_scalar(float* x, int64_t n, float s) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

void softmax_scalar(float* s, int64_t lo, int64_t hi) {
  float mx = -INFINITY;
  for (int64_t j = lo; j < hi; ++j) mx = std::max(mx, s[j]);
  float sum = 0;
  for (int64_t j = lo; j < hi; ++j) {
    s[j] = std::exp(s[j] - mx);
    sum += s[j];
  }
  const float inv = 1.0f / sum;
  for (int64_t j = lo; j < hi; ++j) s[j] *= inv;
}

void rotate_scalar(float* v, const float* cs, const float* sn, int64_t half, bool interleaved) {
  for (int64_t j = 0; j < half; ++j) {
    const int64_t lo = interleaved ? 2 * j : j, hi = interleaved ? 2 * j + 1 : j + half;
    const float a = v[lo], b = v[hi];
    v[lo] = a * cs[j] - b * sn[j];
    v[hi] = b * cs[j] + a * sn[j];
  }
}

}  // namespace gptq::backend::detail
