// Quantized linears delegate to the backend's kernels (wired once src/backend/cpu/qlinear.h lands).
#include "gptq/error.h"
#include "model/linear.h"

namespace gptq::model {

Linear Linear::quantized(std::shared_ptr<const backend::QLinear>) {
  throw Error(ErrorKind::kUnsupported, "quantized linears are not available yet");
}
void Linear::forward_quantized(const float*, int64_t, float*) const {
  throw Error(ErrorKind::kUnsupported, "quantized linears are not available yet");
}
size_t Linear::quantized_weight_bytes() const { return 0; }

}  // namespace gptq::model

namespace gptq::model {
Linear load_quantized_linear(const io::TensorStore&, const std::string& module, int64_t, int64_t,
                             const config::QuantizationConfig&) {
  throw Error(ErrorKind::kUnsupported, module + ": quantized linears are not available yet");
}
}  // namespace gptq::model
