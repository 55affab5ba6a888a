// Dot product of fp32 vectors for the baseline (non-ISA-specific) code: dense_gemv's rows and the
// decode attention's scores.
#pragma once

#include <cstdint>

namespace gptq::core {

// sum_i a[i] * b[i] in eight interleaved partial sums (element i goes to partial i % 8), added
// pairwise at the end, then the tail: the compiler vectorizes the partials, and a single scalar
// chain would wait on the FMA latency at every element. The order is fixed, so results are
// deterministic.
float dot_f32(const float* a, const float* b, int64_t n);

}  // namespace gptq::core
