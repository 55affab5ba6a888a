#include "pipeline/quantize_pipeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <numeric>
#include <set>
#include <tuple>

#include "core/dtype.h"
#include "core/log.h"
#include "gptq/error.h"
#include "gptq/runtime.h"
#include "pipeline/sharded_hessian.h"
#include "quant/damp_search.h"

namespace gptq::pipeline {
namespace {

using arch::Role;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::string resolve_format(const QuantizeConfig& q) {
  std::string f = q.format.empty() ? "gptq" : q.format;
  if (f != "gptq" && f != "gptq_v2") {
    throw Error(ErrorKind::kArgument, fmt::format("--format {}: expected gptq or gptq_v2", f));
  }
  return f;
}

std::string resolve_calib_dtype(const QuantizeConfig& q) {
  // fp32 is the default on every CPU: bf16 costs 4% perplexity on SmolLM2 (README).
  if (q.calib_dtype.empty()) return "fp32";
  if (q.calib_dtype != "fp32" && q.calib_dtype != "bf16") {
    throw Error(ErrorKind::kArgument, fmt::format("--calib-dtype {}: expected bf16 or fp32", q.calib_dtype));
  }
  return q.calib_dtype;
}

std::string resolve_grid(const QuantizeConfig& q) {
  const std::string g = q.grid.empty() ? "gptq" : q.grid;
  if (g != "gptq" && g != "ggml") {
    throw Error(ErrorKind::kArgument, fmt::format("--grid {}: expected gptq or ggml", g));
  }
  if (g == "ggml" && (!q.sym || (q.bits != 4 && q.bits != 8))) {
    throw Error(ErrorKind::kArgument,
                fmt::format("--grid ggml with {}-bit {}: llama.cpp's grid is symmetric 4-bit (Q4_0) or "
                            "8-bit (Q8_0); use --bits 4 or 8 without --asym, or --grid gptq",
                            q.bits, q.sym ? "symmetric" : "asymmetric"));
  }
  return g;
}

quant::QuantParams to_params(const QuantizeConfig& q) {
  quant::QuantParams p;
  p.bits = q.bits;
  p.group_size = q.group_size;
  p.sym = q.sym;
  p.desc_act = q.desc_act;
  p.act_group_aware = q.act_group_aware;
  p.static_groups = q.static_groups;
  p.damp_percent = q.damp_percent;
  p.mse = q.mse || q.mse_hessian;
  p.mse_hessian = q.mse_hessian;
  p.ggml_grid = resolve_grid(q) == "ggml";
  if (q.method != "gptq" && q.method != "rtn") {
    throw Error(ErrorKind::kArgument, fmt::format("--method {}: expected gptq or rtn", q.method));
  }
  quant::validate(p);
  (void)resolve_calib_dtype(q);
  const config::QuantizationConfig base = base_config(q);
  for (size_t i = 0; i < base.dynamic.size(); ++i) {
    const config::DynamicRule& r = base.dynamic[i];
    if (r.exclude) continue;
    config::ModuleScheme sc;
    sc.bits = r.bits.value_or(q.bits);
    sc.group_size = r.group_size.value_or(q.group_size);
    sc.desc_act = r.desc_act.value_or(q.desc_act);
    sc.sym = r.sym.value_or(q.sym);
    try {
      quant::validate(params_for(p, sc));
    } catch (const Error& e) {
      throw Error(ErrorKind::kArgument, fmt::format("dynamic rule \"{}\": {}", r.key, e.what()));
    }
  }
  return p;
}

void add_to_summary(const ModuleReport& r, const config::QuantizationConfig& base, checkpoint::QuantizationSummary& s) {
  if (r.bits == 0) {
    s.unquantized_modules.push_back(r.module);
    return;
  }
  const config::ModuleScheme sc = base.scheme_for(r.module);
  if (r.bits == sc.bits && r.group_size == sc.group_size) return;
  config::DynamicRule o;
  o.bits = r.bits;
  o.group_size = r.group_size;
  o.desc_act = sc.desc_act;
  o.sym = sc.sym;
  s.module_overrides[r.module] = o;
}

checkpoint::QuantizationSummary make_summary(const QuantizeConfig& q, const config::ModelConfig& cfg,
                                             const arch::ArchDesc& desc) {
  checkpoint::QuantizationSummary s;
  s.q.bits = q.bits;
  s.q.group_size = q.group_size;
  s.q.desc_act = q.desc_act;
  s.q.sym = q.sym;
  s.q.damp_percent = q.damp_percent;
  s.q.true_sequential = q.true_sequential;
  s.q.static_groups = q.static_groups;
  s.q.checkpoint_format = resolve_format(q);
  s.q.dynamic = base_config(q).dynamic;
  s.mse = q.mse || q.mse_hessian;
  s.mse_hessian = q.mse_hessian;
  s.damp_search = q.damp_search;
  s.act_group_aware = q.act_group_aware;
  s.grid = resolve_grid(q);
  s.num_layers = cfg.num_hidden_layers;
  s.block_prefix = desc.block_prefix;
  for (const auto& g : desc.sequential_groups) {
    std::vector<std::string> names;
    for (auto r : g) names.push_back(desc.linear(r).name);
    s.block_linear_groups.push_back(names);
  }
  return s;
}

checkpoint::PackedLinear pack_result(const std::string& module, const quant::QuantResult& r, const std::string& format,
                                     const std::vector<float>& bias) {
  checkpoint::PackedLinear p;
  p.module = module;
  p.n = r.n;
  p.k = r.k;
  p.bits = r.bits;
  const int64_t g = r.group_size == -1 ? r.k : r.group_size;
  p.groups = (r.k + g - 1) / g;
  p.qweight = quant::pack_qweight(r.codes.data(), r.n, r.k, r.bits);
  p.qzeros = quant::pack_qzeros(r.zeros.data(), p.groups, r.n, r.bits);
  if (format == "gptq") quant::qzeros_v2_to_v1(p.qzeros, r.bits);
  p.scales.resize(r.scales.size());
  for (size_t i = 0; i < r.scales.size(); ++i) p.scales[i] = core::fp32_to_fp16(r.scales[i]);
  p.g_idx = r.g_idx;
  for (float b : bias) p.bias.push_back(core::fp32_to_fp16(b));
  return p;
}

checkpoint::PackedLinear read_packed(const io::SafetensorsFile& part, const std::string& module, int64_t n, int64_t k,
                                     int bits, int group_size) {
  checkpoint::PackedLinear p;
  p.module = module;
  p.n = n;
  p.k = k;
  p.bits = bits;
  const int64_t g = group_size == -1 ? k : group_size;
  p.groups = (k + g - 1) / g;
  auto get = [&](const char* suffix, DType dt, int64_t count) -> const io::TensorInfo& {
    const io::TensorInfo* t = part.find(module + suffix);
    if (!t || t->dtype != dt || t->numel() != count) {
      throw Error(ErrorKind::kFormat, fmt::format("{}: layer part lacks a valid {}{} (delete the .partial folder "
                                                  "to start over)",
                                                  part.path().string(), module, suffix));
    }
    return *t;
  };
  auto copy = [](const io::TensorInfo& t, auto& v) {
    v.resize(t.nbytes / sizeof(v[0]));
    std::memcpy(v.data(), t.data, t.nbytes);
  };
  copy(get(".qweight", DType::kI32, k * bits / 32 * n), p.qweight);
  copy(get(".qzeros", DType::kI32, p.groups * n * bits / 32), p.qzeros);
  copy(get(".scales", DType::kF16, p.groups * n), p.scales);
  copy(get(".g_idx", DType::kI32, k), p.g_idx);
  if (const io::TensorInfo* b = part.find(module + ".bias")) copy(*b, p.bias);
  return p;
}

namespace {

class ByteWriter {
 public:
  template <typename T>
  void pod(const T& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof(T));
  }
  void str(const std::string& s) {
    pod<uint64_t>(s.size());
    out.insert(out.end(), s.begin(), s.end());
  }
  template <typename T>
  void vec(const std::vector<T>& v) {
    pod<uint64_t>(v.size());
    const auto* p = reinterpret_cast<const uint8_t*>(v.data());
    out.insert(out.end(), p, p + v.size() * sizeof(T));
  }
  std::vector<uint8_t> out;
};

class ByteReader {
 public:
  explicit ByteReader(const std::vector<uint8_t>& b) : b_(b) {}
  template <typename T>
  T pod() {
    T v;
    std::memcpy(&v, take(sizeof(T)), sizeof(T));
    return v;
  }
  std::string str() {
    const auto n = pod<uint64_t>();
    const uint8_t* p = take(n);
    return std::string(reinterpret_cast<const char*>(p), n);
  }
  template <typename T>
  std::vector<T> vec() {
    const auto n = pod<uint64_t>();
    if (n > b_.size()) bad();
    std::vector<T> v(n);
    if (n) std::memcpy(v.data(), take(n * sizeof(T)), n * sizeof(T));
    return v;
  }
  bool done() const { return pos_ == b_.size(); }

