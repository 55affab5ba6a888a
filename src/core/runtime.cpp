// gptq/runtime.h: the public thread-count setter and the per-thread interrupt check.
#include "gptq/runtime.h"

#include <utility>

#include "core/parallel.h"
#include "gptq/error.h"

namespace gptq {
namespace {

// One check per thread: a call polls the check of the thread that made it, so two threads that
// each installed their own never see each other's.
thread_local InterruptCheck t_check;

}  // namespace

void set_num_threads(int n) { core::set_num_threads(n); }

int num_threads() { return core::num_threads(); }

ScopedInterruptCheck::ScopedInterruptCheck(InterruptCheck check) : previous_(std::move(t_check)) {
  t_check = std::move(check);
}

ScopedInterruptCheck::~ScopedInterruptCheck() { t_check = std::move(previous_); }

void check_interrupt() {
  if (t_check && t_check()) throw Error(ErrorKind::kInterrupted, "interrupted");
}

}  // namespace gptq
