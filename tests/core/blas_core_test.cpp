// core::blas_coretype_for: which OpenBLAS core choices are fallbacks worth correcting.
#include <gtest/gtest.h>

#include "core/gemm.h"

namespace gptq::core {
namespace {

TEST(BlasCoretype, PreAvx2CoresOnAVectorCpuGetTheMatchingKernels) {
  // OpenBLAS's fallback and other pre-AVX2 cores, in the case it prints them.
  for (const char* old : {"Prescott", "Core2", "Penryn", "Nehalem", "Sandybridge", "Atom", "Bulldozer"}) {
    EXPECT_EQ(blas_coretype_for(old, true, true), "SkylakeX") << old;
    EXPECT_EQ(blas_coretype_for(old, true, false), "Haswell") << old;
  }
  EXPECT_EQ(blas_coretype_for("PRESCOTT", true, false), "Haswell");  // case does not matter
}

TEST(BlasCoretype, GoodOrUnknownCoresAndCpusWithoutAvx2AreLeftAlone) {
  for (const char* good : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", "SomeFutureCore", ""}) {
    EXPECT_EQ(blas_coretype_for(good, true, true), "") << good;
    EXPECT_EQ(blas_coretype_for(good, true, false), "") << good;
  }
  // Without AVX2, Prescott may be the right choice: nothing to correct.
  EXPECT_EQ(blas_coretype_for("Prescott", false, false), "");
  EXPECT_EQ(blas_coretype_for("Nehalem", false, false), "");
}

}  // namespace
}  // namespace gptq::core
