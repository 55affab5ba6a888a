#include "pipeline/head_quant.h"

#include <fmt/format.h>

#include "backend/linear.h"
#include "core/dtype.h"
#include "gptq/error.h"
#include "quant/quantizer.h"

namespace gptq::pipeline {

backend::LinearPtr round_to_8bit(const float* w, int64_t n, int64_t k, const std::string& name) {
  if (n % 32 != 0 || k % 32 != 0) {
    throw Error(ErrorKind::kShape,
                fmt::format("{}: an 8-bit copy needs both sizes to be multiples of 32, got [{}, {}]", name, n, k));
  }
  quant::QuantParams p;
  p.bits = 8;
  p.group_size = k % 128 == 0 ? 128 : 32;
  p.sym = true;
  const quant::QuantResult r = quant::rtn_quantize(w, n, k, p);
  const std::vector<int32_t> qweight = quant::pack_qweight(r.codes.data(), n, k, 8);
  const int64_t groups = k / p.group_size;
  const std::vector<int32_t> qzeros = quant::pack_qzeros(r.zeros.data(), groups, n, 8);  // v2: true zeros
  std::vector<uint16_t> scales(r.scales.size());
  for (size_t i = 0; i < scales.size(); ++i) scales[i] = core::fp32_to_fp16(r.scales[i]);
  backend::QuantizedLinearView v;
  v.n = n;
  v.k = k;
  v.bits = 8;
  v.group_size = p.group_size;
  v.qweight = qweight.data();
  v.qzeros = qzeros.data();
  v.scales = scales.data();
  v.zeros_v2 = true;
  return backend::quantized_linear(backend::Device::kCpu, v, name);
}

}  // namespace gptq::pipeline
