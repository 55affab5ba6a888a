// SPEC §1 bit layouts of qweight and qzeros, and the v1/v2 zero-point conventions.
//
// b in {2, 4, 8}: 32/b values per int32 word, value j at bits [b*j, b*j + b).
// b = 3: 32 values per 3 words, one little-endian 96-bit stream (value j at stream bits
// [3j, 3j + 3)); values 10 and 21 straddle a word boundary.
// Either way a "pack" is 32 values -> b words, which the functions below apply along the input
// dimension (qweight: consecutive rows) or the output dimension (qzeros: consecutive columns).
#include <fmt/format.h>

#include <cstring>

#include "gptq/error.h"
#include "quant/quantizer.h"

namespace gptq::quant {
namespace {

void check_bits(int bits, const char* what) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
    throw Error(ErrorKind::kArgument,
                fmt::format("{}: bits = {} must be one of 2, 3, 4, 8", what, bits));
  }
}

void check_multiple_of_32(int64_t v, const char* dim, const char* what) {
  if (v < 0 || v % 32 != 0) {
    throw Error(ErrorKind::kShape,
                fmt::format("{}: {} = {} must be a non-negative multiple of 32", what, dim, v));
  }
}

int32_t as_int32(uint32_t u) {
  int32_t s;
  std::memcpy(&s, &u, 4);
  return s;
}

uint32_t as_uint32(int32_t s) {
  uint32_t u;
  std::memcpy(&u, &s, 4);
  return u;
}

// 32 values (each < 2^bits) -> bits words.
void pack32(const uint32_t* v, int bits, uint32_t* out) {
  if (bits == 3) {
    uint64_t lo = 0, hi = 0;  // stream bits [0, 64) and [64, 96)
    for (int j = 0; j < 32; ++j) {
      const int pos = 3 * j;
      const uint64_t x = v[j];
      if (pos < 64) {
        lo |= x << pos;
        if (pos + 3 > 64) hi |= x >> (64 - pos);
      } else {
        hi |= x << (pos - 64);
      }
    }
    out[0] = static_cast<uint32_t>(lo);
    out[1] = static_cast<uint32_t>(lo >> 32);
    out[2] = static_cast<uint32_t>(hi);
    return;
  }
  const int per = 32 / bits;
  for (int w = 0; w < bits; ++w) {
    uint32_t word = 0;
    for (int j = 0; j < per; ++j) word |= v[w * per + j] << (bits * j);
    out[w] = word;
  }
}

// bits words -> 32 values.
void unpack32(const uint32_t* in, int bits, uint32_t* v) {
  const uint32_t mask = (1u << bits) - 1;
  if (bits == 3) {
    const uint64_t lo = static_cast<uint64_t>(in[0]) | (static_cast<uint64_t>(in[1]) << 32);
    const uint64_t hi = in[2];
    for (int j = 0; j < 32; ++j) {
      const int pos = 3 * j;
      uint64_t x;
      if (pos + 3 <= 64) {
        x = lo >> pos;
      } else if (pos < 64) {
        x = (lo >> pos) | (hi << (64 - pos));
      } else {
        x = hi >> (pos - 64);
      }
      v[j] = static_cast<uint32_t>(x) & mask;
    }
    return;
  }
  const int per = 32 / bits;
  for (int w = 0; w < bits; ++w) {
    for (int j = 0; j < per; ++j) v[w * per + j] = (in[w] >> (bits * j)) & mask;
  }
}

}  // namespace

std::vector<int32_t> pack_qweight(const uint8_t* codes, int64_t n, int64_t k, int bits) {
  check_bits(bits, "pack_qweight");
  check_multiple_of_32(k, "K", "pack_qweight");
  if (n < 0) throw Error(ErrorKind::kShape, fmt::format("pack_qweight: N = {} is negative", n));
  const uint32_t maxq = (1u << bits) - 1;
  const int64_t rows = k / 32 * bits;
  std::vector<int32_t> out(static_cast<size_t>(rows * n));
  uint32_t v[32], words[8];
  for (int64_t col = 0; col < n; ++col) {
    for (int64_t t = 0; t < k / 32; ++t) {
      for (int j = 0; j < 32; ++j) {
        v[j] = codes[col * k + t * 32 + j];
        if (v[j] > maxq) {
          throw Error(ErrorKind::kArgument,
                      fmt::format("pack_qweight: code {} at output {}, input {} does not fit in "
                                  "{} bits",
                                  v[j], col, t * 32 + j, bits));
        }
      }
      pack32(v, bits, words);
      for (int w = 0; w < bits; ++w) out[(t * bits + w) * n + col] = as_int32(words[w]);
    }
  }
  return out;
}

