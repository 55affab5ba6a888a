// GPTQ for one linear layer (SPEC §3): Hessian preparation and the blocked solver.
//
// Notation: W [N, K] row-major, columns processed in the order perm (act-order) or 0..K-1.
// Everything below is in processing order unless it says "original".
//
// The factorization. The textbook algorithm uses U, the upper Cholesky factor of H^-1
// (H^-1 = U^T U), and after quantizing column i updates every later column j by
// -err_i * U[i,j] with err_i = (w'_i - q_i) / U[i,i]. Let R = U^-1 (upper triangular), so
// H = R R^T. Unrolling the updates: w'_j = w_j - sum_{i<j} err_i U[i,j], and w'_j - q_j =
// err_j U[j,j], hence W - Q = E U, i.e. E = (W - Q) R with W the weight as it came in. Putting
// that back: w'_j = w_j + (1 / R[j,j]) * sum_{i<j} (w_i - q_i) R[i,j]. So the solver needs R only:
// R = J L J where J reverses the order and L is the lower Cholesky factor of J H J. That is one
// dpotrf (K^3/3 flops) instead of dpotrf + dpotri + dpotrf (K^3 flops), and no explicit inverse.
// We factor in double: whether Cholesky succeeds decides the damping, and an fp32 factorization
// of a badly conditioned H (cond ~1e5 is common even after 1% damping) loses ~cond * 6e-8 of its
// accuracy and can fail where the true matrix is positive definite. R[i,j] / R[j,j] is then
// rounded to fp32 for the updates, whose error no longer grows with the condition number since
// no inverse is formed. test_quant checks the result against a textbook double implementation
// (explicit inverse, Cholesky of the inverse, unblocked).
//
// That identity holds for the value a column has when it is quantized, not for the partially
// updated values of later columns, which the group parameters read: after the columns before m
// are done, the textbook W'[:, c] (c >= m) is w_c - sum_{i<m} err_i U[i,c], while our running
// value is w_c + s_c with s_c = (1 / R[c,c]) sum_{i<m} (w_i - q_i) R[i,c]. Writing B = [m, K) and
// R~ = R D^-1 (D = diag R, so R~ is unit upper triangular), one finds textbook_B - w_B =
// s_B R~[B,B]^-1, and because R~ is triangular, the columns [m, e) need only R~[m:e, m:e]. So at
// a block start that opens groups, one product with that block's inverse converts our values to
// the textbook ones (N (e-m)^2 flops: ~3% of the updates' flops for g = 128, none at m = 0).
//
// The blocked walk. Columns go in blocks of block_size (B, default 128). We keep W as it came in
// (wp) and the sum of the updates each column has received (S). Inside a block, each row runs
// the column-by-column feedback on its own slice; the updates of later columns are deferred and
// applied as sgemm S += D R~ with D = W - Q of the block's columns. To give sgemm a deeper inner
// dimension than B, blocks are grouped into superblocks of ~512 columns: after a block, only the
// rest of its superblock is updated (k = B); after a superblock, everything to its right
// (k = 512). Group parameters must see a group's columns with all earlier blocks' updates
// applied; when a group reaches past the superblock while updates are pending, the pending
// updates are flushed first. This schedule depends only on K, B and g, so it is planned once,
// with the triangular inverses it needs.
//
// The column-by-column feedback is latency-bound: each column's quantization waits for the
// previous column's update (divide, round, convert, multiply-add: ~40 cycles). So 16 rows run
// side by side as SIMD lanes over a packed copy of the block's R~ (in place its rows lie K floats
// apart, all in one L1 set, and thrash it).
//
// Threads and determinism. Every sgemm goes through core::sgemm_deterministic, which cuts the
// output rows into panels fixed by the shape and runs each panel single-threaded, so each output
// sums the same products in the same order for any thread count (OpenBLAS's own threading does
// not guarantee that; see core/gemm.h). The per-row work runs in one parallel loop per block over fixed 16-row groups, and each
// row's arithmetic does not depend on which thread does it. tests/quant checks 1, 2 and 3 threads
// bitwise.
#include <fmt/format.h>
#include <lapacke.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "core/gemm.h"
#include "core/log.h"
#include "core/parallel.h"
#include "gptq/error.h"
#include "quant/grid.h"
#include "quant/quantizer.h"

