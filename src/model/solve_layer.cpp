#include <fmt/format.h>

#include <chrono>

#include "checkpoint/gptq_checkpoint.h"
#include "core/parallel.h"
#include "gptq/error.h"
#include "gptq/quantize.h"
#include "io/safetensors.h"
#include "model/quantize_pipeline.h"

namespace gptq {

SolveLayerReport solve_layer(const std::filesystem::path& weight_file, const std::filesystem::path& hessian_file,
                             const std::filesystem::path& out_file, const QuantizeConfig& qcfg, int threads) {
  core::set_num_threads(threads);
  const auto params = model::to_params(qcfg);
  const std::string format = model::resolve_format(qcfg);
  const auto wstore = io::TensorStore::open_files({weight_file});
  const auto hstore = io::TensorStore::open_files({hessian_file});
  const io::TensorInfo& wi = wstore.get("weight");
  if (wi.shape.size() != 2) {
    throw Error(ErrorKind::kShape, fmt::format("{}: tensor \"weight\" must be 2-D [N, K], found {}",
                                               weight_file.string(), shape_str(wi.shape)));
  }
  const int64_t n = wi.shape[0], k = wi.shape[1];
  const std::vector<float> w = wstore.read_f32("weight");
  const std::vector<float> hf = hstore.read_f32("hessian", {k, k});
  std::vector<double> h(hf.begin(), hf.end());
  SolveLayerReport rep;
  rep.n = n;
  rep.k = k;
  const auto t0 = std::chrono::steady_clock::now();
  const quant::QuantResult r = qcfg.method == "rtn" ? quant::rtn_quantize(w.data(), n, k, params)
                                                     : quant::gptq_quantize(w.data(), n, k, h, params);
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rep.loss = r.loss;
  rep.damp = r.damp_used;
  // tr(E H E^T) / N with E = W - Q, in double.
  double err = 0;
  std::vector<double> e(static_cast<size_t>(k)), he(static_cast<size_t>(k));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < k; ++j) e[j] = static_cast<double>(w[i * k + j]) - r.dequant[i * k + j];
    for (int64_t a = 0; a < k; ++a) {
      double s = 0;
      for (int64_t b = 0; b < k; ++b) s += h[a * k + b] * e[b];
      he[a] = s;
    }
    for (int64_t a = 0; a < k; ++a) err += e[a] * he[a];
  }
  rep.output_error = err / static_cast<double>(n);

  std::vector<io::TensorToWrite> out;
  checkpoint::PackedLinear packed;
  if (k % 32 == 0 && n % 32 == 0) {
    packed = model::pack_result("", r, format, {});
    for (auto t : checkpoint::tensors_of(packed)) {
      t.name = t.name.substr(1);  // ".qweight" -> "qweight"
      out.push_back(t);
    }
  }
  out.push_back({"dequantized", DType::kF32, {n, k}, r.dequant.data(), r.dequant.size() * sizeof(float)});
  io::write_safetensors(out_file, out);
  return rep;
}

}  // namespace gptq