 private:
  [[noreturn]] void bad() const {
    throw Error(ErrorKind::kFormat, "dist: a malformed layer result came from another rank (same gptq build on every rank?)");
  }
  const uint8_t* take(size_t n) {
    if (n > b_.size() - pos_) bad();
    const uint8_t* p = b_.data() + pos_;
    pos_ += n;
    return p;
  }
  const std::vector<uint8_t>& b_;
  size_t pos_ = 0;
};

}  // namespace

std::vector<uint8_t> encode_results(const std::vector<ModuleReport>& reports,
                                    const std::vector<checkpoint::PackedLinear>& packed) {
  ByteWriter w;
  w.pod<uint64_t>(reports.size());
  for (const auto& r : reports) {
    w.str(r.module);
    w.pod(r.bits), w.pod(r.group_size), w.pod(r.n), w.pod(r.k), w.pod(r.loss), w.pod(r.damp), w.pod(r.seconds);
    w.str(r.note);
  }
  w.pod<uint64_t>(packed.size());
  for (const auto& p : packed) {
    w.str(p.module);
    w.pod(p.n), w.pod(p.k), w.pod(p.groups), w.pod(p.bits);
    w.vec(p.qweight), w.vec(p.qzeros), w.vec(p.scales), w.vec(p.g_idx), w.vec(p.bias);
  }
  return std::move(w.out);
}

void decode_results(const std::vector<uint8_t>& bytes, std::vector<ModuleReport>& reports,
                    std::vector<checkpoint::PackedLinear>& packed) {
  ByteReader rd(bytes);
  const auto nr = rd.pod<uint64_t>();
  for (uint64_t i = 0; i < nr; ++i) {
    ModuleReport r;
    r.module = rd.str();
    r.bits = rd.pod<int>(), r.group_size = rd.pod<int>(), r.n = rd.pod<int64_t>(), r.k = rd.pod<int64_t>();
    r.loss = rd.pod<double>(), r.damp = rd.pod<double>(), r.seconds = rd.pod<double>();
    r.note = rd.str();
    reports.push_back(std::move(r));
  }
  const auto np = rd.pod<uint64_t>();
  for (uint64_t i = 0; i < np; ++i) {
    checkpoint::PackedLinear p;
    p.module = rd.str();
    p.n = rd.pod<int64_t>(), p.k = rd.pod<int64_t>(), p.groups = rd.pod<int64_t>(), p.bits = rd.pod<int>();
    p.qweight = rd.vec<int32_t>(), p.qzeros = rd.vec<int32_t>(), p.scales = rd.vec<uint16_t>();
    p.g_idx = rd.vec<int32_t>(), p.bias = rd.vec<uint16_t>();
    packed.push_back(std::move(p));
  }
  if (!rd.done()) throw Error(ErrorKind::kFormat, "dist: trailing bytes in a layer result from another rank");
}

QuantizationPipeline::QuantizationPipeline(const model::Decoder& decoder, const QuantizeConfig& q,
                                           std::vector<std::vector<int32_t>> samples, dist::Group group,
                                           bool distribute_solve)
    : dec_(decoder), q_(q), params_(to_params(q)), base_(base_config(q)), format_(resolve_format(q)),
      calib_(resolve_calib_dtype(q) == "bf16" ? quant::CalibDtype::kBf16 : quant::CalibDtype::kFp32),
      samples_(std::move(samples)), group_(group), distribute_solve_(distribute_solve), shard_size_(shard_samples(static_cast<int64_t>(samples_.size()))) {}

std::vector<int> QuantizationPipeline::assign_solvers(const std::vector<Role>& todo, const model::BlockWeights& block) const {
  std::vector<int> solver(todo.size(), 0);
  const int n = group_.size();
  if (!distribute_solve_ || n == 1) return solver;
  // Largest first, each to the least loaded rank (ties: the lower rank); a solve costs about
  // N * K^2 multiply-adds (the error feedback), the damp search ten of them.
  std::vector<size_t> order(todo.size());
  std::iota(order.begin(), order.end(), size_t{0});
  auto cost = [&](size_t i) {
    const model::Linear& l = block.at(todo[i]);
    return static_cast<double>(l.n()) * static_cast<double>(l.k()) * static_cast<double>(l.k());
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cost(a) > cost(b); });
  std::vector<double> load(static_cast<size_t>(n), 0.0);
  for (size_t i : order) {
    const auto least = std::min_element(load.begin(), load.end());
    solver[i] = static_cast<int>(least - load.begin());
    *least += cost(i);
  }
  return solver;
}

