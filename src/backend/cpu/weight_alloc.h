// Memory for weight matrices that decode steps stream: 64-byte (cache line) alignment, so that no
// 32-byte load of the kernels straddles two lines (malloc aligns to 16; measured: 3-bit decode,
// whose units are 96 bytes, 7% faster). Allocations of 2 MiB and more are 2 MiB-aligned and asked
// to be backed by transparent huge pages (madvise): where the system's THP mode is "madvise", as
// on Debian by default, 4 KiB pages would cost a TLB miss every 4 KiB of every weight stream.
// Measured on the 1.1B shape, 4-bit g128, 2 threads, alternating binaries in one session: decode
// 32.3 -> 35.8 tok/s (+11%).
#pragma once

#include <cstddef>
#include <vector>

namespace gptq::backend {

void* allocate_weights(size_t bytes);
void free_weights(void* p, size_t bytes);

template <typename T>
struct WeightAllocator {
  using value_type = T;
  WeightAllocator() = default;
  template <typename U>
  WeightAllocator(const WeightAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(allocate_weights(n * sizeof(T))); }
  void deallocate(T* p, size_t n) { free_weights(p, n * sizeof(T)); }
  template <typename U>
  bool operator==(const WeightAllocator<U>&) const {
    return true;
  }
};

template <typename T>
using WeightVector = std::vector<T, WeightAllocator<T>>;

}  // namespace gptq::backend
