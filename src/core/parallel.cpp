#include "core/parallel.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <thread>

extern "C" void openblas_set_num_threads(int);

namespace gptq::core {
namespace {
std::atomic<int> g_threads{0};
}

void set_num_threads(int n) {
  if (n <= 0) {
    // GPTQ_NUM_THREADS sets the default (the test scripts run tests side by side with 1 each).
    const char* env = std::getenv("GPTQ_NUM_THREADS");
    n = env ? std::atoi(env) : 0;
  }
  if (n <= 0) n = std::max(1u, std::thread::hardware_concurrency());
  g_threads = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int num_threads() {
  int n = g_threads;
  if (n <= 0) {
    set_num_threads(0);
    n = g_threads;
  }
  return n;
}

}  // namespace gptq::core
