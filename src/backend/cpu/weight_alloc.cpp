#include "backend/cpu/weight_alloc.h"

#ifdef __linux__
#include <sys/mman.h>
#endif

#include <new>

namespace gptq::backend {
namespace {
constexpr size_t kHugePage = size_t{2} << 20;
}

void* allocate_weights(size_t bytes) {
  if (bytes < kHugePage) return ::operator new(bytes, std::align_val_t{64});
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* p = ::operator new(rounded, std::align_val_t{kHugePage});
#ifdef __linux__
  // Advice only: where THP is off or unavailable the pages stay ordinary ones.
  madvise(p, rounded, MADV_HUGEPAGE);
#endif
  return p;
}

void free_weights(void* p, size_t bytes) {
  if (bytes < kHugePage) {
    ::operator delete(p, std::align_val_t{64});
  } else {
    ::operator delete(p, std::align_val_t{kHugePage});
  }
}

}  // namespace gptq::backend
