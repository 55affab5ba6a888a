// Reading and writing safetensors: round trips of every dtype, the layout the writer promises,
// sharded folders, atomic writes, and the stories260k checkpoint.
#include "io/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <vector>

#include "gptq/error.h"
#include "io/corruptions.h"

namespace gptq::io {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("gptq_io_st_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(path_)) out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

// Runs f, expects a gptq::Error of `kind`, returns its message ("" if none was thrown).
template <typename F>
std::string expect_error(ErrorKind kind, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no gptq::Error thrown";
  return "";
}

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 31);
  return v;
}

std::string file_bytes(const fs::path& p) { return read_text_file(p); }

const DType kAllDtypes[] = {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kI64,
                            DType::kI32, DType::kI16, DType::kI8,  DType::kU8,   DType::kBool};

TEST(SafetensorsRoundTrip, EveryDtype) {
  TempDir dir;
  const fs::path p = dir.path() / "all.safetensors";
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<TensorToWrite> ts;
  uint8_t seed = 1;
  for (DType t : kAllDtypes) {
    const Shape shape = {3, 5};
    buffers.push_back(pattern(15 * dtype_size(t), seed++));
    if (t == DType::kBool) {
      for (auto& b : buffers.back()) b &= 1;
    }
    ts.push_back({"t_" + std::string(dtype_name(t)), t, shape, buffers.back().data(),
                  buffers.back().size()});
  }
  write_safetensors(p, ts);

  const auto f = SafetensorsFile::open(p);
  ASSERT_EQ(f->tensors().size(), std::size(kAllDtypes));
  for (size_t i = 0; i < ts.size(); ++i) {
    const TensorInfo* t = f->find(ts[i].name);
    ASSERT_NE(t, nullptr) << ts[i].name;
    EXPECT_EQ(t->dtype, ts[i].dtype);
    EXPECT_EQ(t->shape, (Shape{3, 5}));
    EXPECT_EQ(t->numel(), 15);
    EXPECT_EQ(t->nbytes, buffers[i].size());
    EXPECT_EQ(t->file, &f->path());
    EXPECT_EQ(std::memcmp(t->data, buffers[i].data(), buffers[i].size()), 0) << ts[i].name;
  }
  EXPECT_EQ(f->find("absent"), nullptr);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"all.safetensors"});  // no temp file left
}

TEST(SafetensorsRoundTrip, ScalarAndEmptyTensors) {
  TempDir dir;
  const fs::path p = dir.path() / "odd.safetensors";
  const float scalar = 3.5f;
  write_safetensors(p, {{"scalar", DType::kF32, {}, &scalar, 4},
                        {"empty_a", DType::kF16, {0, 4}, nullptr, 0},
                        {"empty_b", DType::kI32, {3, 0}, nullptr, 0}});
  const auto f = SafetensorsFile::open(p);
  ASSERT_EQ(f->tensors().size(), 3u);
  const TensorInfo* s = f->find("scalar");
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->shape.empty());
  EXPECT_EQ(s->numel(), 1);
  float back;
  std::memcpy(&back, s->data, 4);
  EXPECT_EQ(back, 3.5f);
  EXPECT_EQ(f->find("empty_a")->nbytes, 0u);
  EXPECT_EQ(f->find("empty_b")->shape, (Shape{3, 0}));
}

TEST(SafetensorsRoundTrip, Metadata) {
  TempDir dir;
  const fs::path p = dir.path() / "meta.safetensors";
  const int32_t v = 7;
  write_safetensors(p, {{"x", DType::kI32, {1}, &v, 4}}, {{"quantizer", "gptq.cpp"}, {"é", "ü"}});
  const auto f = SafetensorsFile::open(p);
  const std::map<std::string, std::string> want = {
      {"format", "pt"}, {"quantizer", "gptq.cpp"}, {"é", "ü"}};
  EXPECT_EQ(f->metadata(), want);

  // A caller's own "format" is kept.
  write_safetensors(p, {{"x", DType::kI32, {1}, &v, 4}}, {{"format", "np"}});
  EXPECT_EQ(SafetensorsFile::open(p)->metadata().at("format"), "np");
}