namespace gptq::quant {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Superblock width target, in columns (see the file comment).
constexpr int64_t kSuperblockCols = 512;
// Rows that run side by side in the column-by-column feedback (see the file comment).
constexpr int kLanes = 16;

// One block of the walk, planned from K, B and g alone.
struct Step {
  int64_t i1 = 0, i2 = 0;            // the block's columns
  int64_t sb_start = 0, sb_end = 0;  // its superblock (D column 0 is column sb_start)
  // Before the block: apply D columns [0, far_cnt) (columns far_row0...) to columns far_col0..K.
  bool far = false;
  int64_t far_row0 = 0, far_cnt = 0, far_col0 = 0;
  // Groups opened by the block: starts first_group, first_group + g, ... < i2.
  bool opens_groups = false;
  int64_t first_group = 0;
  // Textbook group values for columns [i1, i1 + len): wp + S[:, i1:i1+len] tri, with
  // tri = R~[i1:i1+len, i1:i1+len]^-1.
  bool convert = false;
  int64_t len = 0;
  std::vector<float> tri;   // [len, len] row-major, unit upper triangular (zeros below)
  std::vector<float> rblk;  // [i2-i1, i2-i1] R~[i1:i2, i1:i2], packed
};

std::vector<Step> plan(int64_t k, int64_t bs, int64_t g, int64_t sb_width, bool static_groups,
                       const float* rs) {
  std::vector<Step> steps;
  int64_t sb_start = 0, sb_end = std::min(k, sb_width);
  for (int64_t i1 = 0; i1 < k; i1 += bs) {
    Step st;
    st.i1 = i1;
    st.i2 = std::min(k, i1 + bs);
    auto flush_before = [&] {
      st.far = true;
      st.far_row0 = sb_start;
      st.far_cnt = i1 - sb_start;
      st.far_col0 = sb_end;
      sb_start = i1;
      sb_end = std::min(k, i1 + sb_width);
    };
    if (i1 == sb_end) flush_before();  // the previous superblock is done
    st.first_group = static_groups ? k : (i1 + g - 1) / g * g;
    st.opens_groups = st.first_group < st.i2;
    if (st.opens_groups) {
      int64_t reach = 0;
      for (int64_t s = st.first_group; s < st.i2; s += g) reach = std::max(reach, std::min(k, s + g));
      if (reach > sb_end && i1 > sb_start) flush_before();  // columns past sb_end lack updates
      st.convert = i1 > 0;  // before any update, S is zero and wp is the answer
      st.len = reach - i1;
    }
    if (st.convert) {
      // Row-major upper is column-major lower, which is how LAPACK sees it.
      const int64_t len = st.len;
      st.tri.assign(static_cast<size_t>(len * len), 0.0f);
      for (int64_t a = 0; a < len; ++a) {
        const float* src = rs + (i1 + a) * k + i1;
        std::copy(src + a + 1, src + len, st.tri.data() + a * len + a + 1);
        st.tri[a * len + a] = 1.0f;
      }
      core::ScopedSingleThreadedBlas single_threaded;
      LAPACKE_strtri(LAPACK_COL_MAJOR, 'L', 'U', static_cast<lapack_int>(len), st.tri.data(),
                     static_cast<lapack_int>(len));
    }
    const int64_t sub = st.i2 - i1;
    st.rblk.resize(static_cast<size_t>(sub * sub));
    for (int64_t a = 0; a < sub; ++a) {
      std::copy(rs + (i1 + a) * k + i1, rs + (i1 + a) * k + st.i2, st.rblk.data() + a * sub);
    }
    st.sb_start = sb_start;
    st.sb_end = sb_end;
    steps.push_back(std::move(st));
  }
  return steps;
}

// What the feedback kernel reads and writes (all [N, ...] arrays at row 0, column 0).
struct FeedbackCtx {
  int64_t n, k, sb_width, sb_start;
  int maxq;
  const float* wp;           // [N, K] original values
  const float* s;            // [N, K] updates received
  float* d;                  // [N, sb_width] W - Q of the superblock
  uint8_t* codes;            // [N, K] original column order
  const float* scales;       // [G, N] fp32 scales (unrounded, see detail::GroupParams)
  const int32_t* zeros;      // [G, N]
  const int32_t* gid;        // [K] scales row of each processing column
  const int32_t* perm;       // [K]
  const float* r_diag;       // [K]
  double* row_loss;          // [N]
};

// 16 lanes as one GCC/Clang vector: the compiler lowers each operation to 4 SSE instructions on
// baseline x86-64 and keeps the lanes in registers (arrays of scalars got spilled).
using F32x16 = float __attribute__((vector_size(64)));
using I32x16 = int32_t __attribute__((vector_size(64)));
using F64x16 = double __attribute__((vector_size(128)));
static_assert(sizeof(F32x16) == kLanes * sizeof(float));

// GPTQ's column-by-column step over the block [i1, i2) for rows [row0, row0 + cnt),
// cnt <= kLanes; rblk = R~[i1:i2, i1:i2] packed. x and xo are scratch of i2 - i1 vectors.
// Lanes past cnt compute on zeros and are not stored. Every lane does exactly the scalar
// arithmetic, in the same order, so results do not depend on which rows share a call.
void feedback_lanes(const FeedbackCtx& c, int64_t row0, int cnt, int64_t i1, int64_t i2,
                    const float* rblk, F32x16* x, F32x16* xo) {
  const int64_t sub = i2 - i1;
  for (int64_t col = 0; col < sub; ++col) {  // x[col][lane]: current value, xo: original
    F32x16 a{}, b{};
    for (int l = 0; l < cnt; ++l) {
      const int64_t at = (row0 + l) * c.k + i1 + col;
      a[l] = c.wp[at];
      b[l] = c.wp[at] + c.s[at];
    }
    xo[col] = a;
    x[col] = b;
  }
  F64x16 loss{};
  const float maxq = static_cast<float>(c.maxq);
  F32x16 scale = F32x16{} + 1.0f;
  I32x16 zero{};
  int32_t scale_row = -1;  // the scales/zeros row loaded in scale/zero
  for (int64_t ci = 0; ci < sub; ++ci) {
    const int64_t i = i1 + ci;
    if (c.gid[i] != scale_row) {
      scale_row = c.gid[i];
      const int64_t gbase = static_cast<int64_t>(scale_row) * c.n + row0;
      for (int l = 0; l < cnt; ++l) {
        scale[l] = c.scales[gbase + l];
        zero[l] = c.zeros[gbase + l];
      }
    }
    const F32x16 cur = x[ci];
    // detail::quant_code on 16 lanes, operation for operation: IEEE results are the same in
    // vector and scalar form, so the lanes agree with the scalar quantizer bitwise. (Written
    // inline: a function returning a 64-byte vector changes the ABI without AVX-512.)
    F32x16 v = cur / scale;
    v = v > -512.0f ? v : F32x16{} - 512.0f;
    v = v < 512.0f ? v : F32x16{} + 512.0f;
    constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23, see detail::round_half_even
    F32x16 qf = ((v + kMagic) - kMagic) + __builtin_convertvector(zero, F32x16);
    qf = qf > 0.0f ? qf : F32x16{};
    qf = qf < maxq ? qf : F32x16{} + maxq;
    const I32x16 q = __builtin_convertvector(qf, I32x16);
    const F32x16 qv = scale * __builtin_convertvector(q - zero, F32x16);
    const F32x16 delta = xo[ci] - qv;
    const F64x16 e = __builtin_convertvector(cur - qv, F64x16) * static_cast<double>(c.r_diag[i]);
    loss += e * e;  // ((w' - q) / d)^2
    const float* ri = rblk + ci * sub;  // ri[col] = R~[i, i1 + col]
    for (int64_t col = ci + 1; col < sub; ++col) x[col] += delta * ri[col];
    // Column ci is done: keep its code and delta in the freed slots, stored row by row below
    // (16 strided stores per column would cost more than the column's arithmetic).
    x[ci] = qf;
    xo[ci] = delta;
  }
  for (int l = 0; l < cnt; ++l) {
    uint8_t* codes = c.codes + (row0 + l) * c.k;
    float* d = c.d + (row0 + l) * c.sb_width + (i1 - c.sb_start);
    for (int64_t ci = 0; ci < sub; ++ci) {
      codes[c.perm[i1 + ci]] = static_cast<uint8_t>(x[ci][l]);
      d[ci] = xo[ci][l];
    }
    c.row_loss[row0 + l] += loss[l];
  }
}

void check_hessian(const std::vector<double>& h, int64_t k) {
  if (k < 1) throw Error(ErrorKind::kArgument, fmt::format("GPTQ: K = {} must be >= 1", k));
  if (static_cast<int64_t>(h.size()) != k * k) {
    throw Error(ErrorKind::kArgument,
                fmt::format("GPTQ: Hessian holds {} values, expected K * K = {} for K = {}",
                            h.size(), k * k, k));
  }
  for (size_t i = 0; i < h.size(); ++i) {
    if (!std::isfinite(h[i])) {
      throw Error(ErrorKind::kNumeric,
                  fmt::format("GPTQ: Hessian [{}, {}] holds {} at ({}, {})", k, k,
                              std::isnan(h[i]) ? "NaN" : "Inf", static_cast<int64_t>(i) / k,
                              static_cast<int64_t>(i) % k));
    }
  }
}

}  // namespace

