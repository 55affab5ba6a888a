// Single-precision GEMM whose results do not depend on the thread count.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace gptq::core {

// C [m, n] = alpha * op(A) op(B) + beta * C, all row-major with leading dimensions lda, ldb,
// ldc; op(A) is [m, k] (A^T when trans_a), op(B) is [k, n] (B^T when trans_b).
//
// Bitwise the same for any thread count. OpenBLAS's own threading is not: with its Haswell and
// Zen kernels (0.3.21), a 256x256x256 sgemm on 2 threads differs from 1 thread in ~9% of the
// outputs by an ulp, since the thread split decides which outputs fall into edge tiles that sum
// in another order. So the rows of C are cut into panels whose size depends on m alone, our
// pool threads take the panels in turn, and each panel is one single-threaded sgemm (OpenBLAS
// single-threaded calls from several threads at once are safe; multi-threaded ones are not).
// Must be called from outside any parallel region, and not from two threads at once: OpenBLAS's
// thread count is process-wide and is switched to 1 for the duration of the call.
void sgemm_deterministic(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                         const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                         float* c, int64_t ldc);

// Runs OpenBLAS/LAPACK single-threaded while it lives, for LAPACK calls whose results must not
// depend on the thread count (OpenBLAS's threaded dpotrf does not guarantee it; single-threaded
// it is as fast as on two threads at K = 4096 here). Same caveats as above: not from two
// threads at once.
class ScopedSingleThreadedBlas {
 public:
  ScopedSingleThreadedBlas();
  ~ScopedSingleThreadedBlas();
  ScopedSingleThreadedBlas(const ScopedSingleThreadedBlas&) = delete;
  ScopedSingleThreadedBlas& operator=(const ScopedSingleThreadedBlas&) = delete;
};

// The name OpenBLAS gives the kernels it chose when it was loaded ("Haswell", "SkylakeX",
// "Prescott", ...; openblas_get_corename).
std::string blas_core_name();

// OpenBLAS picks its kernels from the CPU model when it is loaded; a model newer than the
// installed OpenBLAS knows (Debian's 0.3.21 on Emerald Rapids, family 6 model 207) gets its
// generic SSE3 "Prescott" kernels (sgemm 24 instead of 140 GFLOP/s on one core there). Given the
// chosen core, whether the CPU has AVX2+FMA and the AVX-512 F/BW/VL/DQ that OpenBLAS's SkylakeX
// kernels need, returns the OPENBLAS_CORETYPE value that selects the right ones ("SkylakeX" or
// "Haswell") when the core is one of OpenBLAS's pre-AVX2 ones; empty when it is not (an unknown
// name is left alone) or the CPU lacks AVX2. When this library is loaded and OPENBLAS_CORETYPE
// is unset, it applies that value (sets the variable and has OpenBLAS choose again).
std::string blas_coretype_for(std::string_view core_name, bool avx2, bool avx512);

// The kernels OpenBLAS had chosen before the load-time switch above replaced them ("Prescott"),
// or "" when they were left alone.
std::string blas_core_replaced();

}  // namespace gptq::core