TEST(SafetensorsWriter, SortedContiguousAndPadded) {
  TempDir dir;
  const fs::path p = dir.path() / "layout.safetensors";
  const auto b1 = pattern(6, 1), b2 = pattern(12, 2), b3 = pattern(3, 3);
  // Given out of order; header lengths of every residue mod 8 are covered by the name loop below.
  write_safetensors(p, {{"zeta", DType::kI16, {3}, b1.data(), 6},
                        {"alpha", DType::kF32, {3}, b2.data(), 12},
                        {"Mid", DType::kU8, {3}, b3.data(), 3}});
  const std::string bytes = file_bytes(p);
  uint64_t len = 0;
  for (int i = 0; i < 8; ++i)
    len |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
  EXPECT_EQ(len % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + len + 6 + 12 + 3);
  const std::string header = bytes.substr(8, len);
  const size_t last = header.find_last_not_of(' ');
  EXPECT_EQ(header[last], '}');
  EXPECT_LT(header.size() - last - 1, 8u);  // fewer than 8 spaces of padding

  const auto j = nlohmann::ordered_json::parse(header);
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"__metadata__", "Mid", "alpha", "zeta"}));
  EXPECT_EQ(j["__metadata__"], nlohmann::ordered_json({{"format", "pt"}}));
  EXPECT_EQ(j["Mid"]["data_offsets"], nlohmann::ordered_json({0, 3}));
  EXPECT_EQ(j["alpha"]["data_offsets"], nlohmann::ordered_json({3, 15}));
  EXPECT_EQ(j["zeta"]["data_offsets"], nlohmann::ordered_json({15, 21}));
  EXPECT_EQ(j["alpha"]["shape"], nlohmann::ordered_json({3}));
  EXPECT_EQ(j["zeta"]["dtype"], "I16");
  EXPECT_EQ(bytes.substr(8 + len, 3), std::string(b3.begin(), b3.end()));
}

TEST(SafetensorsWriter, PaddingForEveryHeaderLength) {
  TempDir dir;
  const uint8_t byte = 9;
  for (int n = 1; n <= 8; ++n) {
    const fs::path p = dir.path() / "pad.safetensors";
    write_safetensors(p, {{std::string(n, 'w'), DType::kU8, {1}, &byte, 1}});
    const std::string bytes = file_bytes(p);
    EXPECT_EQ((bytes.size() - 1) % 8, 0u) << n;
    const auto f = SafetensorsFile::open(p);
    // The data section starts 8-byte aligned within the (page-aligned) mapping.
    EXPECT_EQ(reinterpret_cast<uintptr_t>(f->tensors()[0].data) % 8, 0u);
    EXPECT_EQ(*f->tensors()[0].data, 9);
  }
}

TEST(SafetensorsWriter, RefusesBadArgumentsAndLeavesNoFile) {
  TempDir dir;
  const fs::path p = dir.path() / "bad.safetensors";
  const float v[4] = {1, 2, 3, 4};
  std::string m = expect_error(ErrorKind::kArgument, [&] {
    write_safetensors(p, {{"x", DType::kF32, {2}, v, 8}, {"x", DType::kF32, {2}, v, 8}});
  });
  EXPECT_NE(m.find("\"x\""), std::string::npos) << m;
  m = expect_error(ErrorKind::kArgument, [&] {
    write_safetensors(p, {{"x", DType::kF32, {2, 2}, v, 8}});
  });
  EXPECT_NE(m.find("needs 16 bytes"), std::string::npos) << m;
  expect_error(ErrorKind::kArgument, [&] {
    write_safetensors(p, {{"x", DType::kF32, {-2}, v, 8}});
  });
  expect_error(ErrorKind::kArgument, [&] {
    write_safetensors(p, {{"__metadata__", DType::kF32, {2}, v, 8}});
  });
  expect_error(ErrorKind::kArgument, [&] {
    write_safetensors(p, {{"x", DType::kF32, {2}, nullptr, 8}});
  });
  expect_error(ErrorKind::kArgument, [&] {
    write_safetensors(p, {{"x", DType::kF32, {int64_t{1} << 62, 8}, v, 8}});
  });
  expect_error(ErrorKind::kArgument, [&] {
    write_safetensors(p, {{"bad\xff", DType::kF32, {2}, v, 8}});
  });
  EXPECT_TRUE(dir.entries().empty());
}