int64_t QuantizationPipeline::tokens() const {
  int64_t n = 0;
  for (const auto& s : samples_) n += static_cast<int64_t>(s.size());
  return n;
}

int64_t QuantizationPipeline::kept_tokens() const {
  int64_t n = 0;
  for (size_t s = 0; s < samples_.size(); ++s) {
    if (owns(s)) n += static_cast<int64_t>(samples_[s].size());
  }
  return n;
}

std::vector<int64_t> QuantizationPipeline::saved_widths() const {
  const char* env = std::getenv("GPTQ_RECOMPUTE_SUBLAYERS");
  if (!q_.true_sequential || q_.method == "rtn" || (env && std::string(env) == "1")) return {};
  const auto& c = dec_.config();
  std::vector<int64_t> w{c.hidden_size};  // mid_
  for (const auto& sl : dec_.desc().sublayers) {
    w.push_back(sl.kind == arch::SublayerKind::kAttention ? c.num_attention_heads * c.head_dim : c.intermediate_size);
  }
  return w;
}

std::filesystem::path QuantizationPipeline::spill_dir(const std::string& mode, const std::filesystem::path& dir,
                                                     const std::filesystem::path& parent) const {
  // The block input; with true-sequential also the stream at the MLP's start and the inputs of
  // the output linears (saved_widths()).
  uint64_t width = static_cast<uint64_t>(dec_.config().hidden_size);
  for (int64_t w : saved_widths()) width += static_cast<uint64_t>(w);
  const uint64_t bytes = width * static_cast<uint64_t>(kept_tokens()) * sizeof(float);
  if (mode == "memory" || (mode != "disk" && bytes <= kAutoOffloadBytes)) return {};
  std::filesystem::path d = dir.empty() ? parent : dir;
  std::error_code ec;
  if (d.empty() || !std::filesystem::is_directory(d, ec)) d = std::filesystem::temp_directory_path();
  core::log_info("calibration hidden states: {:.2f} GiB in a scratch file in {}", static_cast<double>(bytes) / (1ull << 30),
                 d.string());
  return d;
}

