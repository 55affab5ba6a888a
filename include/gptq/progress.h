// Progress of long work (loading, calibration, quantization, perplexity), reported through a
// callback so that the library never decides how or whether to draw it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace gptq {

struct Progress {
  std::string stage;  // "quantize", "perplexity", ...
  int64_t done = 0;   // units finished so far
  int64_t total = 0;  // units in all (layers, windows)
  std::string item;   // what is being worked on now, e.g. "layer 3 mlp.down_proj"
};

using ProgressCallback = std::function<void(const Progress&)>;

// A callback that draws one updating line on stderr with elapsed time and an estimate of the
// time left, only when stderr is a terminal (silent in a pipe or a log file). Redraws at most
// ten times a second.
ProgressCallback terminal_progress();

}  // namespace gptq
