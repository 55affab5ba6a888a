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
// value is w_c + (1 / R[c,c]) sum_{i<m} (w_i - q_i) R[i,c]. Writing B = [m, K) and R~ = R D^-1
// (D = diag R, so R~ is unit upper triangular), one finds textbook_B - w_B = (ours_B - w_B)
// R~[B,B]^-1, and because R~ is triangular, the columns [m, e) need only R~[m:e, m:e]. So at a
// block start that opens groups, one triangular product over the columns those groups cover
// converts our values to the textbook ones (N (e-m)^2 flops: ~3% of the updates' flops for
// g = 128, none at m = 0).
//
// The blocked walk. Columns go in blocks of block_size (B, default 128); inside a block, each row
// runs the column-by-column feedback on its own slice of W (rows are independent, so the rows are
// split across threads and the result does not depend on the split). The updates of later
// columns are deferred and applied as sgemm C += D R~ with D = W - Q of the block's columns and
// R~[i,j] = R[i,j] / R[j,j]. To give sgemm a deeper inner dimension than B (its speed on this
// kind of CPU goes from ~125 to ~150 GFLOP/s between k = 128 and k = 512), blocks are grouped
// into superblocks of ~512 columns: after a block, only the rest of its superblock is updated
// (k = B); after a superblock, everything to its right (k = 512). Group parameters must see a
// group's columns with all earlier blocks' updates applied; when a group reaches past the
// superblock while updates are pending, the pending updates are flushed first.
//
// Determinism: per-row work is independent of the thread split; OpenBLAS's sgemm splits only M
// and N between threads, never the inner dimension, so each output element sums the same
// products in the same order for any thread count (tests/quant checks 1 vs 2 threads bitwise).
#include <cblas.h>
#include <fmt/format.h>
#include <lapacke.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

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