std::vector<uint8_t> unpack_qweight(const int32_t* qweight, int64_t n, int64_t k, int bits) {
  check_bits(bits, "unpack_qweight");
  check_multiple_of_32(k, "K", "unpack_qweight");
  if (n < 0) throw Error(ErrorKind::kShape, fmt::format("unpack_qweight: N = {} is negative", n));
  std::vector<uint8_t> codes(static_cast<size_t>(n * k));
  uint32_t v[32], words[8];
  for (int64_t col = 0; col < n; ++col) {
    for (int64_t t = 0; t < k / 32; ++t) {
      for (int w = 0; w < bits; ++w) words[w] = as_uint32(qweight[(t * bits + w) * n + col]);
      unpack32(words, bits, v);
      for (int j = 0; j < 32; ++j) codes[col * k + t * 32 + j] = static_cast<uint8_t>(v[j]);
    }
  }
  return codes;
}

std::vector<int32_t> pack_qzeros(const int32_t* zeros, int64_t g, int64_t n, int bits) {
  check_bits(bits, "pack_qzeros");
  check_multiple_of_32(n, "N", "pack_qzeros");
  if (g < 0) throw Error(ErrorKind::kShape, fmt::format("pack_qzeros: G = {} is negative", g));
  const int32_t maxq = (1 << bits) - 1;
  const int64_t cols = n / 32 * bits;
  std::vector<int32_t> out(static_cast<size_t>(g * cols));
  uint32_t v[32], words[8];
  for (int64_t grp = 0; grp < g; ++grp) {
    for (int64_t t = 0; t < n / 32; ++t) {
      for (int j = 0; j < 32; ++j) {
        const int32_t z = zeros[grp * n + t * 32 + j];
        if (z < 0 || z > maxq) {
          throw Error(ErrorKind::kArgument,
                      fmt::format("pack_qzeros: value {} at group {}, output {} does not fit in "
                                  "{} bits (0..{})",
                                  z, grp, t * 32 + j, bits, maxq));
        }
        v[j] = static_cast<uint32_t>(z);
      }
      pack32(v, bits, words);
      for (int w = 0; w < bits; ++w) out[grp * cols + t * bits + w] = as_int32(words[w]);
    }
  }
  return out;
}

std::vector<int32_t> unpack_qzeros(const int32_t* qzeros, int64_t g, int64_t n, int bits) {
  check_bits(bits, "unpack_qzeros");
  check_multiple_of_32(n, "N", "unpack_qzeros");
  if (g < 0) throw Error(ErrorKind::kShape, fmt::format("unpack_qzeros: G = {} is negative", g));
  const int64_t cols = n / 32 * bits;
  std::vector<int32_t> zeros(static_cast<size_t>(g * n));
  uint32_t v[32], words[8];
  for (int64_t grp = 0; grp < g; ++grp) {
    for (int64_t t = 0; t < n / 32; ++t) {
      for (int w = 0; w < bits; ++w) words[w] = as_uint32(qzeros[grp * cols + t * bits + w]);
      unpack32(words, bits, v);
      for (int j = 0; j < 32; ++j) zeros[grp * n + t * 32 + j] = static_cast<int32_t>(v[j]);
    }
  }
  return zeros;
}

namespace {

// GPTQModel's v1 <-> v2 conversion: for 2, 4 and 8 bits, one integer addition of the replicated
// one pattern to each int32 word (carries cross fields: a stored 2^b - 1 is a wrapped -1, the
// zero point 0, whose borrow the next field gave back); for 3 bits, whose fields straddle
// words, each field shifted by one modulo 8.
void shift_qzeros_words(std::vector<int32_t>& words, int bits, int delta, const char* what) {
  check_bits(bits, what);
  if (bits == 3) {
    if (words.size() % 3 != 0) {
      throw Error(ErrorKind::kShape, fmt::format("{}: {} words is not a whole number of 3-bit packs", what, words.size()));
    }
    uint32_t in[3], v[32];
    for (size_t i = 0; i < words.size(); i += 3) {
      for (int w = 0; w < 3; ++w) in[w] = as_uint32(words[i + w]);
      unpack32(in, 3, v);
      for (auto& x : v) x = (x + static_cast<uint32_t>(8 + delta)) & 7u;
      pack32(v, 3, in);
      for (int w = 0; w < 3; ++w) words[i + w] = as_int32(in[w]);
    }
    return;
  }
  const uint32_t pattern = bits == 2 ? 0x55555555u : bits == 4 ? 0x11111111u : 0x01010101u;
  for (auto& w : words) w = as_int32(delta > 0 ? as_uint32(w) + pattern : as_uint32(w) - pattern);
}

}  // namespace

void qzeros_v1_to_v2(std::vector<int32_t>& words, int bits) { shift_qzeros_words(words, bits, 1, "qzeros_v1_to_v2"); }
void qzeros_v2_to_v1(std::vector<int32_t>& words, int bits) { shift_qzeros_words(words, bits, -1, "qzeros_v2_to_v1"); }

}  // namespace gptq::quant
