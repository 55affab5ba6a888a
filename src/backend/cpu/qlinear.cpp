#include "backend/cpu/qlinear.h"


#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "backend/cpu/qlayout.h"
#include "core/dtype.h"
#include "core/parallel.h"
#include "gptq/error.h"

namespace gptq::backend {


namespace {

using detail::kBlockN;
using detail::kUnitK;

// Element i of a tensor that may sit at any byte address (mmap'd safetensors data is not
// guaranteed to be aligned; reading through a cast int32_t* would be undefined behaviour).
inline uint32_t load_u32(const void* base, int64_t i) {
  uint32_t v;
  std::memcpy(&v, static_cast<const char*>(base) + i * 4, 4);
  return v;
}
inline uint16_t load_u16(const void* base, int64_t i) {
  uint16_t v;
  std::memcpy(&v, static_cast<const char*>(base) + i * 2, 2);
  return v;
}

// Value j of a little-endian bit stream made of consecutive 32-bit words `word(0), word(1), ...`
// with b-bit fields; for b = 3 a field may straddle two words (SPEC §1, 96-bit streams).
template <typename WordAt>
inline uint32_t stream_field(WordAt word, int bits, int64_t j) {
  const int64_t bit = j * bits;
  const int64_t wi = bit / 32;
  const int off = static_cast<int>(bit % 32);
  uint32_t v = word(wi) >> off;
  if (off + bits > 32) v |= word(wi + 1) << (32 - off);
  return v & ((1u << bits) - 1u);
}

// Code of input k, output n in qweight [K*b/32, N]: the codes of column n along K form one
// stream of words qweight[r, n], r = 0, 1, ...
inline uint32_t file_code(const QuantizedLinearView& v, int64_t k, int64_t n) {
  return stream_field([&](int64_t r) { return load_u32(v.qweight, r * v.n + n); }, v.bits, k);
}

// Stored zero point of group g, output n in qzeros [G, N*b/32]: row g is one stream along N.
inline uint32_t file_zero(const QuantizedLinearView& v, int64_t g, int64_t n) {
  const int64_t row_words = v.n * v.bits / 32;
  return stream_field([&](int64_t c) { return load_u32(v.qzeros, g * row_words + c); }, v.bits, n);
}

}  // namespace

QLinear QLinear::create(const QuantizedLinearView& v, std::string_view name) {
  // ---- validation: everything the kernels rely on is checked here and nowhere else ----
  if (v.bits != 2 && v.bits != 3 && v.bits != 4 && v.bits != 8) {
    throw Error(ErrorKind::kUnsupported,
                fmt::format("layer '{}': {}-bit weights are not supported (expected 2, 3, 4 or 8)",
                            name, v.bits));
  }
  // K may be any positive size: the inputs are regrouped below into whole units of 32 anyway
  // (each group padded with code 0 against x = 0), so a K that is not a multiple of 32 only
  // lengthens the last group's padding. N must fill the kernels' blocks of output columns.
  if (v.k <= 0 || v.n <= 0 || v.n % 32 != 0) {
    throw Error(
        ErrorKind::kShape,
        fmt::format("layer '{}': K = {} inputs must be positive and N = {} outputs a positive "
                    "multiple of 32 for the quantized kernels",
                    name, v.k, v.n));
  }
  if (v.group_size != -1 && v.group_size < 1) {
    throw Error(ErrorKind::kShape,
                fmt::format("layer '{}': group size {} is neither -1 nor a positive number", name,
                            v.group_size));
  }
  if (v.qweight == nullptr || v.qzeros == nullptr || v.scales == nullptr) {
    throw Error(ErrorKind::kArgument,
                fmt::format("layer '{}': qweight, qzeros and scales must all be given", name));
  }
  const int64_t group = v.group_size == -1 ? v.k : v.group_size;
  const int64_t n_groups = (v.k + group - 1) / group;  // G
  // qweight has ceil(K*b/32) rows: only fields of inputs k < K are read, so a part-filled last
  // word's padding is never looked at. N*b/32 qzeros words per row are whole because N is a
  // multiple of 32. Zero points are read below as stored fields; 8 bits at most, so they fit the
  // u8 layout.

  std::vector<int32_t> g_idx(static_cast<size_t>(v.k));
  for (int64_t k = 0; k < v.k; ++k) {
    const int64_t g = v.g_idx ? static_cast<int32_t>(load_u32(v.g_idx, k)) : k / group;
    if (g < 0 || g >= n_groups) {
      throw Error(ErrorKind::kShape,
                  fmt::format("layer '{}': g_idx[{}] = {} is outside [0, G = {}) (K = {}, group "
                              "size {})",
                              name, k, g, n_groups, v.k, v.group_size));
    }
    g_idx[k] = static_cast<int32_t>(g);
  }

  QLinear q;
  q.name_ = std::string(name);
  q.n_ = v.n;
  q.k_ = v.k;
  q.bits_ = v.bits;
  q.zero_offset_ = v.zeros_v2 ? 0 : 1;

  // ---- input order: groups contiguous, each padded to a multiple of 32 inputs ----
  // Act-order files scatter a group's inputs over K; gathering x once per call into group order
  // is far cheaper than gathering scales per weight inside the kernel.
  std::vector<std::vector<int32_t>> members(static_cast<size_t>(n_groups));
  for (int64_t k = 0; k < v.k; ++k) members[g_idx[k]].push_back(static_cast<int32_t>(k));
  std::vector<int32_t> perm;
  for (int64_t g = 0; g < n_groups; ++g) {
    const auto& mem = members[g];
    if (mem.empty()) continue;
    const int32_t begin = static_cast<int32_t>(perm.size() / kUnitK);
    perm.insert(perm.end(), mem.begin(), mem.end());
    perm.resize((perm.size() + kUnitK - 1) / kUnitK * kUnitK, -1);
    q.segs_.push_back({static_cast<int32_t>(g), begin, static_cast<int32_t>(perm.size() / kUnitK)});
  }
  q.kp_ = static_cast<int64_t>(perm.size());
  const int64_t n_units = q.kp_ / kUnitK;
  const int64_t n_seg = static_cast<int64_t>(q.segs_.size());
  q.unit_seg_.resize(static_cast<size_t>(n_units));
  for (int64_t s = 0; s < n_seg; ++s) {
    for (int32_t u = q.segs_[s].unit_begin; u < q.segs_[s].unit_end; ++u)
      q.unit_seg_[u] = static_cast<int32_t>(s);
  }
  bool identity = q.kp_ == v.k;
  for (int64_t i = 0; identity && i < q.kp_; ++i) identity = perm[i] == i;
  if (!identity) q.perm_ = std::move(perm);

  // ---- repack codes, scales and zero points per block of 8 columns ----
  const int64_t n_blocks = v.n / kBlockN;
  const int64_t unit_words = int64_t{v.bits} * kBlockN;
  q.words_.assign(static_cast<size_t>(n_blocks * n_units * unit_words), 0u);
  q.scales_.resize(static_cast<size_t>(n_blocks * n_seg * kBlockN));
  q.zeros_.resize(static_cast<size_t>(n_blocks * n_seg * kBlockN));
  core::parallel_for(n_blocks, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      for (int64_t u = 0; u < n_units; ++u) {
        uint32_t* unit = q.words_.data() + (blk * n_units + u) * unit_words;
        for (int kk = 0; kk < kUnitK; ++kk) {
          const int64_t kp = u * kUnitK + kk;
          const int64_t k = q.perm_.empty() ? kp : q.perm_[kp];
          if (k < 0) continue;  // padding keeps code 0 and meets x = 0
          for (int lane = 0; lane < kBlockN; ++lane) {
            detail::put_code(unit, lane, v.bits, kk, file_code(v, k, blk * kBlockN + lane));
          }
        }
      }
      for (int64_t s = 0; s < n_seg; ++s) {
        const int64_t g = q.segs_[s].group;
        for (int lane = 0; lane < kBlockN; ++lane) {
          const int64_t n = blk * kBlockN + lane;
          const int64_t meta = (blk * n_seg + s) * kBlockN + lane;
          q.scales_[meta] = load_u16(v.scales, g * v.n + n);
          q.zeros_[meta] = static_cast<uint8_t>(file_zero(v, g, n));
        }
      }
    }
  });

  q.x_scale_.resize(kUnitK);
  for (int kk = 0; kk < kUnitK; ++kk) q.x_scale_[kk] = detail::gemv_x_scale(v.bits, kk);
  if (v.bias_fp16 != nullptr) {
    q.bias_.resize(static_cast<size_t>(v.n));
    for (int64_t n = 0; n < v.n; ++n) q.bias_[n] = core::fp16_to_fp32(load_u16(v.bias_fp16, n));
  }
  return q;
}

