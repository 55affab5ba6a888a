// Device memory for the executor: a Buffer is one allocation on one device, and an Arena is a
// Buffer the executor takes its temporaries from by offset (activations, attention scores, the
// quantized kernels' rounded inputs) instead of allocating per layer per token. A session's
// KVCache owns both its keys/values and its arena; the arena is sized once, from the model's shape
// and the session's largest call, so that decode steps allocate nothing.
//
// Buffers know their device. The CPU implementation (src/backend/cpu/buffer.cpp) aligns to 64
// bytes, from 2 MiB up to 2 MiB with transparent huge pages (backend/cpu/weight_alloc.h).
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/ops.h"

namespace gptq::backend {

class Buffer {
 public:
  Buffer() = default;
  // `bytes` of zero-filled memory on device d.
  Buffer(Device d, size_t bytes);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  Device device() const { return device_; }
  size_t size() const { return bytes_; }
  void* data() { return data_; }
  const void* data() const { return data_; }
  template <typename T>
  T* as() {
    return static_cast<T*>(data_);
  }

 private:
  void reset();
  Device device_ = Device::kCpu;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Sub-allocations from one Buffer by offset, each aligned to kAlign bytes, released in stack
// order (mark / release, or ArenaScope). Taking more than the capacity is an error, never a
// reallocation: pointers handed out stay valid until released. reserve() is the one way to grow,
// and only while nothing is taken.
class Arena {
 public:
  static constexpr size_t kAlign = 64;
  static constexpr size_t round_up(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

  Arena() = default;
  explicit Arena(Device d) : device_(d) {}

  Device device() const { return device_; }
  // count T's (uninitialised contents from earlier users). Error(kArgument) naming both sizes
  // when they do not fit.
  template <typename T>
  T* take(size_t count) {
    return static_cast<T*>(take_bytes(count * sizeof(T)));
  }
  void* take_bytes(size_t bytes);
  size_t mark() const { return top_; }
  void release(size_t mark) { top_ = mark; }

  // Capacity of at least `bytes`: a new buffer when the current one is smaller (counted in
  // growths()). Error(kArgument) when something is still taken.
  void reserve(size_t bytes);
  size_t capacity() const { return buf_.size(); }
  size_t used() const { return top_; }
  size_t high_water() const { return high_; }
  int64_t growths() const { return growths_; }

 private:
  Device device_ = Device::kCpu;
  Buffer buf_;
  size_t top_ = 0, high_ = 0;
  int64_t growths_ = 0;
};

// Releases, when it goes out of scope, everything taken from the arena since it was made.
class ArenaScope {
 public:
  explicit ArenaScope(Arena& a) : a_(a), mark_(a.mark()) {}
  ~ArenaScope() { a_.release(mark_); }
  ArenaScope(const ArenaScope&) = delete;
  ArenaScope& operator=(const ArenaScope&) = delete;

 private:
  Arena& a_;
  size_t mark_;
};

}  // namespace gptq::backend