void QuantizationPipeline::start(const std::function<void(int32_t, float*)>& embed_row,
                                 const std::vector<float>& positions, const std::filesystem::path& spill_dir) {
  const int64_t D = dec_.config().hidden_size;
  std::vector<int64_t> rows(samples_.size(), 0);
  for (size_t j = 0; j < samples_.size(); ++j) {
    if (owns(j)) rows[j] = static_cast<int64_t>(samples_[j].size());
  }
  hidden_ = HiddenStates(rows, D, spill_dir);
  const std::vector<int64_t> widths = saved_widths();
  reuse_ = !widths.empty();
  out_in_.clear();
  if (reuse_) {
    try {
      mid_ = HiddenStates(rows, D, spill_dir);
      for (size_t i = 1; i < widths.size(); ++i) out_in_.emplace_back(rows, widths[i], spill_dir);
    } catch (const Error& e) {
      // Only a speed-up: without room for the saved states, every pass starts at the block input.
      if (spill_dir.empty()) throw;
      core::log_warn("{}; calibration recomputes each pass from the block input instead (same output, slower)",
                     e.what());
      mid_ = HiddenStates();
      out_in_.clear();
      reuse_ = false;
    }
  }
  std::vector<float> buf;
  for (size_t j = 0; j < samples_.size(); ++j) {
    if (!owns(j)) continue;
    const auto& s = samples_[j];
    float* h = hidden_.in_memory(j);
    if (!h) {
      buf.resize(s.size() * static_cast<size_t>(D));
      h = buf.data();
    }
    for (size_t i = 0; i < s.size(); ++i) embed_row(s[i], h + i * D);
    dec_.finish_embedding(h, static_cast<int64_t>(s.size()), 0, positions);
    if (h == buf.data()) hidden_.write(j, h);
  }
}

