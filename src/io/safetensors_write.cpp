// Writing: safetensors files and small text files, atomically (temporary name in the same folder,
// fsync, rename, fsync of the folder), so a crash leaves either the old file or the new one.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/checked.h"
#include "gptq/error.h"
#include "io/json_strict.h"
#include "io/safetensors.h"
#include "io/temp_file.h"

namespace gptq::io {

namespace fs = std::filesystem;
using detail::clip;

using detail::TempFile;
using detail::throw_io;

void fsync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_io(fmt::format("cannot open folder {} to fsync it", dir.string()), errno);
  // Some file systems cannot fsync a folder (EINVAL); their renames are as durable as they get.
  if (::fsync(fd) != 0 && errno != EINVAL) {
    const int err = errno;
    ::close(fd);
    throw_io(fmt::format("cannot fsync folder {}", dir.string()), err);
  }
  ::close(fd);
}

void write_file_atomic(const fs::path& path, std::string_view contents) {
  TempFile tmp(path);
  tmp.write(contents.data(), contents.size());
  tmp.commit();
}

namespace {

// Sorts the tensors by name, checks them and returns the 8-byte length and the header text that
// precede their data (laid end to end in that order). `file` names the destination in errors.
std::string header_of(const std::string& file, std::vector<TensorToWrite>& tensors,
                      std::map<std::string, std::string> metadata) {
  auto bad = [&](const std::string& what) {
    throw Error(ErrorKind::kArgument, fmt::format("writing {}: {}", file, what));
  };
  std::sort(tensors.begin(), tensors.end(),
            [](const TensorToWrite& a, const TensorToWrite& b) { return a.name < b.name; });

  // The header: __metadata__ first (as the Python writer does), then the tensors by name, their
  // data laid end to end in the same order.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  metadata.try_emplace("format", "pt");
  header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorToWrite& t = tensors[i];
    if (t.name == "__metadata__") bad("\"__metadata__\" cannot be a tensor name");
    if (i > 0 && tensors[i - 1].name == t.name) {
      bad(fmt::format("tensor \"{}\" given twice (expected unique names)", clip(t.name)));
    }
    std::optional<uint64_t> nbytes = dtype_size(t.dtype);
    for (int64_t d : t.shape) {
      if (d < 0) {
        bad(fmt::format("tensor \"{}\": expected non-negative dimensions, found shape {}",
                        clip(t.name), shape_str(t.shape)));
      }
      if (nbytes) nbytes = core::checked_mul(*nbytes, static_cast<uint64_t>(d));
    }
    if (!nbytes || *nbytes != t.nbytes) {
      bad(fmt::format("tensor \"{}\": shape {} of {} needs {} bytes, found nbytes = {}",
                      clip(t.name), shape_str(t.shape), dtype_name(t.dtype),
                      nbytes ? std::to_string(*nbytes) : std::string("more than 2^64"), t.nbytes));
    }
    if (t.nbytes > 0 && t.data == nullptr) {
      bad(fmt::format("tensor \"{}\": {} bytes but no data", clip(t.name), t.nbytes));
    }
    const auto end = core::checked_add(offset, t.nbytes);
    if (!end) bad("total size overflows 64 bits");
    header[t.name] = {
        {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, *end}}};
    offset = *end;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    bad(fmt::format("a tensor name or metadata string is not valid UTF-8 ({})", e.what()));
  }
  // Pad with spaces so that the data section starts 8-byte aligned (8 + a multiple of 8).
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>(text.size() >> (8 * i));
  return out + text;
}

}  // namespace

std::vector<uint8_t> safetensors_bytes(std::vector<TensorToWrite> tensors, std::map<std::string, std::string> metadata) {
  const std::string head = header_of("(in memory)", tensors, std::move(metadata));
  uint64_t total = head.size();
  for (const TensorToWrite& t : tensors) total += t.nbytes;  // each checked; the sum fits as file offsets
  std::vector<uint8_t> out;
  out.reserve(total);
  out.insert(out.end(), head.begin(), head.end());
  for (const TensorToWrite& t : tensors) {
    const auto* p = static_cast<const uint8_t*>(t.data);
    out.insert(out.end(), p, p + t.nbytes);
    if (t.after_write) t.after_write();
  }
  return out;
}

void write_safetensors(const fs::path& path, std::vector<TensorToWrite> tensors,
                       std::map<std::string, std::string> metadata) {
  const std::string head = header_of(path.string(), tensors, std::move(metadata));
  TempFile tmp(path);
  tmp.write(head.data(), head.size());
  for (const TensorToWrite& t : tensors) {
    tmp.write(t.data, t.nbytes);
    if (t.after_write) t.after_write();
  }
  tmp.commit();
}

std::string read_text_file(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_io(fmt::format("cannot open {}", path.string()), errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw_io(fmt::format("cannot stat {}", path.string()), err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorKind::kIo,
                fmt::format("cannot read {}: expected a regular file, found something else",
                            path.string()));
  }
  std::string out;
  out.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const ssize_t r = ::read(fd, buf, sizeof(buf));
    if (r < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      throw_io(fmt::format("cannot read {}", path.string()), err);
    }
    if (r == 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  ::close(fd);
  return out;
}

}  // namespace gptq::io
