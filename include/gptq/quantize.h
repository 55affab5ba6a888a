// Settings for GPTQ quantization, as AutoGPTQ's BaseQuantizeConfig names them.
#pragma once

#include <cstdint>
#include <string>

namespace gptq {

struct QuantizeConfig {
  int bits = 4;                // 2, 3, 4 or 8
  int group_size = 128;        // -1: one group per output row
  bool desc_act = false;       // act-order
  bool static_groups = false;
  bool sym = true;
  double damp_percent = 0.01;  // raised by 0.01 while the Cholesky factorization fails
  bool mse = false;
  bool true_sequential = true;
  std::string method = "gptq";  // "gptq" or "rtn"
  std::string format = "";      // "gptq" (v1) or "gptq_v2"; empty: v1 when sym, v2 otherwise
};

}  // namespace gptq