TEST(SafetensorsWriter, AtomicReplaceAndFailures) {
  TempDir dir;
  const fs::path p = dir.path() / "w.safetensors";
  const int8_t a[2] = {1, 2}, b[3] = {3, 4, 5};
  write_safetensors(p, {{"a", DType::kI8, {2}, a, 2}});
  write_safetensors(p, {{"b", DType::kI8, {3}, b, 3}});
  const auto f = SafetensorsFile::open(p);
  EXPECT_EQ(f->find("a"), nullptr);
  ASSERT_NE(f->find("b"), nullptr);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"w.safetensors"});

  // The folder does not exist: kIo naming the path, nothing left behind.
  const std::string m = expect_error(ErrorKind::kIo, [&] {
    write_safetensors(dir.path() / "no_such_dir" / "x.safetensors", {{"a", DType::kI8, {2}, a, 2}});
  });
  EXPECT_NE(m.find("no_such_dir"), std::string::npos) << m;
  // The target is a non-empty directory: the rename fails after the data was written, and the
  // temporary file is removed.
  fs::create_directories(dir.path() / "occupied" / "inner");
  expect_error(ErrorKind::kIo, [&] {
    write_safetensors(dir.path() / "occupied", {{"a", DType::kI8, {2}, a, 2}});
  });
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"occupied", "w.safetensors"}));
}

TEST(SafetensorsWriter, StreamsAMultiMegabyteTensor) {
  TempDir dir;
  const fs::path p = dir.path() / "big.safetensors";
  std::vector<uint8_t> big = pattern(size_t{24} << 20, 5);  // 24 MiB
  write_safetensors(
      p, {{"big", DType::kU8, {static_cast<int64_t>(big.size())}, big.data(), big.size()}});
  const auto f = SafetensorsFile::open(p);
  ASSERT_EQ(f->find("big")->nbytes, big.size());
  EXPECT_EQ(std::memcmp(f->find("big")->data, big.data(), big.size()), 0);
}

TEST(AtomicFile, WriteAndReadText) {
  TempDir dir;
  const fs::path p = dir.path() / "config.json";
  write_file_atomic(p, "{\"a\": 1}\n");
  EXPECT_EQ(read_text_file(p), "{\"a\": 1}\n");
  write_file_atomic(p, "");
  EXPECT_EQ(read_text_file(p), "");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"config.json"});
  fsync_dir(dir.path());

  std::string m =
      expect_error(ErrorKind::kIo, [&] { read_text_file(dir.path() / "missing.json"); });
  EXPECT_NE(m.find("missing.json"), std::string::npos) << m;
  m = expect_error(ErrorKind::kIo, [&] { read_text_file(dir.path()); });
  EXPECT_NE(m.find(dir.path().string()), std::string::npos) << m;
  expect_error(ErrorKind::kIo, [&] { fsync_dir(dir.path() / "nope"); });
}

TEST(MappedFileTest, MissingDirectoryEmptyAndMove) {
  TempDir dir;
  std::string m = expect_error(ErrorKind::kIo, [&] { MappedFile(dir.path() / "missing.bin"); });
  EXPECT_NE(m.find("missing.bin"), std::string::npos) << m;
  expect_error(ErrorKind::kIo, [&] { MappedFile x(dir.path()); });

  gptq::testing::write_bytes(dir.path() / "empty.bin", "");
  MappedFile empty(dir.path() / "empty.bin");
  EXPECT_EQ(empty.size(), 0u);

  gptq::testing::write_bytes(dir.path() / "f.bin", "hello");
  MappedFile a(dir.path() / "f.bin");
  ASSERT_EQ(a.size(), 5u);
  MappedFile b(std::move(a));
  EXPECT_EQ(b.size(), 5u);
  EXPECT_EQ(std::memcmp(b.data(), "hello", 5), 0);
  a = std::move(b);
  EXPECT_EQ(a.size(), 5u);
  EXPECT_EQ(a.path().filename(), "f.bin");
  a = std::move(empty);
  EXPECT_EQ(a.size(), 0u);
}

TEST(SafetensorsFileTest, MissingFileIsIoError) {
  const std::string m =
      expect_error(ErrorKind::kIo, [] { SafetensorsFile::open("/nonexistent/x.safetensors"); });
  EXPECT_NE(m.find("/nonexistent/x.safetensors"), std::string::npos) << m;
}

TEST(SafetensorsFileTest, ToleratesUnknownEntryKeysAndPaddedHeader) {
  // What other writers may produce: extra keys in an entry, spaces after the JSON.
  TempDir dir;
  const fs::path p = dir.path() / "x.safetensors";
  gptq::testing::write_bytes(
      p, gptq::testing::make_safetensors(
             R"({"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"extra":1}}      )", "ab"));
  const auto f = SafetensorsFile::open(p);
  ASSERT_NE(f->find("t"), nullptr);
  EXPECT_TRUE(f->metadata().empty());
}

