// Quantized linears from a GPTQ checkpoint. Tensors are located and validated by
// src/checkpoint (one place), then either handed to the backend's kernels or, for reference
// evaluation, dequantized to a dense fp32 matrix.
#include <fmt/format.h>

#include <cstdlib>
#include <cstring>

#include "checkpoint/gptq_checkpoint.h"
#include "core/dtype.h"
#include "gptq/error.h"
#include "model/linear.h"
#include "model/quantize_pipeline.h"

namespace gptq::model {
namespace {

template <typename T>
void copy_tensor(const io::TensorInfo& t, std::vector<T>& v) {
  v.resize(t.nbytes / sizeof(T));
  std::memcpy(v.data(), t.data, t.nbytes);
}

}  // namespace

Linear Linear::quantized(std::shared_ptr<const backend::QLinear>) {
  throw Error(ErrorKind::kUnsupported, "quantized kernels are not available yet");
}
void Linear::forward_quantized(const float*, int64_t, float*) const {
  throw Error(ErrorKind::kUnsupported, "quantized kernels are not available yet");
}
size_t Linear::quantized_weight_bytes() const { return 0; }

Linear load_quantized_linear(const io::TensorStore& store, const std::string& module, int64_t n, int64_t k,
                             const config::QuantizationConfig& q) {
  const auto t = checkpoint::find_quantized_linear(store, module, n, k, q);
  checkpoint::PackedLinear p;
  p.module = module;
  p.n = n;
  p.k = k;
  p.bits = t.bits;
  p.groups = t.groups;
  copy_tensor(*t.qweight, p.qweight);
  copy_tensor(*t.qzeros, p.qzeros);
  copy_tensor(*t.scales, p.scales);
  if (t.g_idx) {
    copy_tensor(*t.g_idx, p.g_idx);
  } else {
    p.g_idx.resize(static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) p.g_idx[i] = static_cast<int32_t>(i / t.group_size);
  }
  std::vector<float> bias;
  if (t.bias) bias = store.read_f32(module + ".bias", {n});
  std::vector<float> w = dequantize_packed(p, t.zeros_are_v1 ? "gptq" : "gptq_v2");
  return Linear::dense(n, k, std::move(w), std::move(bias));
}

}  // namespace gptq::model