detail::PackedLayer QLinear::packed() const {
  detail::PackedLayer p;
  p.bits = bits_;
  p.zero_offset = zero_offset_;
  p.n = n_;
  p.n_blocks = n_ / kBlockN;
  p.kp = kp_;
  p.n_units = kp_ / kUnitK;
  p.n_seg = static_cast<int64_t>(segs_.size());
  p.words = words_.data();
  p.scales = scales_.data();
  p.zeros = zeros_.data();
  p.segs = segs_.data();
  p.unit_seg = unit_seg_.data();
  return p;
}

void QLinear::check_forward(const float* x, int64_t m, const float* y) const {
  if (m < 0)
    throw Error(ErrorKind::kArgument,
                fmt::format("layer '{}': forward with m = {} rows", name_, m));
  if (words_.empty()) throw Error(ErrorKind::kArgument, "forward() on an empty QLinear");
  if (m > 0 && (x == nullptr || y == nullptr)) {
    throw Error(ErrorKind::kArgument, fmt::format("layer '{}': forward with a null x or y", name_));
  }
}

// Temporaries of one forward call: from the caller's arena when it passes one (released when the
// call returns), else from vectors owned here.
class detail::Temps {
 public:
  explicit Temps(Arena* a) : arena_(a), mark_(a ? a->mark() : 0) {}
  ~Temps() {
    if (arena_) arena_->release(mark_);
  }
  Temps(const Temps&) = delete;
  Temps& operator=(const Temps&) = delete;
  template <typename T>
  T* get(int64_t count) {
    if (arena_) return arena_->take<T>(static_cast<size_t>(count));
    own_.emplace_back(static_cast<size_t>(count) * sizeof(T) / sizeof(float) + 1);
    return reinterpret_cast<T*>(own_.back().data());
  }

