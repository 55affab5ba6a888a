// Random-weight model folders of real shapes, for benchmarks and tests (a tool, not part of the
// library's public API): `gptq synth`, scripts/bench.sh and the tests build on it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace gptq {

// A random-weight model folder of a real shape (weights ~ N(0, 0.02), norms 1).
struct SynthOptions {
  std::filesystem::path out;
  std::string shape = "tinyllama-1.1b";  // "tinyllama-1.1b", "llama-350m", "tiny" (tests)
  std::string dtype = "bf16";            // "bf16", "fp16", "fp32"
  uint64_t seed = 0;
  int layers = 0;                        // decoder layers; 0: the shape's own count
  bool force = false;                    // replace an existing folder
};
void synthesize_model(const SynthOptions& opts);
std::vector<std::string> synth_shapes();

}  // namespace gptq
