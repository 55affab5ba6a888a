// backend::Buffer on the CPU device (weight_alloc.h's aligned, huge-page-backed memory), and the
// device-independent Arena bookkeeping.
#include "backend/buffer.h"

#include <fmt/format.h>

#include <cstring>
#include <utility>

#include "backend/cpu/weight_alloc.h"
#include "gptq/error.h"

namespace gptq::backend {

Buffer::Buffer(Device d, size_t bytes) : device_(d), bytes_(bytes) {
  if (bytes == 0) return;
  data_ = allocate_weights(bytes);
  std::memset(data_, 0, bytes);
}

Buffer::~Buffer() { reset(); }

void Buffer::reset() {
  if (data_) free_weights(data_, bytes_);
  data_ = nullptr;
  bytes_ = 0;
}

Buffer::Buffer(Buffer&& o) noexcept
    : device_(o.device_), data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    reset();
    device_ = o.device_;
    data_ = std::exchange(o.data_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

void* Arena::take_bytes(size_t bytes) {
  const size_t need = round_up(bytes);
  if (need > buf_.size() - top_) {
    throw Error(ErrorKind::kArgument,
                fmt::format("scratch arena: {} bytes requested with {} of {} in use", bytes, top_, buf_.size()));
  }
  void* p = static_cast<char*>(buf_.data()) + top_;
  top_ += need;
  if (top_ > high_) high_ = top_;
  return p;
}

void Arena::reserve(size_t bytes) {
  if (bytes <= buf_.size()) return;
  if (top_ != 0) {
    throw Error(ErrorKind::kArgument,
                fmt::format("scratch arena: cannot grow to {} bytes while {} are in use", bytes, top_));
  }
  buf_ = Buffer();  // frees the old buffer first
  buf_ = Buffer(device_, round_up(bytes));
  ++growths_;
}

}  // namespace gptq::backend
