// Errors thrown by gptq.cpp. Every failure the user can cause (a bad file, a bad flag, a model we
// do not support, a matrix the solver cannot factor) is a gptq::Error whose message names the
// file or object, what was expected and what was found.
#pragma once

#include <stdexcept>
#include <string>

namespace gptq {

enum class ErrorKind {
  kIo,           // a file cannot be opened, read, written or renamed
  kFormat,       // a file is malformed (safetensors, JSON, tokenizer)
  kConfig,       // config.json or a quantization config is missing a key or holds a bad value
  kShape,        // a tensor's shape or dtype disagrees with what the config implies
  kUnsupported,  // a valid input that gptq.cpp does not handle (model type, bit width)
  kNumeric,      // NaN/Inf, a Hessian that stays indefinite after damping
  kArgument,     // a bad argument to an API call or CLI flag
  kInterrupted,  // the user stopped the work (SIGINT)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace gptq