TEST(TensorStoreTest, ShardedFolder) {
  TempDir dir;
  const std::vector<float> a = {1, 2, 3, 4, 5, 6};
  const std::vector<uint16_t> c = {0x3C00, 0xC100};  // fp16 1.0, -2.5
  const int32_t b[2] = {7, 8};
  write_safetensors(dir.path() / "model-00001-of-00002.safetensors",
                    {{"w.a", DType::kF32, {2, 3}, a.data(), 24}, {"w.b", DType::kI32, {2}, b, 8}});
  write_safetensors(dir.path() / "model-00002-of-00002.safetensors",
                    {{"w.c", DType::kF16, {2}, c.data(), 4}});
  write_file_atomic(dir.path() / "model.safetensors.index.json",
                    R"({"metadata": {"total_size": 36}, "weight_map": {
                          "w.a": "model-00001-of-00002.safetensors",
                          "w.b": "model-00001-of-00002.safetensors",
                          "w.c": "model-00002-of-00002.safetensors"}})");
  TensorStore store = TensorStore::open_dir(dir.path());
  EXPECT_EQ(store.dir(), dir.path());
  EXPECT_EQ(store.files().size(), 2u);
  EXPECT_EQ(store.names(), (std::vector<std::string>{"w.a", "w.b", "w.c"}));
  EXPECT_EQ(store.read_f32("w.a", {2, 3}), a);
  EXPECT_EQ(store.read_f32("w.c"), (std::vector<float>{1.0f, -2.5f}));
  EXPECT_EQ(store.get("w.c").file->filename(), "model-00002-of-00002.safetensors");
  EXPECT_EQ(store.get("w.b").dtype, DType::kI32);

  // The store can be moved without invalidating its tensors.
  TensorStore moved = std::move(store);
  EXPECT_EQ(moved.read_f32("w.a"), a);
}

TEST(TensorStoreTest, SingleFileWinsAndMissingFolder) {
  TempDir dir;
  const std::string m = expect_error(ErrorKind::kIo, [&] { TensorStore::open_dir(dir.path()); });
  EXPECT_NE(m.find("model.safetensors"), std::string::npos) << m;
  expect_error(ErrorKind::kIo, [&] { TensorStore::open_dir(dir.path() / "nope"); });

  const float v = 1;
  write_safetensors(dir.path() / "model.safetensors", {{"only", DType::kF32, {1}, &v, 4}});
  write_file_atomic(dir.path() / "model.safetensors.index.json", "not even json");
  const TensorStore store = TensorStore::open_dir(dir.path());
  EXPECT_EQ(store.names(), std::vector<std::string>{"only"});
}

TEST(TensorStoreTest, OpenFilesRefusesATensorInTwoFiles) {
  TempDir dir;
  const float v = 1;
  write_safetensors(dir.path() / "p1.safetensors", {{"x", DType::kF32, {1}, &v, 4}});
  write_safetensors(dir.path() / "p2.safetensors", {{"x", DType::kF32, {1}, &v, 4}});
  const std::string m = expect_error(ErrorKind::kFormat, [&] {
    TensorStore::open_files({dir.path() / "p1.safetensors", dir.path() / "p2.safetensors"});
  });
  EXPECT_NE(m.find("p1.safetensors"), std::string::npos) << m;
  EXPECT_NE(m.find("p2.safetensors"), std::string::npos) << m;
}

TEST(TensorStoreTest, ReadF32ChecksShapeAndDtype) {
  TempDir dir;
  const int32_t i[2] = {1, 2};
  const double d[2] = {0.5, -1e300};
  const float f[6] = {};
  write_safetensors(dir.path() / "model.safetensors", {{"ints", DType::kI32, {2}, i, 8},
                                                       {"dbl", DType::kF64, {2}, d, 16},
                                                       {"w", DType::kF32, {2, 3}, f, 24}});
  const TensorStore store = TensorStore::open_dir(dir.path());
  const std::vector<float> back = store.read_f32("dbl", {2});
  EXPECT_EQ(back[0], 0.5f);
  EXPECT_TRUE(std::isinf(back[1]) && back[1] < 0);

  std::string m = expect_error(ErrorKind::kShape, [&] { store.read_f32("w", {3, 2}); });
  EXPECT_NE(m.find("\"w\""), std::string::npos) << m;
  EXPECT_NE(m.find("expected shape [3, 2], found [2, 3]"), std::string::npos) << m;
  m = expect_error(ErrorKind::kShape, [&] { store.read_f32("ints"); });
  EXPECT_NE(m.find("I32"), std::string::npos) << m;
  m = expect_error(ErrorKind::kShape, [&] { store.get("nope"); });
  EXPECT_NE(m.find("\"nope\""), std::string::npos) << m;
  EXPECT_NE(m.find(dir.path().string()), std::string::npos) << m;
  EXPECT_EQ(store.find("nope"), nullptr);
}

