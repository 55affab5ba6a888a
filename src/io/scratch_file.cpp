#include "io/scratch_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "gptq/error.h"

namespace gptq::io {

namespace {

[[noreturn]] void fail(const std::string& what, const std::filesystem::path& dir, int err) {
  throw Error(ErrorKind::kIo, fmt::format("{} the scratch file in {}: {}", what, dir.string(), std::strerror(err)));
}

}  // namespace

ScratchFile::ScratchFile(const std::filesystem::path& dir) : dir_(dir) {
#ifdef O_TMPFILE
  fd_ = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
#endif
  if (fd_ < 0) {
    // File systems without O_TMPFILE: a unique name, unlinked before any data goes in.
    std::string name = (dir / "gptq-scratch.XXXXXX").string();
    fd_ = ::mkostemp(name.data(), O_CLOEXEC);
    if (fd_ < 0) fail("cannot create", dir, errno);
    ::unlink(name.c_str());
  }
}

ScratchFile::~ScratchFile() {
  if (fd_ >= 0) ::close(fd_);
}

void ScratchFile::reserve(uint64_t bytes) {
  if (bytes == 0) return;
  const int err = ::posix_fallocate(fd_, 0, static_cast<off_t>(bytes));
  if (err == 0 || err == EOPNOTSUPP || err == EINVAL) return;
  throw Error(ErrorKind::kIo, fmt::format("cannot allocate {:.2f} GiB for the scratch file in {}: {}",
                                          static_cast<double>(bytes) / (1ull << 30), dir_.string(), std::strerror(err)));
}

void ScratchFile::write_at(uint64_t offset, const void* data, uint64_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, uint64_t{1} << 30));
    const ssize_t w = ::pwrite(fd_, p, chunk, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("cannot write", dir_, w < 0 ? errno : EIO);
    p += w;
    offset += static_cast<uint64_t>(w);
    n -= static_cast<uint64_t>(w);
  }
}

void ScratchFile::read_at(uint64_t offset, void* data, uint64_t n) const {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, uint64_t{1} << 30));
    const ssize_t r = ::pread(fd_, p, chunk, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail("cannot read", dir_, errno);
    if (r == 0) fail("cannot read", dir_, EIO);  // past the end: never written
    p += r;
    offset += static_cast<uint64_t>(r);
    n -= static_cast<uint64_t>(r);
  }
}

}  // namespace gptq::io