 private:
  Arena* arena_;
  size_t mark_;
  std::vector<std::vector<float>> own_;
};

namespace {

// Layers of one forward_shared_input call that run in one parallel region.
constexpr size_t kMaxSharedLayers = 8;

}  // namespace

// x in packed input order [m, kp]: gathered for act-order and padded groups, else x itself.
const float* QLinear::packed_input(const float* x, int64_t m, detail::Temps& temps) const {
  if (perm_.empty()) return x;
  float* buf = temps.get<float>(m * kp_);
  for (int64_t r = 0; r < m; ++r) {
    const float* xr = x + r * k_;
    float* out = buf + r * kp_;
    for (int64_t i = 0; i < kp_; ++i) out[i] = perm_[i] >= 0 ? xr[perm_[i]] : 0.0f;
  }
  return buf;
}

size_t QLinear::scratch_bytes(int64_t m) const {
  const size_t rows = static_cast<size_t>(std::max<int64_t>(m, 0));
  const size_t units = static_cast<size_t>(kp_ / kUnitK), seg = segs_.size(), kp = static_cast<size_t>(kp_);
  size_t b = perm_.empty() ? 0 : Arena::round_up(rows * kp * sizeof(float));
  // The int16 kernels' rounded activations and unit scales, and the group sums.
  const size_t i16 = Arena::round_up(rows * units * detail::kPairsPerUnit * sizeof(int32_t)) +
                     Arena::round_up(rows * units * sizeof(float)) + Arena::round_up(rows * seg * sizeof(float));
  if (m <= detail::kGemvMaxRows) {
    // Those of the int16 decode, or the 3-bit decode's scaled activations and group sums.
    b += std::max(i16, Arena::round_up(rows * kp * sizeof(float)) + Arena::round_up(rows * seg * sizeof(float)));
  } else {
    // By what the CPU has, not the active ISA (tests switch ISAs): the AVX-512 int16 prefill's,
    // or the AMX GEMM's split activations.
    size_t extra = cpu_supports(Isa::kAvx512) ? i16 : 0;
    if (m >= detail::kAmxMinRows && cpu_supports(Isa::kAmx)) {
      extra = std::max(extra, Arena::round_up(static_cast<size_t>(detail::qgemm_amx_scratch_elems(m, kp_)) *
                                              sizeof(uint16_t)));
    }
    b += extra;
  }
  return b;
}