HessianFactor prepare_hessian(const std::vector<double>& h, int64_t k, const QuantParams& p) {
  validate(p);
  check_hessian(h, k);
  const auto t0 = Clock::now();
  HessianFactor f;
  f.k = k;
  f.desc_act = p.desc_act;
  f.damp_percent = p.damp_percent;
  f.damp_step = p.damp_step;

  // Step 1: dead inputs. Their W columns are zeroed by the solver (f.dead).
  std::vector<double> diag(static_cast<size_t>(k));
  f.dead.assign(static_cast<size_t>(k), 0);
  for (int64_t c = 0; c < k; ++c) {
    diag[c] = h[c * k + c];
    if (diag[c] == 0.0) {
      diag[c] = 1.0;
      f.dead[c] = 1;
      ++f.dead_columns;
    }
  }
  // Step 3: act-order. A stable sort, so equal diagonals keep their index order.
  f.perm.resize(static_cast<size_t>(k));
  std::iota(f.perm.begin(), f.perm.end(), 0);
  if (p.desc_act) {
    std::stable_sort(f.perm.begin(), f.perm.end(),
                     [&](int32_t a, int32_t b) { return diag[a] > diag[b]; });
  } else if (p.act_group_aware) {
    // Group-aware act-order (GPTQModel's act_group_aware): descending H[k,k] within each group;
    // whole groups ordered by their largest H[k,k]; a short last group stays last. Stable
    // sorts, so ties keep index order.
    const int64_t g = p.group_size == -1 ? k : p.group_size;
    const int64_t full = k / g, groups = (k + g - 1) / g;
    std::vector<double> gmax(static_cast<size_t>(groups), 0.0);
    for (int64_t grp = 0; grp < groups; ++grp) {
      auto b = f.perm.begin() + grp * g, e = f.perm.begin() + std::min(k, (grp + 1) * g);
      std::stable_sort(b, e, [&](int32_t a, int32_t c) { return diag[a] > diag[c]; });
      gmax[grp] = diag[*b];
    }
    std::vector<int64_t> order(static_cast<size_t>(full));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return gmax[a] > gmax[b]; });
    std::vector<int32_t> perm;
    perm.reserve(static_cast<size_t>(k));
    for (int64_t grp : order) perm.insert(perm.end(), f.perm.begin() + grp * g, f.perm.begin() + (grp + 1) * g);
    perm.insert(perm.end(), f.perm.begin() + full * g, f.perm.end());
    f.perm = std::move(perm);
    f.group_aware = g;
  }
  double mean = 0;
  for (int64_t c = 0; c < k; ++c) mean += diag[c];
  mean /= static_cast<double>(k);

  // Steps 4-5: damping and Cholesky, retried with more damping while it fails.
  // a = J Hp J + damp: a[i, j] = Hp[k-1-i, k-1-j], Hp = H in processing order. It is symmetric,
  // so the row-major fill is also its column-major layout, which is what dpotrf gets.
  std::vector<double> a(static_cast<size_t>(k * k));
  double damp = p.damp_percent;
  for (int attempt = 0;; ++attempt) {
    damp = p.damp_percent + attempt * p.damp_step;
    const double add = damp * mean;
    const int32_t* perm = f.perm.data();
    core::parallel_for(k, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t src = perm[k - 1 - i];
        const double* hr = h.data() + src * k;
        double* ar = a.data() + i * k;
        for (int64_t j = 0; j < k; ++j) ar[j] = hr[perm[k - 1 - j]];
        ar[i] = diag[src] + add;
      }
    });
    core::ScopedSingleThreadedBlas single_threaded;
    const lapack_int info =
        LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', static_cast<lapack_int>(k), a.data(),
                       static_cast<lapack_int>(k));
    if (info == 0) break;
    const double next = p.damp_percent + (attempt + 1) * p.damp_step;
    if (p.damp_step > 0 && next < 1.0) {
      core::log_warn(
          "GPTQ: Cholesky of the damped Hessian [{}, {}] failed (minor {} not positive) with "
          "damp_percent {:.4f}; retrying with damp_percent {:.4f}",
          k, k, info, damp, next);
      continue;
    }
    throw Error(ErrorKind::kNumeric,
                fmt::format("GPTQ: the Hessian [{}, {}] is not positive definite: Cholesky "
                            "failed (minor {}) with damp_percent {:.4f}, and raising it by {} "
                            "would reach 1",
                            k, k, info, damp, p.damp_step));
  }
  f.damp_used = damp;

  // R[i, j] = L[k-1-i, k-1-j], L column-major in a: L[r, c] = a[r + c * k].
  f.r_diag.resize(static_cast<size_t>(k));
  for (int64_t j = 0; j < k; ++j) f.r_diag[j] = static_cast<float>(a[(k - 1 - j) * (k + 1)]);
  f.r_scaled.assign(static_cast<size_t>(k * k), 0.0f);
  constexpr int64_t kTile = 64;  // tiles keep the strided side of the transpose in cache
  const int64_t tiles = (k + kTile - 1) / kTile;
  core::parallel_for(tiles, [&](int64_t begin, int64_t end) {
    for (int64_t ti = begin; ti < end; ++ti) {
      const int64_t i0 = ti * kTile, i1 = std::min(k, i0 + kTile);
      for (int64_t tj = ti; tj < tiles; ++tj) {
        const int64_t j0 = tj * kTile, j1 = std::min(k, j0 + kTile);
        for (int64_t j = j0; j < j1; ++j) {
          const double* col = a.data() + (k - 1 - j) * k;  // column k-1-j of L
          const double inv = 1.0 / col[k - 1 - j];
          const int64_t iend = std::min(i1, j);
          for (int64_t i = i0; i < iend; ++i) {
            f.r_scaled[i * k + j] = static_cast<float>(col[k - 1 - i] * inv);
          }
        }
      }
    }
  });
  for (int64_t j = 0; j < k; ++j) {
    if (!std::isfinite(f.r_diag[j]) || !(f.r_diag[j] > 0.0f)) {
      throw Error(ErrorKind::kNumeric,
                  fmt::format("GPTQ: the Cholesky factor of the Hessian [{}, {}] underflows fp32 "
                              "at column {} (R = {}); the Hessian is too badly scaled",
                              k, k, j, a[(k - 1 - j) * (k + 1)]));
    }
  }
  f.seconds = seconds_since(t0);
  return f;
}

