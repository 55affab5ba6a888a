#include "pipeline/hidden_states.h"

#include <cstring>

namespace gptq::pipeline {

HiddenStates::HiddenStates(std::vector<int64_t> rows, int64_t width, const std::filesystem::path& spill_dir)
    : rows_(std::move(rows)), width_(width) {
  if (spill_dir.empty()) {
    mem_.resize(rows_.size());
    for (size_t s = 0; s < rows_.size(); ++s) mem_[s].resize(static_cast<size_t>(rows_[s] * width_));
    return;
  }
  offset_.resize(rows_.size());
  uint64_t at = 0;
  for (size_t s = 0; s < rows_.size(); ++s) {
    offset_[s] = at;
    at += static_cast<uint64_t>(rows_[s] * width_) * sizeof(float);
  }
  file_ = std::make_unique<io::ScratchFile>(spill_dir);
  file_->reserve(at);
}

uint64_t HiddenStates::bytes() const {
  uint64_t n = 0;
  for (int64_t r : rows_) n += static_cast<uint64_t>(r * width_) * sizeof(float);
  return n;
}

void HiddenStates::read(size_t s, float* dst) const {
  const uint64_t n = static_cast<uint64_t>(rows_[s] * width_) * sizeof(float);
  if (file_) {
    file_->read_at(offset_[s], dst, n);
  } else if (n) {
    std::memcpy(dst, mem_[s].data(), n);
  }
}

void HiddenStates::write(size_t s, const float* src) {
  const uint64_t n = static_cast<uint64_t>(rows_[s] * width_) * sizeof(float);
  if (file_) {
    file_->write_at(offset_[s], src, n);
  } else if (n) {
    std::memcpy(mem_[s].data(), src, n);
  }
}

}  // namespace gptq::pipeline
