// Quantized linears from a GPTQ checkpoint. Tensors are located and validated by
// src/checkpoint (one place), then either handed to the backend's kernels or, for reference
// evaluation, dequantized to a dense fp32 matrix.
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "backend/linear.h"
#include "checkpoint/gptq_checkpoint.h"
#include "core/dtype.h"
#include "gptq/error.h"
#include "model/linear.h"
#include "quant/quantizer.h"

namespace gptq::model {
namespace {

template <typename T>
void copy_tensor(const io::TensorInfo& t, std::vector<T>& v) {
  v.resize(t.nbytes / sizeof(T));
  std::memcpy(v.data(), t.data, t.nbytes);
}

}  // namespace

std::vector<float> dequantize_packed(const checkpoint::PackedLinear& p, const std::string& format) {
  // qweight rows padded to whole packs of 32 inputs when K is not a multiple of 32.
  const int64_t kp = (p.k + 31) / 32 * 32;
  const auto codes = quant::unpack_qweight(p.qweight.data(), p.n, kp, p.bits);  // [N, kp]
  std::vector<int32_t> words = p.qzeros;
  if (format == "gptq") quant::qzeros_v1_to_v2(words, p.bits);
  // qzeros rows padded to whole packs of 32 columns when N is not a multiple of 32.
  const int64_t np = (p.n + 31) / 32 * 32;
  const auto padded = quant::unpack_qzeros(words.data(), p.groups, np, p.bits);  // [G, np]
  std::vector<int32_t> zeros(static_cast<size_t>(p.groups * p.n));
  for (int64_t g = 0; g < p.groups; ++g) {
    std::copy(padded.begin() + g * np, padded.begin() + g * np + p.n, zeros.begin() + g * p.n);
  }
  std::vector<float> w(static_cast<size_t>(p.n * p.k));
  for (int64_t n = 0; n < p.n; ++n) {
    for (int64_t k = 0; k < p.k; ++k) {
      const int64_t g = p.g_idx[k];
      const float s = core::fp16_to_fp32(p.scales[g * p.n + n]);
      w[n * p.k + k] = s * static_cast<float>(static_cast<int32_t>(codes[n * kp + k]) - zeros[g * p.n + n]);
    }
  }
  return w;
}

checkpoint::PackedLinear read_packed_linear(const io::TensorStore& store, const std::string& module, int64_t n,
                                            int64_t k, const config::QuantizationConfig& q) {
  const auto t = checkpoint::find_quantized_linear(store, module, n, k, q);
  checkpoint::PackedLinear p;
  p.module = module;
  p.n = n;
  p.k = k;
  p.bits = t.bits;
  p.groups = t.groups;
  copy_tensor(*t.qweight, p.qweight);
  if (k % 32 != 0) {
    // ceil(K*b/32) rows, padded here with zero rows to whole packs of 32 inputs; the codes of
    // inputs past K (in the part-filled last word and the new rows) are never read.
    p.qweight.resize(static_cast<size_t>((k + 31) / 32 * t.bits * n), 0);
  }
  copy_tensor(*t.qzeros, p.qzeros);
  if (n % 32 != 0) {
    // Rows of ceil(N*b/32) words, padded here to whole packs (carries only run upward, so the
    // padding never changes a real field); dequantize_packed keeps the first N columns.
    const int64_t have = (n * t.bits + 31) / 32, want = (n + 31) / 32 * t.bits;
    std::vector<int32_t> padded(static_cast<size_t>(t.groups * want), 0);
    for (int64_t g = 0; g < t.groups; ++g) {
      std::memcpy(&padded[g * want], &p.qzeros[g * have], static_cast<size_t>(have) * 4);
    }
    p.qzeros = std::move(padded);
  }
  copy_tensor(*t.scales, p.scales);
  if (t.g_idx) {
    copy_tensor(*t.g_idx, p.g_idx);
  } else {
    p.g_idx.resize(static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) p.g_idx[i] = static_cast<int32_t>(i / t.group_size);
  }
  if (t.zeros_are_v1) quant::qzeros_v1_to_v2(p.qzeros, p.bits);
  return p;
}

Linear load_quantized_linear(const io::TensorStore& store, const std::string& module, int64_t n, int64_t k,
                             const config::QuantizationConfig& q, bool dequantize) {
  const auto t = checkpoint::find_quantized_linear(store, module, n, k, q);
  // N not a multiple of 32: the kernels need whole blocks of outputs, so such a linear runs
  // dense. K not a multiple of 32 is fine for them (the last group is padded at repacking).
  if (n % 32 != 0) dequantize = true;
  if (!dequantize) {
    // The kernels read the checkpoint's tensors once, straight from the mapping, and keep their
    // own repacked copy; the source pages are then dropped from the resident set.
    std::vector<uint16_t> bias16;
    if (t.bias) {
      for (float b : store.read_f32(module + ".bias", {n})) bias16.push_back(core::fp32_to_fp16(b));
    }
    std::vector<int32_t> qweight, qzeros, g_idx;
    std::vector<uint16_t> scales;
    copy_tensor(*t.qweight, qweight);
    copy_tensor(*t.qzeros, qzeros);
    // v1 zeros are read as GPTQModel reads them (whole-word addition, see qzeros_v1_to_v2), so
    // the kernels only ever see v2 zeros.
    if (t.zeros_are_v1) quant::qzeros_v1_to_v2(qzeros, t.bits);
    copy_tensor(*t.scales, scales);
    if (t.g_idx) copy_tensor(*t.g_idx, g_idx);
    backend::QuantizedLinearView v;
    v.n = n;
    v.k = k;
    v.bits = t.bits;
    v.group_size = t.group_size;
    v.qweight = qweight.data();
    v.qzeros = qzeros.data();
    v.scales = scales.data();
    v.g_idx = t.g_idx ? g_idx.data() : nullptr;
    v.zeros_v2 = true;
    v.bias_fp16 = bias16.empty() ? nullptr : bias16.data();
    auto ql = backend::quantized_linear(backend::Device::kCpu, v, module);
    for (const auto* ti : {t.qweight, t.qzeros, t.scales, t.g_idx}) {
      if (ti) store.release(*ti);
    }
    return Linear(std::move(ql));
  }
  checkpoint::PackedLinear p = read_packed_linear(store, module, n, k, q);
  std::vector<float> bias;
  if (t.bias) bias = store.read_f32(module + ".bias", {n});
  std::vector<float> w = dequantize_packed(p, "gptq_v2");
  return Linear::dense(n, k, std::move(w), std::move(bias));
}

checkpoint::PackedLinear read_packed_parts(const io::TensorStore& store, const std::string& fused_module,
                                           const std::vector<std::pair<std::string, int64_t>>& parts, int64_t k,
                                           const config::QuantizationConfig& q) {
  std::vector<checkpoint::PackedLinear> ps;
  for (const auto& [module, n] : parts) {
    if (n % 32 != 0 || k % 32 != 0) {
      throw Error(ErrorKind::kShape,
                  fmt::format("{}: {} [N = {}, K = {}] is stored as separate parts; joining them into {} needs N and "
                              "K multiples of 32",
                              store.dir().string(), module, n, k, fused_module));
    }
    if (const config::ModuleScheme sc = q.scheme_for(module); !sc.quantized) {
      throw Error(ErrorKind::kConfig,
                  fmt::format("{}: {} has quantized tensors but the dynamic rule \"{}\" says it is not quantized",
                              store.dir().string(), module, q.dynamic[sc.rule].key));
    }
    ps.push_back(read_packed_linear(store, module, n, k, q.for_module(module)));
  }
  checkpoint::PackedLinear j;
  j.module = fused_module;
  j.k = k;
  j.bits = ps.front().bits;
  j.groups = ps.front().groups;
  j.g_idx = ps.front().g_idx;
  for (const auto& p : ps) {
    if (p.bits != j.bits || p.groups != j.groups || p.g_idx != j.g_idx) {
      throw Error(ErrorKind::kShape,
                  fmt::format("{}: {} and {} are the parts of {} but differ in bits, groups or g_idx, so they "
                              "cannot run as one linear",
                              store.dir().string(), ps.front().module, p.module, fused_module));
    }
    j.n += p.n;
  }
  // Row-major [rows, N_part] blocks side by side: qweight [K*b/32, N], scales [G, N], qzeros
  // [G, N*b/32] (each part's N a multiple of 32, so its zero words hold only its own columns).
  auto join = [&](auto member, int64_t rows, auto cols_of) {
    using T = typename std::remove_reference_t<decltype(ps.front().*member)>::value_type;
    std::vector<T> out;
    out.reserve(static_cast<size_t>(rows) * static_cast<size_t>(cols_of(j.n)));
    for (int64_t r = 0; r < rows; ++r) {
      for (const auto& p : ps) {
        const auto& v = p.*member;
        const int64_t c = cols_of(p.n);
        out.insert(out.end(), v.begin() + r * c, v.begin() + (r + 1) * c);
      }
    }
    return out;
  };
  const int64_t b = j.bits;
  j.qweight = join(&checkpoint::PackedLinear::qweight, k * b / 32, [](int64_t n) { return n; });
  j.scales = join(&checkpoint::PackedLinear::scales, j.groups, [](int64_t n) { return n; });
  j.qzeros = join(&checkpoint::PackedLinear::qzeros, j.groups, [b](int64_t n) { return n * b / 32; });
  return j;
}

Linear load_quantized_parts(const io::TensorStore& store, const std::string& fused_module,
                            const std::vector<std::pair<std::string, int64_t>>& parts, int64_t k,
                            const config::QuantizationConfig& q, bool dequantize) {
  checkpoint::PackedLinear p = read_packed_parts(store, fused_module, parts, k, q);
  std::vector<float> bias;
  int group_size = 0;
  int with_bias = 0;
  for (const auto& [module, n] : parts) {
    const auto t = checkpoint::find_quantized_linear(store, module, n, k, q.for_module(module));
    group_size = t.group_size;
    with_bias += t.bias != nullptr;
  }
  if (with_bias != 0 && with_bias != static_cast<int>(parts.size())) {
    throw Error(ErrorKind::kShape, fmt::format("{}: only some parts of {} have a bias", store.dir().string(), fused_module));
  }
  if (with_bias) {
    for (const auto& [module, n] : parts) {
      const auto b = store.read_f32(module + ".bias", {n});
      bias.insert(bias.end(), b.begin(), b.end());
    }
  }
  if (dequantize) return Linear::dense(p.n, k, dequantize_packed(p, "gptq_v2"), std::move(bias));
  std::vector<uint16_t> bias16;
  for (float v : bias) bias16.push_back(core::fp32_to_fp16(v));
  backend::QuantizedLinearView v;
  v.n = p.n;
  v.k = k;
  v.bits = p.bits;
  v.group_size = group_size;
  v.qweight = p.qweight.data();
  v.qzeros = p.qzeros.data();
  v.scales = p.scales.data();
  v.g_idx = p.g_idx.data();
  v.zeros_v2 = true;
  v.bias_fp16 = bias16.empty() ? nullptr : bias16.data();
  return Linear(backend::quantized_linear(backend::Device::kCpu, v, fused_module));
}

}  // namespace gptq::model