QuantResult gptq_quantize(const float* w, int64_t n, int64_t k, const std::vector<double>& h,
                          const QuantParams& p) {
  validate(p);
  detail::check_shape(w, n, k);
  detail::check_weight_finite(w, n, k);
  const HessianFactor f = prepare_hessian(h, k, p);
  QuantResult r = gptq_quantize(w, n, k, f, p);
  r.stats.factor_seconds = f.seconds;
  return r;
}

QuantResult gptq_quantize(const float* w, int64_t n, int64_t k, const HessianFactor& f,
                          const QuantParams& p) {
  validate(p);
  detail::check_shape(w, n, k);
  if (f.k != k || static_cast<int64_t>(f.perm.size()) != k ||
      static_cast<int64_t>(f.r_scaled.size()) != k * k) {
    throw Error(ErrorKind::kArgument,
                fmt::format("GPTQ: the Hessian factor is for K = {}, the weight [{}, {}] has K = {}",
                            f.k, n, k, k));
  }
  const int64_t want_group_aware = p.act_group_aware ? (p.group_size == -1 ? k : p.group_size) : 0;
  if (f.desc_act != p.desc_act || f.damp_percent != p.damp_percent ||
      f.damp_step != p.damp_step || f.group_aware != want_group_aware) {
    throw Error(ErrorKind::kArgument,
                fmt::format("GPTQ: the Hessian factor was prepared with desc_act {}, "
                            "damp_percent {}, damp_step {}, group-aware order {}; the params ask "
                            "for {}, {}, {}, {}",
                            f.desc_act, f.damp_percent, f.damp_step, f.group_aware, p.desc_act,
                            p.damp_percent, p.damp_step, want_group_aware));
  }
  detail::check_weight_finite(w, n, k);

  const detail::Grid grid = detail::make_grid(p.bits, p.sym, p.mse, p.ggml_grid);
  const int64_t g = p.group_size == -1 ? k : p.group_size;
  const int64_t groups = (k + g - 1) / g;
  const bool per_row = p.group_size == -1;
  const bool static_groups = p.static_groups && !per_row;
  const int64_t bs = std::min<int64_t>(p.block_size, k);
  const int64_t sb_width =
      std::min(bs * std::max<int64_t>(1, (kSuperblockCols + bs - 1) / bs), (k + bs - 1) / bs * bs);
  const int32_t* perm = f.perm.data();
  const uint8_t* dead = f.dead.data();
  const float* rs = f.r_scaled.data();
  const float* rd = f.r_diag.data();

  QuantResult r;
  r.n = n;
  r.k = k;
  r.bits = p.bits;
  r.group_size = p.group_size;
  r.damp_used = f.damp_used;
  r.dead_columns = f.dead_columns;
  r.codes.resize(static_cast<size_t>(n * k));
  r.scales.resize(static_cast<size_t>(groups * n));
  r.zeros.resize(static_cast<size_t>(groups * n));
  r.g_idx.resize(static_cast<size_t>(k));
  std::vector<float> scales32(static_cast<size_t>(groups * n));  // [G, N] unrounded

  // Row of scales/zeros used by processing column j: static groups and the group-aware order
  // keep the original column's group; otherwise groups are formed in processing order (SPEC §1
  // g_idx).
  const bool original_groups = static_groups || f.group_aware > 0;
  std::vector<int32_t> gid(static_cast<size_t>(k));
  for (int64_t j = 0; j < k; ++j) {
    gid[j] = static_cast<int32_t>((original_groups ? perm[j] : j) / g);
    r.g_idx[perm[j]] = gid[j];
  }

  // GPTQ's loss weight of each column, 1 / U[j,j]^2 = R[j,j]^2, for the Hessian-weighted
  // search: in processing order (groups opened during the walk) and in original order (static
  // groups, whole rows).
  std::vector<float> lw, lw_orig;
  if (p.mse && p.mse_hessian) {
    lw.resize(static_cast<size_t>(k));
    lw_orig.resize(static_cast<size_t>(k));
    for (int64_t j = 0; j < k; ++j) {
      lw[j] = rd[j] * rd[j];
      lw_orig[perm[j]] = lw[j];
    }
  }
  const float* lwp = lw.empty() ? nullptr : lw.data();
  const float* lwo = lw_orig.empty() ? nullptr : lw_orig.data();

  const auto t_blocks0 = Clock::now();
  std::vector<int64_t> bad_group(static_cast<size_t>(n), -1);

  // wp [N, K]: the weight as it came in, in processing order with dead columns zeroed (w itself
  // when that changes nothing). S [N, K]: the updates each column has received so far.
  bool as_is = f.dead_columns == 0;
  for (int64_t j = 0; j < k && as_is; ++j) as_is = perm[j] == j;
  std::vector<float> wp_store;
  if (!as_is) {
    wp_store.resize(static_cast<size_t>(n * k));
    core::parallel_for(n, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const float* src = w + row * k;
        float* dst = wp_store.data() + row * k;
        for (int64_t j = 0; j < k; ++j) dst[j] = dead[perm[j]] ? 0.0f : src[perm[j]];
      }
    });
  }
  const float* wp = as_is ? w : wp_store.data();
  std::vector<float> s(static_cast<size_t>(n * k), 0.0f);

  // Step 2: static groups from the original W (dead columns zeroed), original column order.
  if (static_groups) {
    core::parallel_for(n, [&](int64_t begin, int64_t end) {
      std::vector<float> seg(static_cast<size_t>(g));
      for (int64_t row = begin; row < end; ++row) {
        for (int64_t grp = 0; grp < groups; ++grp) {
          const int64_t c0 = grp * g, c1 = std::min(k, c0 + g);
          for (int64_t c = c0; c < c1; ++c) seg[c - c0] = dead[c] ? 0.0f : w[row * k + c];
          const detail::GroupParams gp =
              detail::find_params(seg.data(), c1 - c0, grid, lwo ? lwo + c0 : nullptr);
          scales32[grp * n + row] = gp.scale;
          r.zeros[grp * n + row] = gp.zero;
        }
      }
    });
  }

  // Group size -1: one group per row, its parameters from W as given (dead columns not yet
  // zeroed; the order of columns does not matter), as the reference computes them before the
  // walk starts.
  if (per_row) {
    core::parallel_for(n, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const detail::GroupParams gp = detail::find_params(w + row * k, k, grid, lwo);
        scales32[row] = gp.scale;
        r.zeros[row] = gp.zero;
      }
    });
  }

  const std::vector<Step> steps = plan(k, bs, g, sb_width, static_groups || per_row, rs);
  int64_t max_len = 0;
  for (const Step& st : steps) max_len = std::max(max_len, st.len);
  // d [N, sb_width]: W - Q (original W) of the current superblock's columns, the left operand of
  // the deferred updates. gv [N, max_len]: S times a block's triangular inverse.
  std::vector<float> d(static_cast<size_t>(n * sb_width));
  std::vector<float> gv(static_cast<size_t>(n * max_len));
  std::vector<double> row_loss(static_cast<size_t>(n), 0.0);
  double update_seconds = 0, update_flops = 0;
  // S[:, c0 : c0 + cols] += d[:, d0 : d0 + inner] R~[r0 : r0 + inner, c0 : c0 + cols]
  auto update = [&](int64_t d0, int64_t inner, int64_t r0, int64_t c0, int64_t cols) {
    const auto t = Clock::now();
    core::sgemm_deterministic(false, false, n, cols, inner, 1.0f, d.data() + d0, sb_width,
                              rs + r0 * k + c0, k, 1.0f, s.data() + c0, k);
    update_seconds += seconds_since(t);
    update_flops += 2.0 * n * cols * inner;
  };
  const int64_t lane_groups = (n + kLanes - 1) / kLanes;
  const FeedbackCtx ctx{n,     k,           sb_width,       0,          grid.maxq,
                        wp,    s.data(),    d.data(),       r.codes.data(),
                        scales32.data(),    r.zeros.data(), gid.data(), perm,
                        rd,    row_loss.data()};

  for (const Step& st : steps) {
    const int64_t i1 = st.i1, i2 = st.i2;
    if (st.far) update(0, st.far_cnt, st.far_row0, st.far_col0, k - st.far_col0);
    if (st.convert) {  // gv = S[:, i1:i1+len] tri
      core::sgemm_deterministic(false, false, n, st.len, st.len, 1.0f, s.data() + i1, k,
                                st.tri.data(), st.len, 0.0f, gv.data(), st.len);
    }
    FeedbackCtx c = ctx;
    c.sb_start = st.sb_start;
    core::parallel_for(lane_groups, [&](int64_t begin, int64_t end) {
      std::vector<float> seg(static_cast<size_t>(g));
      std::vector<F32x16> x(static_cast<size_t>(i2 - i1)), xo(x.size());
      // Columns this block reads from wp and S: its own, and those of the groups it opens.
      const int64_t read_end = std::max(i2, i1 + st.len);
      for (int64_t lg = begin; lg < end; ++lg) {
        const int64_t r0 = lg * kLanes, r1 = std::min(n, r0 + kLanes);
        // Each block reads a short segment of every row, rows K floats apart: a pattern the
        // hardware prefetchers do not follow, so every row would wait on DRAM. Fetch the next
        // group's segments while this group computes.
        if (lg + 1 < end) {
          for (int64_t row = r1; row < std::min(n, r1 + kLanes); ++row) {
            for (int64_t col = i1; col < read_end; col += 16) {  // 16 floats per cache line
              __builtin_prefetch(wp + row * k + col);
              __builtin_prefetch(s.data() + row * k + col);
            }
          }
        }
        // Parameters of the groups this block opens, from the textbook values.
        for (int64_t row = r0; row < r1 && st.opens_groups; ++row) {
          for (int64_t s0 = st.first_group; s0 < i2; s0 += g) {
            // The group-aware order keeps groups whole (a short last group last), so the group
            // opened at processing position s0 is the original group of the column there.
            const int64_t grp = gid[s0], cnt = std::min(k, s0 + g) - s0;
            const float* vals = wp + row * k + s0;
            if (st.convert) {
              const float* a = gv.data() + row * st.len + (s0 - i1);
              for (int64_t j = 0; j < cnt; ++j) seg[j] = vals[j] + a[j];
              vals = seg.data();
            }
            const detail::GroupParams gp =
                detail::find_params(vals, cnt, grid, lwp ? lwp + s0 : nullptr);
            scales32[grp * n + row] = gp.scale;
            r.zeros[grp * n + row] = gp.zero;
          }
        }
        feedback_lanes(c, r0, static_cast<int>(r1 - r0), i1, i2, st.rblk.data(), x.data(),
                       xo.data());
      }
    });
    // The rest of the superblock gets this block's updates now.
    if (i2 < st.sb_end) update(i1 - st.sb_start, i2 - i1, i1, i2, st.sb_end - i2);
  }
  // The file's fp16 scales; an overflow is reported for the first row and group it hits.
  for (int64_t grp = 0; grp < groups; ++grp) {
    for (int64_t row = 0; row < n; ++row) {
      const float s16 = detail::scale_to_fp16(scales32[grp * n + row]);
      if (!std::isfinite(s16) && bad_group[row] < 0) bad_group[row] = grp;
      r.scales[grp * n + row] = s16;
    }
  }
  detail::throw_if_scale_overflow(bad_group.data(), n);

  double loss = 0;
  for (double l : row_loss) loss += l;
  r.loss = loss / 2;
  if (!std::isfinite(r.loss)) {
    throw Error(ErrorKind::kNumeric,
                fmt::format("GPTQ: the error feedback of weight [{}, {}] overflowed (loss {}); "
                            "the Hessian is too badly conditioned, raise damp_percent",
                            n, k, r.loss));
  }

  // Step 7: codes were written in original order; dequantize there too.
  r.dequant.resize(static_cast<size_t>(n * k));
  core::parallel_for(n, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      for (int64_t c = 0; c < k; ++c) {
        const int64_t gi = static_cast<int64_t>(r.g_idx[c]) * n + row;
        r.dequant[row * k + c] = detail::dequant_value(r.codes[row * k + c], r.scales[gi],
                                                       r.zeros[gi]);
      }
    }
  });
  r.stats.block_seconds = seconds_since(t_blocks0) - update_seconds;
  r.stats.update_seconds = update_seconds;
  r.stats.update_flops = update_flops;
  return r;
}

}  // namespace gptq::quant
