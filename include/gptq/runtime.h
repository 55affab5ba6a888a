// Controls for programs that embed the library (the Python package, a GUI): the thread count, and
// stopping a long call from outside (Ctrl-C, a cancel button).
#pragma once

#include <functional>
#include <string>

namespace gptq {

// Sets the number of threads that the library's parallel loops and OpenBLAS use from now on, for
// the whole process (LoadOptions::threads and QuantizeRunOptions::threads call this too).
// n <= 0: $GPTQ_NUM_THREADS when set, else every CPU the process may use. Quantization results
// do not depend on the thread count; inference logits may differ in float32 rounding (OpenBLAS
// splits some sums by thread).
void set_num_threads(int n);
// The thread count in force (resolving the default on first use).
int num_threads();

// The kernels OpenBLAS (the fp32 GEMMs of calibration and of dense prefill) runs: "Haswell",
// "SkylakeX", "Zen", ... OpenBLAS picks them from the CPU model when it loads, and gives a model
// newer than it knows its generic SSE3 "Prescott" kernels (Debian's 0.3.21 on an Intel family 6
// model 207 CPU: calibration 3.1x slower). Where that happened on a CPU with AVX2 and
// OPENBLAS_CORETYPE is not set, the library has OpenBLAS choose again, with the variable set to
// "SkylakeX" (AVX-512) or "Haswell", when it is loaded; a value the user set is never changed.
std::string blas_kernels();
// The kernels OpenBLAS had chosen before that switch ("Prescott"), or "" when none happened.
std::string blas_kernels_replaced();

// Returns true when the work in progress should stop.
using InterruptCheck = std::function<bool()>;

// Installs `check` for the calls made on this thread while the object lives; the one installed
// before is restored when it dies (scopes nest, the innermost wins). Long calls poll it between
// units of work: each decoder layer loaded (CausalLM::from_pretrained), each calibration sample
// run through a layer and each linear solved (CausalLM::quantize, quantize_model), each
// perplexity window, each generated token. When it returns true the call throws
// Error(kInterrupted). Polls happen on the calling thread only, never on the library's worker
// threads, so the check may take the caller's own locks (the Python package takes the GIL and
// asks Python whether a signal arrived). What an interrupted call leaves behind is said at each
// call: quantize_model keeps finished layers for a resume; CausalLM::quantize leaves the model
// unusable (load it again); the others change nothing.
class ScopedInterruptCheck {
 public:
  explicit ScopedInterruptCheck(InterruptCheck check);
  ~ScopedInterruptCheck();
  ScopedInterruptCheck(const ScopedInterruptCheck&) = delete;
  ScopedInterruptCheck& operator=(const ScopedInterruptCheck&) = delete;

 private:
  InterruptCheck previous_;
};

// Throws Error(kInterrupted, "interrupted") when this thread's check returns true; does nothing
// when none is installed. The library's poll points call it; callers may use it in their own loops.
void check_interrupt();

}  // namespace gptq
