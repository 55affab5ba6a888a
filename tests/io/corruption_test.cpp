// The corruption suite: every kind in corruptions.h must be refused with a typed gptq::Error whose
// message names the file, never a crash (run under ASan/UBSan to make "never" mean something).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "gptq/error.h"
#include "io/corruptions.h"
#include "io/safetensors.h"

namespace gptq::io {
namespace {

namespace fs = std::filesystem;
using gptq::testing::FileCorruptionCase;
using gptq::testing::FolderCorruptionCase;

class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    path_ = fs::temp_directory_path() / ("gptq_io_" + tag + "_" + std::to_string(::getpid()) + "_" +
                                         std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

TEST(CorruptionBase, BaseFileIsValid) {
  TempDir dir("base");
  const fs::path p = dir.path() / "base.safetensors";
  gptq::testing::write_bytes(p, gptq::testing::base_file());
  const auto f = SafetensorsFile::open(p);
  ASSERT_EQ(f->tensors().size(), 3u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  ASSERT_NE(f->find("c"), nullptr);
  EXPECT_EQ(f->find("c")->begin, 20u);
}

TEST(CorruptionBase, BaseFolderIsValid) {
  TempDir dir("basedir");
  gptq::testing::write_base_folder(dir.path());
  const TensorStore store = TensorStore::open_dir(dir.path());
  EXPECT_EQ(store.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(store.files().size(), 2u);
}

class FileCorruptionTest : public ::testing::TestWithParam<FileCorruptionCase> {};

TEST_P(FileCorruptionTest, RefusedWithFormatError) {
  const FileCorruptionCase& c = GetParam();
  TempDir dir("file");
  const std::string file_name = std::string("corrupt_") + c.name + ".safetensors";
  const fs::path p = dir.path() / file_name;
  const std::string bytes = gptq::testing::corrupt_file(c.kind);
  gptq::testing::write_bytes(p, bytes);
  try {
    SafetensorsFile::open(p);
    FAIL() << c.name << ": opened without an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kFormat) << e.what();
    EXPECT_NE(std::string(e.what()).find(file_name), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos)
        << "expected \"" << c.message << "\" in: " << e.what();
  }
  // The in-memory parser (what the fuzzer drives) agrees.
  try {
    parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), p);
    FAIL() << c.name << ": parsed without an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kFormat) << e.what();
  }
  // Through a store as well: the error passes through unchanged.
  EXPECT_THROW(TensorStore::open_files({p}), Error);
}

INSTANTIATE_TEST_SUITE_P(AllKinds, FileCorruptionTest,
                         ::testing::ValuesIn(gptq::testing::file_corruptions()),
                         [](const ::testing::TestParamInfo<FileCorruptionCase>& info) {
                           return std::string(info.param.name);
                         });

class FolderCorruptionTest : public ::testing::TestWithParam<FolderCorruptionCase> {};

TEST_P(FolderCorruptionTest, RefusedWithTypedError) {
  const FolderCorruptionCase& c = GetParam();
  TempDir dir("folder");
  gptq::testing::write_corrupt_folder(c.kind, dir.path());
  try {
    TensorStore::open_dir(dir.path());
    FAIL() << c.name << ": opened without an error";
  } catch (const Error& e) {
    const ErrorKind want =
        c.error == gptq::testing::ExpectedKind::kIo ? ErrorKind::kIo : ErrorKind::kFormat;
    EXPECT_EQ(e.kind(), want) << e.what();
    EXPECT_NE(std::string(e.what()).find(c.file), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos)
        << "expected \"" << c.message << "\" in: " << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(AllKinds, FolderCorruptionTest,
                         ::testing::ValuesIn(gptq::testing::folder_corruptions()),
                         [](const ::testing::TestParamInfo<FolderCorruptionCase>& info) {
                           return std::string(info.param.name);
                         });

// Every truncation of a valid file is refused (a cheap exhaustive fuzz of the length dimension).
TEST(CorruptionSweep, EveryTruncationIsRefused) {
  const std::string valid = gptq::testing::base_file();
  const fs::path name = "truncated.safetensors";
  for (size_t n = 0; n < valid.size(); ++n) {
    try {
      parse_safetensors(reinterpret_cast<const uint8_t*>(valid.data()), n, name);
      ADD_FAILURE() << "a file cut to " << n << " bytes was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kFormat);
      EXPECT_NE(std::string(e.what()).find("truncated.safetensors"), std::string::npos);
    }
  }
}

// Every single-byte change of the header either still parses or raises a gptq::Error: no other
// exception type escapes and nothing reads out of bounds.
TEST(CorruptionSweep, EveryHeaderByteFlipIsHandled) {
  const std::string valid = gptq::testing::base_file();
  const fs::path name = "flipped.safetensors";
  const size_t header_end = 8 + gptq::testing::base_header().size();
  int refused = 0;
  for (size_t i = 0; i < header_end; ++i) {
    for (unsigned char x : {0x01, 0x20, 0x80, 0xFF}) {
      std::string b = valid;
      b[i] = static_cast<char>(static_cast<unsigned char>(b[i]) ^ x);
      try {
        const ParsedSafetensors p =
            parse_safetensors(reinterpret_cast<const uint8_t*>(b.data()), b.size(), name);
        for (const TensorInfo& t : p.tensors) {
          ASSERT_GE(t.data, reinterpret_cast<const uint8_t*>(b.data()));
          ASSERT_LE(t.data + t.nbytes, reinterpret_cast<const uint8_t*>(b.data()) + b.size());
        }
      } catch (const Error& e) {
        ++refused;
        EXPECT_EQ(e.kind(), ErrorKind::kFormat);
      }
    }
  }
  EXPECT_GT(refused, 0);
}

}  // namespace
}  // namespace gptq::io
