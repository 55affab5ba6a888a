// Picking the next token from logits.
#pragma once

#include <cstdint>
#include <random>

#include "gptq/generate.h"

namespace gptq::api {

// Greedy when opts.temperature <= 0 (ties: the lowest id); otherwise temperature, then top-k,
// then top-p (nucleus), then a draw from rng. logits has `vocab` entries and is modified.
int32_t sample_token(float* logits, int64_t vocab, const GenerateOptions& opts, std::mt19937_64& rng);

}  // namespace gptq::api