bool QLinear::uses_int16_decode(Isa isa, int64_t m) const {
  return uses_avx2(isa) && m >= 1 && m <= detail::kGemvMaxRows && bits_ != 3;
}

// Prefill at the AVX-512 levels (below the AMX kernel's rows where the CPU has AMX), 2/4/8 bits:
// the decode kernel's int16 activations over all rows (qgemm_i16_avx512).
bool QLinear::uses_int16_prefill(Isa isa, int64_t m) const {
  if (!uses_avx512(isa) || m <= detail::kGemvMaxRows || bits_ == 3) return false;
  return !(isa == Isa::kAmx && m >= detail::kAmxMinRows && request_amx_tile_permission());
}

void QLinear::add_bias(int64_t m, float* y) const {
  if (bias_.empty()) return;
  for (int64_t r = 0; r < m; ++r) {
    float* yr = y + r * n_;
    for (int64_t n = 0; n < n_; ++n) yr[n] += bias_[n];
  }
}

// One layer's share of an int16 decode call: its rounded activations and its output.
struct QLinear::Int16Job {
  detail::PackedLayer w;
  int32_t* xq = nullptr;  // [m, n_units, 16]
  float* d = nullptr;     // [m, n_units]
  float* sx = nullptr;    // [m, n_seg]
  float* y = nullptr;
  int64_t chunks = 0;     // of kGemvChunkBlocks blocks
};

QLinear::Int16Job QLinear::int16_job(const float* x, int64_t m, float* y, detail::Temps& temps) const {
  Int16Job job;
  job.w = packed();
  const float* xp = packed_input(x, m, temps);
  job.xq = temps.get<int32_t>(m * job.w.n_units * detail::kPairsPerUnit);
  job.d = temps.get<float>(m * job.w.n_units);
  job.sx = temps.get<float>(m * job.w.n_seg);
  if (m <= detail::kGemvMaxRows) {
    detail::qgemv_i16_prepare_avx2(job.w, xp, m, job.xq, job.d, job.sx);
  } else {
    const detail::PackedLayer& w = job.w;
    const int64_t x_stride = w.n_units * detail::kPairsPerUnit;
    core::parallel_for(m, [&](int64_t r0, int64_t r1) {
      detail::qgemv_i16_prepare_avx2(w, xp + r0 * w.kp, r1 - r0, job.xq + r0 * x_stride,
                                     job.d + r0 * w.n_units, job.sx + r0 * w.n_seg);
    });
  }
  job.y = y;
  job.chunks = (job.w.n_blocks + detail::kGemvChunkBlocks - 1) / detail::kGemvChunkBlocks;
  return job;
}

