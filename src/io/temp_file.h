// The temporary file of one atomic write (internal to src/io): "<path>.tmp.<pid>" in the target's
// folder, written, fsynced and renamed over the target by commit(); removed by the destructor
// unless commit() succeeded, so no failure path leaves it behind.
#pragma once

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>

#include "gptq/error.h"
#include "io/safetensors.h"

namespace gptq::io::detail {

namespace fs = std::filesystem;

[[noreturn]] inline void throw_io(const std::string& what, int err) {
  throw Error(ErrorKind::kIo, fmt::format("{}: {}", what, std::strerror(err)));
}

// The temporary file of one atomic write. Unless commit() succeeded, the destructor closes and
// removes it, so no failure path leaves "<path>.tmp.<pid>" behind.
class TempFile {
 public:
  explicit TempFile(const fs::path& target)
      : target_(target), tmp_(target.string() + ".tmp." + std::to_string(::getpid())) {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw_io(fmt::format("cannot create {}", tmp_.string()), errno);
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  // Writes all n bytes, resuming after partial writes and signals. Linux moves at most ~2 GiB
  // per write(), so large tensors take several calls; no intermediate buffer is used.
  void write(const void* data, uint64_t n) {
    const auto* p = static_cast<const char*>(data);
    while (n > 0) {
      const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, uint64_t{1} << 30));
      const ssize_t w = ::write(fd_, p, chunk);
      if (w < 0) {
        if (errno == EINTR) continue;
        throw_io(fmt::format("cannot write {}", tmp_.string()), errno);
      }
      if (w == 0) throw_io(fmt::format("cannot write {}", tmp_.string()), EIO);
      p += w;
      n -= static_cast<uint64_t>(w);
    }
  }

  void commit() {
    if (::fsync(fd_) != 0) throw_io(fmt::format("cannot fsync {}", tmp_.string()), errno);
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw_io(fmt::format("cannot close {}", tmp_.string()), errno);
    if (::rename(tmp_.c_str(), target_.c_str()) != 0) {
      throw_io(fmt::format("cannot rename {} to {}", tmp_.string(), target_.string()), errno);
    }
    committed_ = true;
    fsync_dir(target_.has_parent_path() ? target_.parent_path() : fs::path("."));
  }

 private:
  fs::path target_;
  fs::path tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace gptq::io::detail