void QuantizationPipeline::run_block(const model::BlockWeights& block, const model::LinearInputHook* hook,
                                     std::optional<arch::Role> stop_at, bool update_hidden, Point from, bool save_mid,
                                     bool save_output) {
  // One one-layer cache for every sample, its scratch arena sized for the longest.
  int64_t longest = 0;
  for (size_t s = 0; s < samples_.size(); ++s) {
    if (owns(s)) longest = std::max<int64_t>(longest, static_cast<int64_t>(samples_[s].size()));
  }
  if (longest == 0) return;
  model::KVCache cache = dec_.make_cache(longest, longest, 1);
  cache.scratch().reserve(dec_.block_scratch_bytes(block, 0, longest, 0));
  const int64_t D = dec_.config().hidden_size;
  const bool parallel = dec_.desc().parallel_residual;
  const size_t stop_sub = stop_at ? static_cast<size_t>(dec_.desc().sublayer_of(*stop_at)) : 0;
  // Saving the output linear's input: the hook sees it when the pass stops there.
  model::LinearInputHook saving = [&](arch::Role r, const float* x, int64_t n) {
    if (hook) (*hook)(r, x, n);
    if (r == *stop_at) out_in_[stop_sub].write(current_sample_, x);
  };
  const model::LinearInputHook* use_hook = save_output ? &saving : hook;
  // A pass that updates in-memory states from the block input runs on them in place; otherwise
  // each sample is copied into `buf` (and, when updating spilled states, written back).
  std::vector<float> buf, block_in, out_in;
  for (size_t s = 0; s < samples_.size(); ++s) {
    if (!owns(s)) continue;
    check_interrupt();
    current_sample_ = s;
    const int64_t t = static_cast<int64_t>(samples_[s].size());
    float* h = update_hidden && from.sublayer == 0 ? hidden_.in_memory(s) : nullptr;
    const float* in = nullptr;
    const float* resume = nullptr;
    if (!h) {
      buf.resize(static_cast<size_t>(t * D));
      (from.sublayer > 0 ? mid_ : hidden_).read(s, buf.data());
      h = buf.data();
    }
    if (from.sublayer > 0 && parallel) {
      block_in.resize(static_cast<size_t>(t * D));
      hidden_.read(s, block_in.data());
      in = block_in.data();
    }
    if (from.at_output) {
      const HiddenStates& saved = out_in_[from.sublayer];
      out_in.resize(static_cast<size_t>(t * saved.width()));
      saved.read(s, out_in.data());
      resume = out_in.data();
    }
    dec_.block_forward(block, 0, h, t, 0, cache, use_hook, stop_at, 0, from.sublayer, in, resume);
    if (save_mid) mid_.write(s, h);
    if (update_hidden && h == buf.data()) hidden_.write(s, h);
  }
}

QuantizationPipeline::Point QuantizationPipeline::resume_point(std::optional<Point> stop) const {
  Point best;
  auto consider = [&](Point p) {
    if ((!stop || p.key() <= stop->key()) && p.key() > best.key()) best = p;
  };
  if (mid_at_ > 0) consider({mid_at_, false});
  for (size_t s = 0; s < out_saved_.size(); ++s) {
    // The residual stream at the start of s must be saved too: the block input or mid_.
    if (out_saved_[s] && (s == 0 || s == mid_at_)) consider({s, true});
  }
  return best;
}

void QuantizationPipeline::advance(const model::BlockWeights& block) {
  if (q_.method == "rtn") return;
  run_block(block, nullptr, std::nullopt, true, Point{});
}

