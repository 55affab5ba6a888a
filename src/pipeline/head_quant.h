// The output projection (lm_head) rounded to 8 bits at load time, an opt-in for decode speed.
//
// GPTQ checkpoints keep the lm_head in 16 bits; it is then the largest single read of a decode
// step (131 MB of 770 for TinyLlama-1.1B at 4 bits). Rounding it to nearest 8-bit codes with
// symmetric fp16 scales per group of 128 inputs halves that read, at a cost in logits far below
// the 4-bit layers' own error (measured in the README). It runs on the same 8-bit kernels as a
// GPTQ checkpoint's layers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "backend/linear.h"

namespace gptq::pipeline {

// W [n, k] fp32 row-major -> an 8-bit QLinear (round to nearest, symmetric, groups of 128 inputs,
// or 32 when k is not a multiple of 128). Error(kShape) naming `name` when n or k is not a
// multiple of 32 (the kernels' requirement).
backend::LinearPtr round_to_8bit(const float* w, int64_t n, int64_t k, const std::string& name);

}  // namespace gptq::pipeline
