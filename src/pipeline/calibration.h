// Calibration samples: token sequences fed through the model to collect GPTQ's Hessians.
#pragma once

#include <cstdint>
#include <vector>

#include "gptq/quantize.h"
#include "gptq/tokenizer.h"

namespace gptq::pipeline {

// Builds the samples described by opts (see CalibrationOptions). Each sample has 1..seqlen
// tokens, all ids < vocab. Throws Error(kArgument) for a text shorter than one window, an empty
// file, bad JSONL rows (naming the file and line) or ids outside the vocabulary.
std::vector<std::vector<int32_t>> build_calibration(const CalibrationOptions& opts, const Tokenizer& tok,
                                                    int64_t vocab, int64_t max_positions);

// The built-in calibration text used when no file is given.
const char* builtin_calibration_text();

}  // namespace gptq::pipeline