LayerResult QuantizationPipeline::quantize_layer(int64_t layer, model::BlockWeights& block, const ProgressCallback& progress) {
  const auto& desc = dec_.desc();
  const int64_t L = dec_.config().num_hidden_layers;
  const bool rtn = q_.method == "rtn";
  // The solver reads and rewrites fp32 weights, and calibration must see the same fp32 weights
  // whether the block was loaded for quantizing (fp32) or for inference (16-bit, the in-memory
  // API): widen 16-bit linears first (exact).
  for (model::Linear& lin : block.linears) lin.widen_to_fp32();
  std::vector<std::vector<Role>> groups = desc.sequential_groups;
  if (!q_.true_sequential) {
    // All linears see inputs computed by the unquantized layer: one pass collects every Hessian.
    std::vector<Role> all;
    for (const auto& g : groups) all.insert(all.end(), g.begin(), g.end());
    groups = {all};
  }
  LayerResult out;
  const auto t_layer = std::chrono::steady_clock::now();
  // Roles whose group is done (weights final for this layer), for the reuse of mid_.
  std::set<Role> final_roles;
  mid_at_ = 0;
  out_saved_.assign(out_in_.size(), false);
  double exchange_s = 0;  // time in the reductions and the broadcasts of results
  const uint64_t traffic0 = dist::traffic_bytes();
  for (const auto& group : groups) {
    // Which linears of the group are quantized, each with its own settings: the first
    // matching dynamic rule over the base ones. A group larger than K becomes one group per row
    // (the quantizer makes a single group then anyway, and loaders refuse g > K). SPEC §1: K and
    // N multiples of 32.
    std::vector<Role> todo;
    std::map<Role, quant::QuantParams> params;
    std::map<Role, std::string> notes;
    for (Role r : group) {
      const auto& ld = desc.linear(r);
      const model::Linear& lin = block.at(r);
      const std::string module = desc.block_module(static_cast<int>(layer), ld.name);
      const config::ModuleScheme sc = base_.scheme_for(module);
      std::string why;
      if (!sc.quantized) {
        why = fmt::format("left unquantized by the dynamic rule \"{}\"", base_.dynamic[sc.rule].key);
      } else if (lin.k() % 32 != 0 || lin.n() % 32 != 0) {
        why = fmt::format("left unquantized: {} = {} is not a multiple of 32", lin.k() % 32 ? "K" : "N",
                          lin.k() % 32 ? lin.k() : lin.n());
      }
      if (!why.empty()) {
        ModuleReport rep;
        rep.module = module;
        rep.n = lin.n();
        rep.k = lin.k();
        rep.note = why;
        out.reports.push_back(rep);
        continue;
      }
      quant::QuantParams p = params_for(params_, sc);
      if (p.group_size != -1 && p.group_size > lin.k()) {
        notes[r] = fmt::format("group_size {} > K = {}: one group per row (group_size -1)", p.group_size, lin.k());
        p.group_size = -1;
      }
      params[r] = p;
      todo.push_back(r);
    }
    if (todo.empty()) {
      final_roles.insert(group.begin(), group.end());
      continue;
    }
    // With the damp search, even and odd calibration sequences go to two accumulators (the
    // folds of the cross-validation); H for the final solve is their token-weighted mean. Each
    // is summed over canonical shards in a fixed order (sharded_hessian.h).
    const bool search = q_.damp_search && !rtn;
    std::map<Role, ShardedHessian> acc, acc_odd;
    std::optional<Role> stop_at;
    for (Role r : todo) {
      const Role slot = desc.input_slot(r);
      if (!acc.count(slot)) acc.emplace(slot, ShardedHessian(block.at(r).k(), group_, calib_));
      if (search && !acc_odd.count(slot)) acc_odd.emplace(slot, ShardedHessian(block.at(r).k(), group_, calib_));
      if (!stop_at || desc.input_order(slot) > desc.input_order(*stop_at)) stop_at = slot;
    }
    // Tokens of each fold over all samples (every rank knows every sample's length).
    int64_t tok_even = 0, tok_odd = 0;
    for (size_t i = 0; i < samples_.size(); ++i) {
      (search && i % 2 == 1 ? tok_odd : tok_even) += static_cast<int64_t>(samples_[i].size());
    }
    const int64_t nshards = (static_cast<int64_t>(samples_.size()) + shard_size_ - 1) / shard_size_;
    if (!rtn) {
      model::LinearInputHook hook = [&](Role r, const float* x, int64_t t) {
        auto& target = search && current_sample_ % 2 == 1 ? acc_odd : acc;
        auto it = target.find(r);
        if (it != target.end()) it->second.add(static_cast<int64_t>(current_sample_) / shard_size_, x, t);
      };
      // Start at the furthest saved point the pass reaches. Save the residual stream where it
      // stops when that is past mid_at_ and every linear before that sublayer is final, and the
      // input of the output linear it stops at when every other linear up to it is final.
      const int stop_index = desc.sublayer_of(*stop_at);
      if (stop_index < 0) {
        throw Error(ErrorKind::kArgument,
                    fmt::format("architecture: {} belongs to no sublayer of the block", desc.linear(*stop_at).name));
      }
      const size_t stop_sub = static_cast<size_t>(stop_index);
      const Role out_role = model::Decoder::output_role(desc.sublayers[stop_sub].kind);
      const Point stop{stop_sub, *stop_at == out_role};
      bool save_mid = reuse_ && stop_sub > mid_at_;
      bool save_out = reuse_ && stop.at_output && stop_sub < out_in_.size() &&
                      out_in_[stop_sub].width() == block.at(out_role).k();
      for (const auto& g : desc.sequential_groups) {
        for (Role r : g) {
          if (final_roles.count(r)) continue;
          const size_t sub = static_cast<size_t>(desc.sublayer_of(r));
          if (sub < stop_sub) save_mid = false;
          if (sub < stop_sub || (sub == stop_sub && r != out_role)) save_out = false;
        }
      }
      run_block(block, &hook, stop_at, false, resume_point(stop), save_mid, save_out);
      if (save_mid) mid_at_ = stop_sub;
      if (save_out) out_saved_[stop_sub] = true;
    }
    // Who solves each linear (rank 0, or spread by assign_solvers), and per input slot the rank
    // that sums its Hessian (the solver of the slot's first linear) and the other solvers it
    // forwards H to. Every rank computes the same plan from the shapes and N.
    const std::vector<int> solver = assign_solvers(todo, block);
    if (distribute_solve_ && group_.size() > 1 && group_.root()) {
      std::string plan;
      for (size_t i = 0; i < todo.size(); ++i) {
        plan += fmt::format("{}{} on rank {}", i ? ", " : "", desc.linear(todo[i]).name, solver[i]);
      }
      core::log_info("layer {}: {}", layer, plan);
    }
    std::map<Role, int> sum_at;
    std::map<Role, std::set<int>> forward_to;
    std::map<Role, int> users;  // this rank's linears of each slot still to quantize
    for (size_t i = 0; i < todo.size(); ++i) {
      const Role slot = desc.input_slot(todo[i]);
      if (!sum_at.count(slot)) sum_at[slot] = solver[i];
      if (solver[i] != sum_at[slot]) forward_to[slot].insert(solver[i]);
      if (solver[i] == group_.rank()) ++users[slot];
    }
    // Per slot with the damp search: the two folds' Hessians, and H (their token-weighted mean).
    // The reductions are collective: every rank runs them, for the slots in the same order; the
    // Hessians exist on the ranks that solve a linear of the slot only.
    struct Folds {
      std::vector<double> ha, hb, h;
    };
    std::map<Role, Folds> folds;
    std::map<Role, std::vector<double>> hessians;
    const auto t_exchange = std::chrono::steady_clock::now();
    if (!rtn) {
      constexpr int kForwardTag = 30000;  // above the shard tags (< 64), below MPI's least tag limit
      for (auto& [slot, a] : acc) {
        const int at = sum_at.at(slot);
        const auto& fwd = forward_to[slot];
        const size_t kk = static_cast<size_t>(a.k() * a.k());
        // The summing rank sends the finished matrix to each other solver of the slot.
        auto pass_on = [&](std::vector<double>& h, int tag) {
          for (int to : fwd) {
            if (group_.rank() == at) group_.send(h.data(), kk * sizeof(double), to, tag);
            if (group_.rank() == to) {
              h.resize(kk);
              group_.recv(h.data(), kk * sizeof(double), at, tag);
            }
          }
        };
        if (search) {
          Folds f;
          f.ha = a.reduce(nshards, tok_even, at);
          f.hb = acc_odd.at(slot).reduce(nshards, tok_odd, at);
          pass_on(f.ha, kForwardTag);
          pass_on(f.hb, kForwardTag + 1);
          if (!f.ha.empty()) {
            const double wa = static_cast<double>(tok_even), wb = static_cast<double>(tok_odd);
            if (wb == 0) f.hb = f.ha;  // a single calibration sequence: nothing to hold out
            f.h.resize(f.ha.size());
            for (size_t i = 0; i < f.h.size(); ++i) f.h[i] = (wa * f.ha[i] + wb * f.hb[i]) / (wa + wb);
          }
          folds.emplace(slot, std::move(f));
        } else {
          std::vector<double> h = a.reduce(nshards, tok_even, at);
          pass_on(h, kForwardTag);
          hessians.emplace(slot, std::move(h));
        }
      }
      acc.clear();
      acc_odd.clear();
    }
    exchange_s += seconds_since(t_exchange);
    // This rank's linears, in the group's order; the others come from their solvers below.
    std::map<Role, ModuleReport> reps_of;
    std::map<Role, checkpoint::PackedLinear> packed_of;
    // Keyed by act-order too: linears sharing an input may differ in it (dynamic rules).
    std::map<std::tuple<Role, double, bool>, quant::HessianFactor> searched;
    std::map<std::pair<Role, bool>, quant::HessianFactor> factors;
    for (size_t i = 0; i < todo.size(); ++i) {
      if (solver[i] != group_.rank()) continue;
      const Role r = todo[i];
      check_interrupt();
      const auto t0 = std::chrono::steady_clock::now();
      const auto& ld = desc.linear(r);
      model::Linear& lin = block.at(r);
      const std::string module = desc.block_module(static_cast<int>(layer), ld.name);
      const quant::QuantParams& pm = params.at(r);
      const Role slot = desc.input_slot(r);
      if (progress) progress({"quantize", layer, L, module});
      quant::QuantResult res;
      if (rtn) {
        res = quant::rtn_quantize(lin.weight().data(), lin.n(), lin.k(), pm);
      } else if (search) {
        Folds& fo = folds.at(slot);
        const quant::DampChoice choice = quant::choose_damp(lin.weight().data(), lin.n(), lin.k(), fo.ha, fo.hb,
                                                            pm, quant::default_damp_candidates());
        quant::QuantParams pc = pm;
        pc.damp_percent = choice.damp_percent;
        auto key = std::make_tuple(slot, choice.damp_percent, pm.desc_act);
        auto f = searched.find(key);
        if (f == searched.end()) f = searched.emplace(key, quant::prepare_hessian(fo.h, lin.k(), pc)).first;
        res = quant::gptq_quantize(lin.weight().data(), lin.n(), lin.k(), f->second, pc);
      } else {
        // Linears that share an input (q/k/v, gate/up) share one factorization of its Hessian
        // per act-order setting. The accumulator is dropped as soon as H is out, and H after its
        // last user: at K = 5632 each copy is 250 MB.
        auto f = factors.find({slot, pm.desc_act});
        if (f == factors.end()) {
          f = factors.emplace(std::pair{slot, pm.desc_act}, quant::prepare_hessian(hessians.at(slot), lin.k(), pm)).first;
        }
        res = quant::gptq_quantize(lin.weight().data(), lin.n(), lin.k(), f->second, pm);
      }
      if (--users[slot] == 0) {
        hessians.erase(slot);
        folds.erase(slot);
      }
      auto packed = pack_result(module, res, format_, std::vector<float>(lin.bias().begin(), lin.bias().end()));
      lin.set_weight(model::dequantize_packed(packed, format_));
      ModuleReport rep;
      rep.module = module;
      rep.bits = pm.bits;
      rep.group_size = pm.group_size;
      rep.n = lin.n();
      rep.k = lin.k();
      rep.loss = res.loss;
      rep.damp = res.damp_used;
      rep.seconds = seconds_since(t0);
      if (notes.count(r)) rep.note = notes[r];
      if (res.dead_columns > 0) {
        rep.note += fmt::format("{}{} dead input columns", rep.note.empty() ? "" : "; ", res.dead_columns);
      }
      reps_of[r] = rep;
      packed_of[r] = std::move(packed);
    }
    if (group_.size() > 1) {
      // Each solver's results to every rank (in rank order), which dequantizes them into its
      // copy of the layer: the same function on the same bytes, so every rank holds the same
      // weights.
      const auto t_send = std::chrono::steady_clock::now();
      for (int from = 0; from < group_.size(); ++from) {
        if (std::find(solver.begin(), solver.end(), from) == solver.end()) continue;
        std::vector<uint8_t> bytes;
        if (from == group_.rank()) {
          std::vector<ModuleReport> reps;
          std::vector<checkpoint::PackedLinear> packed;
          for (size_t i = 0; i < todo.size(); ++i) {
            if (solver[i] != from) continue;
            reps.push_back(reps_of.at(todo[i]));
            packed.push_back(packed_of.at(todo[i]));
          }
          bytes = encode_results(reps, packed);
        }
        group_.broadcast(bytes, from);
        if (from == group_.rank()) continue;
        std::vector<ModuleReport> reps;
        std::vector<checkpoint::PackedLinear> packed;
        decode_results(bytes, reps, packed);
        size_t j = 0;
        for (size_t i = 0; i < todo.size(); ++i) {
          if (solver[i] != from) continue;
          if (j >= packed.size() || j >= reps.size() ||
              packed[j].module != desc.block_module(static_cast<int>(layer), desc.linear(todo[i]).name)) {
            throw Error(ErrorKind::kFormat, fmt::format("dist: rank {} sent the results of other linears than "
                                                        "expected (same gptq build on every rank?)", from));
          }
          block.at(todo[i]).set_weight(model::dequantize_packed(packed[j], format_));
          reps_of[todo[i]] = std::move(reps[j]);
          packed_of[todo[i]] = std::move(packed[j]);
          ++j;
        }
      }
      exchange_s += seconds_since(t_send);
    }
    for (Role r : todo) {
      out.reports.push_back(std::move(reps_of.at(r)));
      out.packed.push_back(std::move(packed_of.at(r)));
    }
    final_roles.insert(group.begin(), group.end());
  }
  if (!rtn) run_block(block, nullptr, std::nullopt, true, resume_point(std::nullopt));
  if (group_.size() > 1 && group_.root()) {
    core::log_info("layer {}: {:.3f} s of {:.3f} s in the exchange, {:.1f} MB sent and received by rank 0 "
                   "(Hessians, results, waits included)",
                   layer, exchange_s, seconds_since(t_layer), static_cast<double>(dist::traffic_bytes() - traffic0) / 1e6);
  }
  return out;
}

}  // namespace gptq::pipeline