TEST(Stories260k, ReadsTheCheckpoint) {
  const fs::path dir = fs::path(GPTQ_TEST_DATA_DIR) / "stories260k";
  const TensorStore store = TensorStore::open_dir(dir);
  EXPECT_EQ(store.names().size(), 47u);
  const TensorInfo& e = store.get("model.embed_tokens.weight");
  EXPECT_EQ(e.dtype, DType::kF32);
  EXPECT_EQ(e.shape, (Shape{512, 64}));
  EXPECT_EQ(store.files().front()->metadata().at("format"), "pt");

  // Reference values read with Python's struct module from the same file (exact: F32 -> F32).
  const std::vector<float> w = store.read_f32("model.embed_tokens.weight", {512, 64});
  ASSERT_EQ(w.size(), 512u * 64u);
  EXPECT_EQ(w[0], -0.29474878311157227f);
  EXPECT_EQ(w[1], 0.5618956089019775f);
  EXPECT_EQ(w[2], 0.1754225343465805f);
  EXPECT_EQ(w[3], 0.34057360887527466f);
  EXPECT_EQ(w.back(), -0.424032598733902f);
  // Python summed in double; a double sum here matches to well under 1e-6 relative.
  const double sum = std::accumulate(w.begin(), w.end(), 0.0);
  EXPECT_NEAR(sum, -752.3677446640068, 1e-6 * 752.0);

  // Every tensor converts, and the shapes multiply out to the byte sizes.
  for (const std::string& name : store.names()) {
    const TensorInfo& t = store.get(name);
    EXPECT_EQ(static_cast<uint64_t>(t.numel()) * 4, t.nbytes) << name;
    EXPECT_EQ(store.read_f32(name).size(), static_cast<size_t>(t.numel())) << name;
  }
}

// The in-memory image (what a rank broadcasts with --broadcast-weights) is byte for byte the file
// write_safetensors writes, and a store over it reads the same tensors back; a damaged image is
// refused as a damaged file is.
TEST(SafetensorsBytes, ImageEqualsTheWrittenFileAndReadsBack) {
  TempDir dir;
  const std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -0.5f};
  const std::vector<uint16_t> b = {0x3f80, 0xbf80, 0x4000};  // bf16 1, -1, 2
  const std::vector<int32_t> c = {5, -7};
  auto tensors = [&] {
    return std::vector<TensorToWrite>{{"w.b", DType::kBF16, {3}, b.data(), b.size() * 2},
                                      {"w.a", DType::kF32, {2, 3}, a.data(), a.size() * 4},
                                      {"ids", DType::kI32, {2}, c.data(), c.size() * 4}};
  };
  const fs::path file = dir.path() / "t.safetensors";
  write_safetensors(file, tensors());
  const std::vector<uint8_t> img = safetensors_bytes(tensors());
  std::ifstream in(file, std::ios::binary);
  const std::string on_disk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(on_disk.size(), img.size());
  EXPECT_EQ(0, std::memcmp(on_disk.data(), img.data(), img.size()));

  const TensorStore st = TensorStore::from_images({img}, dir.path());
  EXPECT_EQ(st.names(), (std::vector<std::string>{"ids", "w.a", "w.b"}));
  EXPECT_EQ(st.read_f32("w.a", {2, 3}), a);
  EXPECT_EQ(st.read_f32("w.b"), (std::vector<float>{1.0f, -1.0f, 2.0f}));
  const TensorInfo& ids = st.get("ids");
  ASSERT_EQ(ids.nbytes, 8u);
  int32_t got[2];
  std::memcpy(got, ids.data, 8);
  EXPECT_EQ(got[0], 5);
  EXPECT_EQ(got[1], -7);

  std::vector<uint8_t> cut(img.begin(), img.end() - 1);
  EXPECT_THROW(TensorStore::from_images({cut}, dir.path()), Error);
  // The same tensor in two images is refused, as in two files.
  EXPECT_THROW(TensorStore::from_images({img, img}, dir.path()), Error);
}

}  // namespace
}  // namespace gptq::io
