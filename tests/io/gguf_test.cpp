// GGUF container: our writer's files read back exactly; a file written by llama.cpp's gguf-py
// (tests/data/gguf/fixture.gguf, from make_fixture.py) reads as that script wrote it; hostile and
// truncated files, built byte by byte here, are refused with an Error naming the file.
#include "io/gguf.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "gptq/error.h"

namespace gptq::io {
namespace {

namespace fs = std::filesystem;
using KV = std::vector<std::pair<std::string, GgufValue>>;

fs::path temp_path(const std::string& tag) {
  static int counter = 0;
  return fs::temp_directory_path() / ("gptq_gguf_" + tag + "_" + std::to_string(::getpid()) + "_" +
                                      std::to_string(counter++) + ".gguf");
}

std::vector<uint8_t> read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

KV every_type() {
  return {
      {"general.architecture", GgufValue::str("llama")},
      {"t.u8", GgufValue::u8(250)},
      {"t.i8", GgufValue::i8(-7)},
      {"t.u16", GgufValue::u16(65535)},
      {"t.i16", GgufValue::i16(-32768)},
      {"t.u32", GgufValue::u32(0xfffffffeu)},
      {"t.i32", GgufValue::i32(-5)},
      {"t.u64", GgufValue::u64(0xfedcba9876543210ull)},
      {"t.i64", GgufValue::i64(-(int64_t{1} << 62))},
      {"t.f32", GgufValue::f32(1.0f / 3)},
      {"t.f64", GgufValue::f64(1.0 / 3)},
      {"t.bool", GgufValue::boolean(true)},
      {"t.str", GgufValue::str(std::string("a\0b", 3))},
      {"t.empty_str", GgufValue::str("")},
      {"t.a_i32", GgufValue::int_array(GgufType::kInt32, {1, -2, 2147483647})},
      {"t.a_u8", GgufValue::int_array(GgufType::kUint8, {0, 255})},
      {"t.a_bool", GgufValue::int_array(GgufType::kBool, {1, 0})},
      {"t.a_f32", GgufValue::float_array(GgufType::kFloat32, {0.5, -0.25})},
      {"t.a_f64", GgufValue::float_array(GgufType::kFloat64, {1e-300})},
      {"t.a_str", GgufValue::string_array({"x", "", "\xe2\x96\x81y"})},
      {"t.a_empty", GgufValue::int_array(GgufType::kInt64, {})},
  };
}

TEST(Gguf, RoundTripEveryValueTypeAndTensors) {
  for (uint32_t align : {32u, 64u, 1u}) {
    KV kv = every_type();
    if (align != 32) kv.emplace_back("general.alignment", GgufValue::u32(align));
    std::vector<float> f32(15);
    for (size_t i = 0; i < f32.size(); ++i) f32[i] = static_cast<float>(i) - 7.5f;
    std::vector<uint8_t> q4(2 * 3 * 18), q8(34);
    for (size_t i = 0; i < q4.size(); ++i) q4[i] = static_cast<uint8_t>(i * 13 + 1);
    for (size_t i = 0; i < q8.size(); ++i) q8[i] = static_cast<uint8_t>(255 - i);
    const std::vector<GgufTensorToWrite> tensors = {
        {"a", {5, 3}, kGgmlF32, f32.data(), f32.size() * 4},
        {"blk.0.attn_q.weight", {64, 3}, kGgmlQ4_0, q4.data(), q4.size()},
        {"b", {32}, kGgmlQ8_0, q8.data(), q8.size()},
    };
    const fs::path p = temp_path("rt");
    write_gguf(p, kv, tensors);
    auto f = GgufFile::open(p);
    const ParsedGguf& g = f->contents();
    EXPECT_EQ(g.version, 3u);
    EXPECT_EQ(g.alignment, align);
    ASSERT_EQ(g.kv.size(), kv.size());
    for (size_t i = 0; i < kv.size(); ++i) {
      EXPECT_EQ(g.kv[i].first, kv[i].first);
      EXPECT_TRUE(g.kv[i].second == kv[i].second) << kv[i].first;
    }
    // float32 values come back as the float they were written as.
    EXPECT_EQ(g.find("t.f32")->floats[0], static_cast<double>(1.0f / 3));
    ASSERT_EQ(g.tensors.size(), 3u);
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = g.tensors[i];
      EXPECT_EQ(t.name, tensors[i].name);
      EXPECT_EQ(t.ne, tensors[i].ne);
      EXPECT_EQ(t.type, tensors[i].type);
      EXPECT_EQ(t.nbytes, tensors[i].nbytes);
      EXPECT_EQ(t.offset % align, 0u);
      EXPECT_EQ((g.data_start) % align, 0u);
      EXPECT_EQ(std::memcmp(t.data, tensors[i].data, t.nbytes), 0) << t.name;
    }
    // No temporary file is left next to the output.
    for (const auto& e : fs::directory_iterator(p.parent_path())) {
      EXPECT_EQ(e.path().string().find(p.filename().string() + ".tmp."), std::string::npos)
          << e.path();
    }
    fs::remove(p);
  }
}

TEST(Gguf, ReadsTheGgufPyFixtureExactly) {
  auto f = GgufFile::open(fs::path(GPTQ_TEST_DATA_DIR) / "gguf" / "fixture.gguf");
  const ParsedGguf& g = f->contents();
  EXPECT_EQ(g.version, 3u);
  EXPECT_EQ(g.alignment, 64u);
  ASSERT_EQ(g.kv.size(), 19u);
  EXPECT_EQ(g.kv[0].first, "general.architecture");
  EXPECT_EQ(g.find("general.architecture")->strings[0], "llama");
  auto one = [&](const char* key, GgufType t) -> const GgufValue& {
    const GgufValue* v = g.find(key);
    EXPECT_NE(v, nullptr) << key;
    if (!v) throw std::runtime_error(key);
    EXPECT_EQ(v->type, t) << key;
    return *v;
  };
  EXPECT_EQ(one("test.u8", GgufType::kUint8).ints[0], 200);
  EXPECT_EQ(one("test.i8", GgufType::kInt8).ints[0], -100);
  EXPECT_EQ(one("test.u16", GgufType::kUint16).ints[0], 60000);
  EXPECT_EQ(one("test.i16", GgufType::kInt16).ints[0], -30000);
  EXPECT_EQ(one("test.u32", GgufType::kUint32).ints[0], 4000000000);
  EXPECT_EQ(one("test.i32", GgufType::kInt32).ints[0], -2000000000);
  EXPECT_EQ(one("test.f32", GgufType::kFloat32).floats[0], static_cast<double>(0.1f));
  EXPECT_EQ(one("test.bool", GgufType::kBool).ints[0], 1);
  EXPECT_EQ(one("test.str", GgufType::kString).strings[0], "h\xc3\xa9llo \xe2\x96\x81world");
  EXPECT_EQ(static_cast<uint64_t>(one("test.u64", GgufType::kUint64).ints[0]),
            18000000000000000000ull);
  EXPECT_EQ(one("test.i64", GgufType::kInt64).ints[0], -9000000000000000000ll);
  EXPECT_EQ(one("test.f64", GgufType::kFloat64).floats[0], 2.5e-300);
  const auto& ai = one("test.arr_i32", GgufType::kArray);
  EXPECT_EQ(ai.elem, GgufType::kInt32);
  EXPECT_EQ(ai.ints, (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(one("test.arr_f32", GgufType::kArray).floats, (std::vector<double>{0.5, -1.25}));
  EXPECT_EQ(one("test.arr_str", GgufType::kArray).strings, (std::vector<std::string>{"a", "",
                                                                                     "\xe2\x96\x81"
                                                                                     "b"}));
  EXPECT_EQ(one("test.arr_u8", GgufType::kArray).ints, (std::vector<int64_t>{0, 255}));
  const auto& ab = one("test.arr_bool", GgufType::kArray);
  EXPECT_EQ(ab.elem, GgufType::kBool);
  EXPECT_EQ(ab.ints, (std::vector<int64_t>{1, 0, 1}));

  ASSERT_EQ(g.tensors.size(), 4u);
  const auto* f32 = g.tensor("t.f32");
  ASSERT_NE(f32, nullptr);
  EXPECT_EQ(f32->type, kGgmlF32);
  EXPECT_EQ(f32->ne, (std::vector<uint64_t>{5, 3}));
  for (int i = 0; i < 15; ++i) {
    float v;
    std::memcpy(&v, f32->data + 4 * i, 4);
    EXPECT_EQ(v, i * 0.5f - 3) << i;
  }
  const auto* f16 = g.tensor("t.f16");
  ASSERT_NE(f16, nullptr);
  EXPECT_EQ(f16->type, kGgmlF16);
  EXPECT_EQ(f16->ne, (std::vector<uint64_t>{3, 2}));
  uint16_t h;
  std::memcpy(&h, f16->data + 2, 2);
  EXPECT_EQ(h, 0x3400);  // 0.25 in fp16
  const auto* q8 = g.tensor("blk.0.q8");
  ASSERT_NE(q8, nullptr);
  EXPECT_EQ(q8->type, kGgmlQ8_0);
  EXPECT_EQ(q8->ne, (std::vector<uint64_t>{64, 2}));
  EXPECT_EQ(q8->nbytes, 136u);
  for (uint64_t i = 0; i < q8->nbytes; ++i) EXPECT_EQ(q8->data[i], (i * 7 + 3) % 256) << i;
  const auto* q4 = g.tensor("blk.0.q4");
  ASSERT_NE(q4, nullptr);
  EXPECT_EQ(q4->type, kGgmlQ4_0);
  EXPECT_EQ(q4->ne, (std::vector<uint64_t>{32, 1}));
  for (uint64_t i = 0; i < q4->nbytes; ++i) EXPECT_EQ(q4->data[i], (i * 7 + 3) % 256) << i;
  for (const auto& t : g.tensors) EXPECT_EQ(t.offset % 64, 0u) << t.name;
}

// ---- hostile files, built byte by byte (independently of write_gguf) ----

struct Bytes {
  std::vector<uint8_t> b;
  template <typename T>
  Bytes& put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& pad(size_t align) {
    while (b.size() % align) b.push_back(0);
    return *this;
  }
};

// The parts of a small valid file; each corruption changes one.
struct Spec {
  uint32_t magic = 0x46554747;  // "GGUF"
  uint32_t version = 3;
  std::optional<uint64_t> n_tensors, n_kv;
  std::function<void(Bytes&)> kv = [](Bytes& o) {
    o.str("general.architecture").put<uint32_t>(8).str("llama");
    o.str("a.list").put<uint32_t>(9).put<uint32_t>(5).put<uint64_t>(2).put<int32_t>(1).put<int32_t>(
        2);
  };
  uint64_t kv_count = 2;
  uint32_t alignment = 32;
  struct T {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    uint64_t offset;
  };
  std::vector<T> tensors = {{"w", {32, 2}, kGgmlQ8_0, 0}, {"n", {4}, kGgmlF32, 96}};
  uint64_t data_bytes = 96 + 16;
};

std::vector<uint8_t> build(const Spec& s) {
  Bytes o;
  o.put(s.magic).put(s.version).put<uint64_t>(s.n_tensors.value_or(s.tensors.size()));
  o.put<uint64_t>(s.n_kv.value_or(s.kv_count));
  s.kv(o);
  for (const auto& t : s.tensors) {
    o.str(t.name).put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (uint64_t d : t.ne) o.put(d);
    o.put(t.type).put(t.offset);
  }
  o.pad(s.alignment);
  for (uint64_t i = 0; i < s.data_bytes; ++i) o.b.push_back(static_cast<uint8_t>(i));
  return o.b;
}

void expect_refused(const std::vector<uint8_t>& bytes, const std::string& needle,
                    const std::string& label) {
  const fs::path name = "/data/hostile.gguf";
  try {
    parse_gguf(bytes.data(), bytes.size(), name);
    ADD_FAILURE() << label << ": accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kFormat) << label;
    const std::string m = e.what();
    EXPECT_NE(m.find(name.string()), std::string::npos) << label << ": " << m;
    EXPECT_NE(m.find(needle), std::string::npos)
        << label << ": expected \"" << needle << "\" in: " << m;
  }
}

TEST(Gguf, TheBaseHostileSpecIsValid) {
  const auto bytes = build(Spec{});
  const ParsedGguf g = parse_gguf(bytes.data(), bytes.size(), "base.gguf");
  EXPECT_EQ(g.kv.size(), 2u);
  ASSERT_EQ(g.tensors.size(), 2u);
  EXPECT_EQ(g.tensors[0].nbytes, 68u);
  EXPECT_EQ(g.tensors[1].offset, 96u);
}

TEST(Gguf, EveryTruncationIsRefused) {
  const auto full = build(Spec{});
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    try {
      parse_gguf(cut.data(), cut.size(), "cut.gguf");
      ADD_FAILURE() << "prefix of " << n << " bytes accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kFormat);
      EXPECT_NE(std::string(e.what()).find("cut.gguf"), std::string::npos) << e.what();
    }
  }
}

TEST(Gguf, HostileFilesAreRefusedWithTheReason) {
  struct Case {
    const char* label;
    std::function<void(Spec&)> corrupt;
    const char* needle;
  };
  const std::vector<Case> cases = {
      {"bad magic", [](Spec& s) { s.magic = 0x46554746; }, "magic"},
      {"version 1", [](Spec& s) { s.version = 1; }, "version"},
      {"big-endian version", [](Spec& s) { s.version = 0x03000000; }, "version"},
      {"huge kv count", [](Spec& s) { s.n_kv = uint64_t{1} << 60; }, "key/value count"},
      {"huge tensor count", [](Spec& s) { s.n_tensors = ~uint64_t{0}; }, "tensor count"},
      {"kv count past the data", [](Spec& s) { s.n_kv = 3; }, "GGUF"},
      {"huge string length",
       [](Spec& s) {
         s.kv = [](Bytes& o) { o.put<uint64_t>(~uint64_t{0} / 2); };
         s.kv_count = 1;
       },
       "key 0: expected"},
      {"unknown value type",
       [](Spec& s) {
         s.kv = [](Bytes& o) { o.str("k").put<uint32_t>(13).put<uint32_t>(0); };
         s.kv_count = 1;
       },
       "unknown value type 13"},
      {"nested array",
       [](Spec& s) {
         s.kv = [](Bytes& o) { o.str("k").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(0); };
         s.kv_count = 1;
       },
       "arrays of arrays"},
      {"huge array",
       [](Spec& s) {
         s.kv = [](Bytes& o) {
           o.str("k").put<uint32_t>(9).put<uint32_t>(6).put<uint64_t>(uint64_t{1} << 61);
         };
         s.kv_count = 1;
       },
       "array of"},
      {"bool 2",
       [](Spec& s) {
         s.kv = [](Bytes& o) { o.str("k").put<uint32_t>(7).put<uint8_t>(2); };
         s.kv_count = 1;
       },
       "bool"},
      {"duplicate key",
       [](Spec& s) {
         s.kv = [](Bytes& o) {
           o.str("k").put<uint32_t>(4).put<uint32_t>(1);
           o.str("k").put<uint32_t>(4).put<uint32_t>(2);
         };
       },
       "given twice"},
      {"alignment of 48",
       [](Spec& s) {
         s.kv = [](Bytes& o) { o.str("general.alignment").put<uint32_t>(4).put<uint32_t>(48); };
         s.kv_count = 1;
       },
       "power of two"},
      {"alignment as a string",
       [](Spec& s) {
         s.kv = [](Bytes& o) { o.str("general.alignment").put<uint32_t>(8).str("32"); };
         s.kv_count = 1;
       },
       "expected a uint32"},
      {"duplicate tensor", [](Spec& s) { s.tensors[1].name = "w"; }, "given twice"},
      {"five dims",
       [](Spec& s) {
         s.tensors[1].ne = {1, 1, 1, 1, 4};
       },
       "dims"},
      {"zero dims", [](Spec& s) { s.tensors[1].ne = {}; }, "dims"},
      {"unknown ggml type", [](Spec& s) { s.tensors[1].type = 99; }, "unknown ggml type 99"},
      {"row not whole blocks",
       [](Spec& s) {
         s.tensors[0].ne = {33, 2};
       },
       "multiple of 32"},
      {"dims overflow",
       [](Spec& s) {
         s.tensors[1].ne = {uint64_t{1} << 40, uint64_t{1} << 40};
       },
       "64 bits"},
      {"unaligned offset", [](Spec& s) { s.tensors[1].offset = 80 + 4; }, "alignment"},
      {"offset past the end", [](Spec& s) { s.tensors[1].offset = 160; }, "past the end"},
      {"overlap", [](Spec& s) { s.tensors[1].offset = 64; }, "overlaps"},
      {"name too long", [](Spec& s) { s.tensors[1].name = std::string(64, 'x'); }, "at most 63"},
      {"data cut short", [](Spec& s) { s.data_bytes = 100; }, "truncated"},
  };
  for (const auto& c : cases) {
    Spec s;
    c.corrupt(s);
    expect_refused(build(s), c.needle, c.label);
  }
}

TEST(Gguf, WriterRefusesBadInputAndKeepsTheOldFile) {
  const fs::path p = temp_path("bad");
  write_gguf(p, {{"general.architecture", GgufValue::str("llama")}}, {});
  const auto before = read_all(p);
  std::vector<uint8_t> data(40);
  auto refused = [&](const KV& kv, const std::vector<GgufTensorToWrite>& t,
                     const std::string& needle) {
    try {
      write_gguf(p, kv, t);
      ADD_FAILURE() << needle << ": accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kArgument);
      EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_EQ(read_all(p), before);
  };
  refused({{"a", GgufValue::u8(1)}, {"a", GgufValue::u8(2)}}, {}, "given twice");
  refused({{"general.alignment", GgufValue::u32(3)}}, {}, "power of two");
  refused({}, {{"x", {32}, kGgmlQ8_0, data.data(), 40}}, "need 34 bytes");
  refused({}, {{"x", {10}, kGgmlF32, data.data(), 40}, {"x", {10}, kGgmlF32, data.data(), 40}},
          "given twice");
  refused({}, {{std::string(64, 'n'), {10}, kGgmlF32, data.data(), 40}}, "at most 63");
  refused({}, {{"x", {10}, 77, data.data(), 40}}, "unknown ggml type");
  EXPECT_THROW(GgufValue::int_array(GgufType::kUint8, {256}), Error);
  // A folder that does not exist: an I/O error naming the temporary file.
  try {
    write_gguf(p.parent_path() / "no-such-dir" / "x.gguf", {}, {});
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_NE(std::string(e.what()).find("no-such-dir"), std::string::npos);
  }
  fs::remove(p);
}

TEST(Gguf, OpenNamesAMissingFile) {
  try {
    GgufFile::open("/nonexistent/model.gguf");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos);
  }
}

}  // namespace
}  // namespace gptq::io