// All jobs' chunks in one parallel region, taken dynamically: layers that share an input (q/k/v,
// gate/up) cost one fork and one join instead of one each, and a small layer (k, v) no longer
// leaves a core idle at its end.
void QLinear::run_int16_jobs(std::span<Int16Job> jobs, int64_t m, Isa isa) {
  int64_t total = 0;
  for (const auto& j : jobs) total += j.chunks;
  const bool vnni = isa == Isa::kAvxVnni;
  const bool avx512 = uses_avx512(isa);
  core::parallel_for_dynamic(total, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      size_t i = 0;
      int64_t local = c;
      while (local >= jobs[i].chunks) local -= jobs[i++].chunks;
      Int16Job& j = jobs[i];
      const int64_t b0 = local * detail::kGemvChunkBlocks;
      const int64_t b1 = std::min(j.w.n_blocks, b0 + detail::kGemvChunkBlocks);
      if (avx512) {
        detail::qgemv_i16_avx512(j.w, j.xq, j.d, j.sx, m, j.y, b0, b1);
      } else if (vnni) {
        detail::qgemv_i16_avxvnni(j.w, j.xq, j.d, j.sx, m, j.y, b0, b1);
      } else {
        detail::qgemv_i16_avx2(j.w, j.xq, j.d, j.sx, m, j.y, b0, b1);
      }
    }
  });
}

// Tasks of up to 64 rows by 16 blocks (128 columns), taken dynamically: enough of them for two
// threads even on a 256-column layer (k_proj, v_proj of the 1.1B shape) at 128 rows.
void QLinear::run_int16_prefill(const Int16Job& j, int64_t m) {
  constexpr int64_t kRows = 64, kBlocks = 16;
  const int64_t row_tasks = (m + kRows - 1) / kRows;
  const int64_t col_tasks = (j.w.n_blocks + kBlocks - 1) / kBlocks;
  core::parallel_for_dynamic(row_tasks * col_tasks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r0 = (t / col_tasks) * kRows, b0 = (t % col_tasks) * kBlocks;
      detail::qgemm_i16_avx512(j.w, j.xq, j.d, j.sx, j.y, r0, std::min(m, r0 + kRows), b0,
                               std::min(j.w.n_blocks, b0 + kBlocks));
    }
  });
}

void QLinear::forward(const float* x, int64_t m, float* y, Arena* scratch) const {
  check_forward(x, m, y);
  if (m == 0) return;
  const Isa isa = active_isa();
  detail::Temps temps(scratch);
  if (uses_int16_decode(isa, m)) {
    // Decode, 2/4/8 bits: activations rounded to 16-bit integers per unit (qgemm_kernels.h).
    Int16Job job = int16_job(x, m, y, temps);
    run_int16_jobs(std::span<Int16Job>(&job, 1), m, isa);
    add_bias(m, y);
    return;
  }
  if (uses_int16_prefill(isa, m)) {
    const Int16Job job = int16_job(x, m, y, temps);
    run_int16_prefill(job, m);
    add_bias(m, y);
    return;
  }
  const detail::PackedLayer w = packed();
  const float* xp = packed_input(x, m, temps);
  if (uses_avx2(isa) && m <= detail::kGemvMaxRows) {
    // Decode, 3 bits (whose codes straddle 16-bit halves): fp32 activations times a
    // per-position power of two (qlayout.h), and the sum of x over each group (summed in double,
    // in order; O(K), negligible next to the O(N K) kernel).
    float* xs = temps.get<float>(m * kp_);
    float* sx = temps.get<float>(m * w.n_seg);
    for (int64_t r = 0; r < m; ++r) {
      const float* xr = xp + r * kp_;
      float* xsr = xs + r * kp_;
      for (int64_t i = 0; i < kp_; ++i) xsr[i] = xr[i] * x_scale_[i % kUnitK];
      for (int64_t s = 0; s < w.n_seg; ++s) {
        double sum = 0;
        for (int64_t i = segs_[s].unit_begin * int64_t{kUnitK};
             i < segs_[s].unit_end * int64_t{kUnitK}; ++i)
          sum += xr[i];
        sx[r * w.n_seg + s] = static_cast<float>(sum);
      }
    }
    detail::qgemv_avx2(w, xs, sx, m, y);
  } else if (isa == Isa::kAmx && m >= detail::kAmxMinRows && request_amx_tile_permission()) {
    uint16_t* xa = temps.get<uint16_t>(detail::qgemm_amx_scratch_elems(m, kp_));
    detail::qgemm_amx(w, xp, m, y, xa);
  } else if (uses_avx512(isa)) {
    detail::qgemm_avx512(w, xp, m, y);
  } else if (uses_avx2(isa)) {
    detail::qgemm_avx2(w, xp, m, y);
  } else {
    detail::qgemm_scalar(w, xp, m, y);
  }
  add_bias(m, y);
}

