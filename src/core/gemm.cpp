#include "core/gemm.h"

#include <cblas.h>

#include <algorithm>

#include "core/parallel.h"

extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_corename(void);

namespace gptq::core {
namespace {

// Rows of C per panel: large enough that repacking B for each panel costs ~1/kPanelRows of the
// multiply-adds, small enough that two or more threads share typical row counts (576..8192).
constexpr int64_t kPanelRows = 64;

void sgemm_panel(bool trans_a, bool trans_b, int64_t r0, int64_t rows, int64_t n, int64_t k,
                 float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                 float beta, float* c, int64_t ldc) {
  // Rows r0.. of op(A): rows of A, or columns of A when it is transposed.
  const float* ap = trans_a ? a + r0 : a + r0 * lda;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(rows),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha, ap,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c + r0 * ldc,
              static_cast<blasint>(ldc));
}

}  // namespace

void sgemm_deterministic(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                         const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                         float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  const int64_t panels = (m + kPanelRows - 1) / kPanelRows;
  const ScopedSingleThreadedBlas single_threaded_blas;
  // Panels in turn on the pool's threads; each writes its own rows of C.
  parallel_for_dynamic(panels, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t r0 = p * kPanelRows;
      sgemm_panel(trans_a, trans_b, r0, std::min(kPanelRows, m - r0), n, k, alpha, a, lda, b,
                  ldb, beta, c, ldc);
    }
  });
}

// num_threads() first: its first call sets OpenBLAS's thread count, which would otherwise undo
// the 1 below at the first parallel loop inside the scope (and make that call's sums depend on
// OpenBLAS's thread split).
ScopedSingleThreadedBlas::ScopedSingleThreadedBlas() {
  (void)num_threads();
  openblas_set_num_threads(1);
}
ScopedSingleThreadedBlas::~ScopedSingleThreadedBlas() { openblas_set_num_threads(num_threads()); }

std::string blas_core_name() {
  const char* name = openblas_get_corename();
  return name == nullptr ? std::string() : std::string(name);
}

std::string blas_coretype_for(std::string_view core_name, bool avx2, bool avx512) {
  // OpenBLAS 0.3.21's x86-64 cores without AVX2 kernels (driver/others/dynamic.c), compared
  // without case; Prescott is its fallback for a CPU it does not recognise.
  static constexpr std::string_view kPreAvx2[] = {
      "prescott", "katmai",   "coppermine", "northwood", "core2",      "penryn",    "dunnington",
      "nehalem",  "atom",     "athlon",     "opteron",   "opteron_sse3", "barcelona", "nano",
      "bobcat",   "bulldozer", "piledriver", "steamroller", "excavator", "sandybridge", "banias",
      "unknown"};
  if (!avx2) return {};
  std::string lower(core_name);
  for (char& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  bool old = false;
  for (std::string_view n : kPreAvx2) old |= lower == n;
  if (!old) return {};
  return avx512 ? "SkylakeX" : "Haswell";
}

}  // namespace gptq::core
