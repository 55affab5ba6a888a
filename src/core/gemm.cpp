#include "core/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <cstdlib>

#include "core/parallel.h"

extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_corename(void);
// OpenBLAS's kernel selection (driver/others/dynamic.c), exported by its DYNAMIC_ARCH builds
// (Debian's): weak, so that a build without them links and leaves the choice alone.
extern "C" void gotoblas_dynamic_init(void) __attribute__((weak));
extern "C" void gotoblas_dynamic_quit(void) __attribute__((weak));

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

namespace {

std::string g_blas_replaced;

// Runs when the library is loaded (a static object below), after OpenBLAS chose its kernels and
// before any BLAS call: where it chose pre-AVX2 ones on a CPU with AVX2 and OPENBLAS_CORETYPE is
// unset, sets the variable and has OpenBLAS choose again, as it would have at its own load.
void switch_blas_kernels() {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;  // the user's choice stands
  if (gotoblas_dynamic_init == nullptr || gotoblas_dynamic_quit == nullptr) return;
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
  const bool avx2 = false, avx512 = false;
#endif
  const std::string was = blas_core_name();
  const std::string want = blas_coretype_for(was, avx2, avx512);
  if (want.empty()) return;
  setenv("OPENBLAS_CORETYPE", want.c_str(), 1);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
  if (blas_core_name() != was) g_blas_replaced = was;
}

const struct SwitchBlasKernelsAtLoad {
  SwitchBlasKernelsAtLoad() { switch_blas_kernels(); }
} g_switch_blas_kernels;

}  // namespace

std::string blas_core_replaced() { return g_blas_replaced; }

}  // namespace gptq::core