void QLinear::forward_shared_input(std::span<const QLinear* const> layers, const float* x,
                                   int64_t m, std::span<float* const> ys, Arena* scratch) {
  if (layers.size() != ys.size()) {
    throw Error(ErrorKind::kArgument,
                fmt::format("forward_shared_input: {} layers but {} outputs", layers.size(),
                            ys.size()));
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    layers[i]->check_forward(x, m, ys[i]);
    if (layers[i]->k_ != layers[0]->k_) {
      throw Error(ErrorKind::kArgument,
                  fmt::format("forward_shared_input: layer '{}' has K = {}, layer '{}' K = {}",
                              layers[i]->name_, layers[i]->k_, layers[0]->name_, layers[0]->k_));
    }
  }
  if (m == 0) return;
  if (layers.size() > kMaxSharedLayers) {
    for (size_t i = 0; i < layers.size(); ++i) layers[i]->forward(x, m, ys[i], scratch);
    return;
  }
  const Isa isa = active_isa();
  detail::Temps temps(scratch);
  std::array<Int16Job, kMaxSharedLayers> jobs;
  size_t n_jobs = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i]->uses_int16_decode(isa, m)) {
      jobs[n_jobs++] = layers[i]->int16_job(x, m, ys[i], temps);
    } else {
      layers[i]->forward(x, m, ys[i], scratch);
    }
  }
  if (n_jobs > 0) run_int16_jobs(std::span<Int16Job>(jobs.data(), n_jobs), m, isa);
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i]->uses_int16_decode(isa, m)) layers[i]->add_bias(m, ys[i]);
  }
}

void QLinear::row(int64_t, float*) const {
  throw Error(ErrorKind::kUnsupported, fmt::format("layer '{}': row lookup in a quantized linear", name_));
}

size_t QLinear::weight_bytes() const {
  return words_.size() * sizeof(uint32_t) + scales_.size() * sizeof(uint16_t) +
         zeros_.size() * sizeof(uint8_t);
}

std::vector<float> QLinear::dequantize() const {
  std::vector<float> w(static_cast<size_t>(n_ * k_), 0.0f);  // [N, K]
  const detail::PackedLayer p = packed();
  const int64_t unit_words = int64_t{bits_} * kBlockN;
  for (int64_t blk = 0; blk < p.n_blocks; ++blk) {
    for (int64_t u = 0; u < p.n_units; ++u) {
      const uint32_t* unit = words_.data() + (blk * p.n_units + u) * unit_words;
      for (int kk = 0; kk < kUnitK; ++kk) {
        const int64_t kp = u * kUnitK + kk;
        const int64_t k = perm_.empty() ? kp : perm_[kp];
        if (k < 0) continue;
        for (int lane = 0; lane < kBlockN; ++lane) {
          const int64_t meta = (blk * p.n_seg + unit_seg_[u]) * kBlockN + lane;
          const float scale = core::fp16_to_fp32(scales_[meta]);
          const int zero = zeros_[meta] + zero_offset_;
          const int code = static_cast<int>(detail::get_code(unit, lane, bits_, kk));
          w[(blk * kBlockN + lane) * k_ + k] = scale * static_cast<float>(code - zero);
        }
      }
    }
  }
  return w;
}

}  // namespace gptq::backend