// C [m, n] (ldc) += A [m, kk] (lda) * B [kk, n] (ldb), all row-major fp32.
void gemm_acc(int64_t m, int64_t n, int64_t kk, const float* a, int64_t lda, const float* b,
              int64_t ldb, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(kk), 1.0f, a, static_cast<blasint>(lda),
              b, static_cast<blasint>(ldb), 1.0f, c, static_cast<blasint>(ldc));
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
  if (f.desc_act != p.desc_act || f.damp_percent != p.damp_percent ||
      f.damp_step != p.damp_step) {
    throw Error(ErrorKind::kArgument,
                fmt::format("GPTQ: the Hessian factor was prepared with desc_act {}, "
                            "damp_percent {}, damp_step {}; the params ask for {}, {}, {}",
                            f.desc_act, f.damp_percent, f.damp_step, p.desc_act, p.damp_percent,
                            p.damp_step));
  }
  detail::check_weight_finite(w, n, k);

  const detail::Grid grid = detail::make_grid(p.bits, p.sym, p.mse);
  const int64_t g = p.group_size == -1 ? k : p.group_size;
  const int64_t groups = (k + g - 1) / g;
  const bool static_groups = p.static_groups;
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

  // Row of scales/zeros used by processing column j: static groups keep the original column's
  // group; otherwise groups are formed in processing order (SPEC §1 g_idx).
  std::vector<int32_t> gid(static_cast<size_t>(k));
  for (int64_t j = 0; j < k; ++j) {
    gid[j] = static_cast<int32_t>((static_groups ? perm[j] : j) / g);
    r.g_idx[perm[j]] = gid[j];
  }

  const auto t_blocks0 = Clock::now();
  double update_seconds = 0, update_flops = 0;
  std::vector<int64_t> bad_group(static_cast<size_t>(n), -1);

  // wp [N, K]: the weight as it came in, in processing order with dead columns zeroed (w itself
  // when that changes nothing). wc: the working copy that the updates go into.
  bool as_is = f.dead_columns == 0;
  for (int64_t j = 0; j < k && as_is; ++j) as_is = perm[j] == j;
  std::vector<float> wp_store;
  if (!as_is) wp_store.resize(static_cast<size_t>(n * k));
  std::vector<float> wc(static_cast<size_t>(n * k));
  core::parallel_for(n, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const float* src = w + row * k;
      float* dst = wc.data() + row * k;
      if (as_is) {
        std::copy(src, src + k, dst);
        continue;
      }
      for (int64_t j = 0; j < k; ++j) dst[j] = dead[perm[j]] ? 0.0f : src[perm[j]];
      std::copy(dst, dst + k, wp_store.data() + row * k);
    }
  });
  const float* wp = as_is ? w : wp_store.data();

  // Step 2: static groups from the original W (dead columns zeroed), original column order.
  if (static_groups) {
    core::parallel_for(n, [&](int64_t begin, int64_t end) {
      std::vector<float> seg(static_cast<size_t>(g));
      for (int64_t row = begin; row < end; ++row) {
        for (int64_t grp = 0; grp < groups; ++grp) {
          const int64_t c0 = grp * g, c1 = std::min(k, c0 + g);
          for (int64_t c = c0; c < c1; ++c) seg[c - c0] = dead[c] ? 0.0f : w[row * k + c];
          const detail::GroupParams gp = detail::find_params(seg.data(), c1 - c0, grid);
          if (!std::isfinite(gp.scale) && bad_group[row] < 0) bad_group[row] = grp;
          r.scales[grp * n + row] = gp.scale;
          r.zeros[grp * n + row] = gp.zero;
        }
      }
    });
  }

  // Group columns in textbook form (see the file comment): gv [N, len] and the inverse of the
  // unit triangular R~ block that converts them, tri [len, len].
  std::vector<float> gv, tri;
  // d [N, sb_width]: W - Q (original W) of the current superblock's columns, the left operand of
  // the deferred updates.
  std::vector<float> d(static_cast<size_t>(n * sb_width));
  std::vector<double> row_loss(static_cast<size_t>(n), 0.0);
  int64_t sb_start = 0, sb_end = std::min(k, sb_width);

  // Applies the pending updates of columns [sb_start, upto) to all columns from sb_end on.
  auto flush_far = [&](int64_t upto) {
    if (sb_end < k && upto > sb_start) {
      const auto t = Clock::now();
      gemm_acc(n, k - sb_end, upto - sb_start, d.data(), sb_width, rs + sb_start * k + sb_end, k,
               wc.data() + sb_end, k);
      update_seconds += seconds_since(t);
      update_flops += 2.0 * n * (k - sb_end) * (upto - sb_start);
    }
  };

  for (int64_t i1 = 0; i1 < k; i1 += bs) {
    const int64_t i2 = std::min(k, i1 + bs);
    if (i1 == sb_end) {  // the previous superblock is done
      flush_far(i1);
      sb_start = i1;
      sb_end = std::min(k, i1 + sb_width);
    }
    // Groups starting in this block read W[:, s : s+g] as of the block start, in textbook form:
    // wp + (wc - wp) R~[i1:reach, i1:reach]^-1 (file comment). Before any update (i1 = 0) that
    // is wc itself.
    const int64_t first_group = static_groups ? k : (i1 + g - 1) / g * g;
    const bool opens_groups = first_group < i2;
    bool convert = false;
    int64_t len = 0;
    if (opens_groups) {
      int64_t reach = 0;
      for (int64_t s = first_group; s < i2; s += g) reach = std::max(reach, std::min(k, s + g));
      if (reach > sb_end && i1 > sb_start) {  // columns past sb_end lack [sb_start, i1)
        flush_far(i1);
        sb_start = i1;
        sb_end = std::min(k, i1 + sb_width);
      }
      convert = i1 > 0;
      len = reach - i1;
    }
    if (convert) {
      // tri = R~[i1:reach, i1:reach]^-1 (unit upper). Row-major upper is column-major lower,
      // which is how LAPACK sees it; an explicit inverse and one strmm are ~2.5x faster here
      // than strsm, and only the group parameters read the result.
      tri.assign(static_cast<size_t>(len * len), 0.0f);
      for (int64_t a = 0; a < len; ++a) {
        const float* src = rs + (i1 + a) * k + i1;
        std::copy(src + a + 1, src + len, tri.data() + a * len + a + 1);
      }
      LAPACKE_strtri(LAPACK_COL_MAJOR, 'L', 'U', static_cast<lapack_int>(len), tri.data(),
                     static_cast<lapack_int>(len));
      gv.resize(static_cast<size_t>(n * len));
      core::parallel_for(n, [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          const float* a = wc.data() + row * k + i1;
          const float* b = wp + row * k + i1;
          float* out = gv.data() + row * len;
          for (int64_t j = 0; j < len; ++j) out[j] = a[j] - b[j];
        }
      });
      cblas_strmm(CblasRowMajor, CblasRight, CblasUpper, CblasNoTrans, CblasUnit,
                  static_cast<blasint>(n), static_cast<blasint>(len), 1.0f, tri.data(),
                  static_cast<blasint>(len), gv.data(), static_cast<blasint>(len));
    }

    // Per row: the parameters of the groups this block opens, then the column-by-column
    // feedback inside the block.
    core::parallel_for(n, [&](int64_t begin, int64_t end) {
      std::vector<float> seg(static_cast<size_t>(convert ? g : 0));
      for (int64_t row = begin; row < end; ++row) {
        float* wr = wc.data() + row * k;
        for (int64_t s = opens_groups ? first_group : i2; s < i2; s += g) {
          const int64_t grp = s / g, cnt = std::min(k, s + g) - s;
          const float* vals = wr + s;
          if (convert) {
            const float* a = gv.data() + row * len + (s - i1);
            const float* b = wp + row * k + s;
            for (int64_t c = 0; c < cnt; ++c) seg[c] = a[c] + b[c];
            vals = seg.data();
          }
          const detail::GroupParams gp = detail::find_params(vals, cnt, grid);
          if (!std::isfinite(gp.scale) && bad_group[row] < 0) bad_group[row] = grp;
          r.scales[grp * n + row] = gp.scale;
          r.zeros[grp * n + row] = gp.zero;
        }

        const float* orig = wp + row * k;
        float* dr = d.data() + row * sb_width;  // dr[i - sb_start] for column i
        uint8_t* codes = r.codes.data() + row * k;
        double loss = 0;
        for (int64_t i = i1; i < i2; ++i) {
          const int64_t gi = gid[i] * n + row;
          const float scale = r.scales[gi];
          const int32_t zero = r.zeros[gi];
          const float cur = wr[i];
          const int32_t q = detail::quant_code(cur, scale, zero, grid.maxq);
          const float qv = detail::dequant_value(q, scale, zero);
          codes[perm[i]] = static_cast<uint8_t>(q);
          const float delta = orig[i] - qv;
          dr[i - sb_start] = delta;
          const double e = static_cast<double>(cur - qv) * rd[i];  // (w' - q) / d
          loss += e * e;
          const float* ri = rs + i * k;
          for (int64_t j = i + 1; j < i2; ++j) wr[j] += delta * ri[j];
        }
        row_loss[row] += loss;
      }
    });

    // The rest of the superblock gets this block's updates now.
    if (i2 < sb_end) {
      const auto t = Clock::now();
      gemm_acc(n, sb_end - i2, i2 - i1, d.data() + (i1 - sb_start), sb_width, rs + i1 * k + i2, k,
               wc.data() + i2, k);
      update_seconds += seconds_since(t);
      update_flops += 2.0 * n * (sb_end - i2) * (i2 - i1);
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
