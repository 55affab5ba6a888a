// GPTQ codes -> ggml blocks; see ggml_blocks.h.
#include "quant/ggml_blocks.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "gptq/error.h"

namespace gptq::quant {
namespace {

constexpr int64_t kBlock = 32;

int64_t block_bytes(GgmlTarget t) {
  switch (t) {
    case GgmlTarget::kQ4_0:
      return 18;
    case GgmlTarget::kQ4_1:
      return 20;
    case GgmlTarget::kQ8_0:
      return 34;
  }
  return 0;
}

void put16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

std::vector<int64_t> resolve_order(const std::vector<int64_t>& order, int64_t n, const char* what) {
  if (order.empty()) {
    std::vector<int64_t> id(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) id[i] = i;
    return id;
  }
  if (static_cast<int64_t>(order.size()) != n) {
    throw Error(ErrorKind::kArgument,
                fmt::format("{}: row order of {} rows for {} rows", what, order.size(), n));
  }
  std::vector<char> seen(static_cast<size_t>(n), 0);
  for (int64_t r : order) {
    if (r < 0 || r >= n || seen[r]) {
      throw Error(ErrorKind::kArgument,
                  fmt::format("{}: row order is not a permutation of 0..{}", what, n - 1));
    }
    seen[r] = 1;
  }
  return order;
}

// The first block of 32 columns whose g_idx is not constant, or -1.
int64_t first_split_block(const GptqCodesView& c) {
  for (int64_t b = 0; b < c.k / kBlock; ++b) {
    for (int64_t i = 1; i < kBlock; ++i) {
      if (c.g_idx[b * kBlock + i] != c.g_idx[b * kBlock]) return b;
    }
  }
  return -1;
}

}  // namespace

uint32_t ggml_type_id(GgmlTarget t) {
  switch (t) {
    case GgmlTarget::kQ4_0:
      return 2;
    case GgmlTarget::kQ4_1:
      return 3;
    case GgmlTarget::kQ8_0:
      return 8;
  }
  return 0;
}

const char* ggml_target_name(GgmlTarget t) {
  switch (t) {
    case GgmlTarget::kQ4_0:
      return "Q4_0";
    case GgmlTarget::kQ4_1:
      return "Q4_1";
    case GgmlTarget::kQ8_0:
      return "Q8_0";
  }
  return "?";
}

GgmlMapping choose_ggml_mapping(const GptqCodesView& c, const std::string& module,
                                bool allow_widen) {
  GgmlMapping m;
  if (c.k % kBlock != 0) {
    m.why_not =
        fmt::format("{}: K = {} is not a multiple of 32, the width of a ggml block", module, c.k);
    return m;
  }
  const int64_t split = first_split_block(c);
  if (split >= 0) {
    // Find the two columns that disagree, for the message.
    int64_t col = split * kBlock + 1;
    while (c.g_idx[col] == c.g_idx[split * kBlock]) ++col;
    const bool permuted = [&] {
      for (int64_t i = 1; i < c.k; ++i) {
        if (c.g_idx[i] < c.g_idx[i - 1]) return true;
      }
      return false;
    }();
    if (permuted) {
      m.why_not = fmt::format(
          "{}: act-order groups are not contiguous in column order (column {} is in group {}, "
          "column {} in group "
          "{}), but a ggml block holds 32 consecutive columns with one scale; quantize with "
          "--desc-act "
          "--static-groups or --act-group-aware (or without --desc-act) to export exactly, or pass "
          "--requant to "
          "re-round the dequantized weights",
          module, split * kBlock, c.g_idx[split * kBlock], col, c.g_idx[col]);
    } else {
      m.why_not = fmt::format(
          "{}: groups of fewer than 32 columns (columns {} and {} are in groups {} and {}), but a "
          "ggml block holds "
          "32 columns with one scale; use a group size that is a multiple of 32 or -1, or pass "
          "--requant to "
          "re-round the dequantized weights",
          module, split * kBlock, col, c.g_idx[split * kBlock], c.g_idx[col]);
    }
    return m;
  }
  const int64_t nz = c.groups * c.n;
  auto all_zeros_are = [&](int32_t z) {
    for (int64_t i = 0; i < nz; ++i) {
      if (c.zeros[i] != z) return false;
    }
    return true;
  };
  switch (c.bits) {
    case 4:
      m.exact = true;
      m.target = all_zeros_are(8) ? GgmlTarget::kQ4_0 : GgmlTarget::kQ4_1;
      return m;
    case 8:
      if (all_zeros_are(128)) {
        m.exact = true;
        m.target = GgmlTarget::kQ8_0;
        return m;
      }
      m.why_not = fmt::format(
          "{}: 8-bit asymmetric codes (q - z spans [-255, 255]) fit no ggml block type exactly "
          "(Q8_0 holds int8 "
          "with one scale); quantize with symmetric 8 bits, or pass --requant to re-round to Q8_0",
          module);
      return m;
    case 2:
    case 3:
      if (allow_widen) {
        m.exact = true;
        m.widened = true;
        m.target = GgmlTarget::kQ4_0;
        return m;
      }
      m.why_not = fmt::format(
          "{}: ggml has no {}-bit block with a per-group scale and zero; pass --widen to store the "
          "codes exactly "
          "in Q4_0 (4.5 bits per weight), or quantize with 4 bits",
          module, c.bits);
      return m;
    default:
      m.why_not = fmt::format("{}: {}-bit codes are not supported", module, c.bits);
      return m;
  }
}

std::vector<uint8_t> encode_ggml_blocks(const GptqCodesView& c, GgmlTarget target,
                                        const std::vector<int64_t>& row_order,
                                        GgmlEncodeStats* stats) {
  if (c.k % kBlock != 0 || c.k <= 0 || c.n <= 0) {
    throw Error(ErrorKind::kArgument,
                fmt::format("ggml blocks: K = {} must be a positive multiple of 32", c.k));
  }
  if (first_split_block(c) >= 0) {
    throw Error(ErrorKind::kArgument, "ggml blocks: a block of 32 columns spans two groups");
  }
  const auto order = resolve_order(row_order, c.n, "ggml blocks");
  const int64_t nb = c.k / kBlock, bb = block_bytes(target);
  std::vector<uint8_t> out(static_cast<size_t>(c.n * nb * bb));
  GgmlEncodeStats st;
  for (int64_t r = 0; r < c.n; ++r) {
    const int64_t row = order[r];
    const uint8_t* q = c.codes + row * c.k;
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* o = out.data() + (r * nb + b) * bb;
      const int64_t g = c.g_idx[b * kBlock];
      const uint16_t d = c.scales[g * c.n + row];
      const int32_t z = c.zeros[g * c.n + row];
      const uint8_t* qb = q + b * kBlock;
      put16(o, d);
      ++st.blocks;
      if (target == GgmlTarget::kQ8_0) {
        for (int64_t i = 0; i < kBlock; ++i) {
          const int32_t v = static_cast<int32_t>(qb[i]) - z;
          if (v < -128 || v > 127) {
            throw Error(ErrorKind::kArgument,
                        fmt::format("ggml blocks: q - z = {} does not fit Q8_0", v));
          }
          o[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(v));
        }
        continue;
      }
      int32_t off = 0;  // what the stored nibble adds to q - z
      uint8_t* qs = o + 2;
      if (target == GgmlTarget::kQ4_1) {
        // w = d*q + m with m = -d*z: d*z has at most 11 + 4 significant bits, so it is exact in
        // fp32 and the one rounding is to fp16.
        const float dz = core::fp16_to_fp32(d) * static_cast<float>(z);
        const uint16_t m = core::fp32_to_fp16(-dz);
        const float mf = core::fp16_to_fp32(m);
        if (!std::isfinite(mf)) {
          throw Error(ErrorKind::kNumeric,
                      fmt::format("ggml blocks: Q4_1 offset -{} overflows fp16", dz));
        }
        if (mf != -dz) {
          ++st.inexact_offsets;
          const double e = std::fabs(static_cast<double>(mf) + dz) / core::fp16_to_fp32(d);
          if (e > st.max_offset_error) st.max_offset_error = e;
        }
        put16(o + 2, m);
        qs = o + 4;
        off = z;
      } else {
        off = 8;
      }
      for (int64_t i = 0; i < kBlock / 2; ++i) {
        const int32_t lo = static_cast<int32_t>(qb[i]) - z + off;
        const int32_t hi = static_cast<int32_t>(qb[i + 16]) - z + off;
        if (lo < 0 || lo > 15 || hi < 0 || hi > 15) {
          throw Error(
              ErrorKind::kArgument,
              fmt::format("ggml blocks: codes of row {} do not fit {} (q - z outside [-8, 7])", row,
                          ggml_target_name(target)));
        }
        qs[i] = static_cast<uint8_t>(lo | (hi << 4));
      }
    }
  }
  if (stats) *stats = st;
  return out;
}

std::vector<uint8_t> rtn_ggml_blocks(const float* w, int64_t n, int64_t k, GgmlTarget target,
                                     const std::vector<int64_t>& row_order) {
  if (k % kBlock != 0 || k <= 0) {
    throw Error(ErrorKind::kArgument,
                fmt::format("ggml RTN: K = {} must be a positive multiple of 32", k));
  }
  if (target == GgmlTarget::kQ4_1)
    throw Error(ErrorKind::kArgument, "ggml RTN: Q4_1 is not offered");
  const auto order = resolve_order(row_order, n, "ggml RTN");
  const int64_t nb = k / kBlock, bb = block_bytes(target);
  std::vector<uint8_t> out(static_cast<size_t>(n * nb * bb));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* x = w + order[r] * k + b * kBlock;
      uint8_t* o = out.data() + (r * nb + b) * bb;
      float amax = 0, vmax = 0;
      for (int64_t i = 0; i < kBlock; ++i) {
        if (std::fabs(x[i]) > amax) {
          amax = std::fabs(x[i]);
          vmax = x[i];
        }
      }
      if (target == GgmlTarget::kQ4_0) {
        const float d = vmax / -8.0f;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        put16(o, core::fp32_to_fp16(d));
        for (int64_t i = 0; i < kBlock / 2; ++i) {
          const int lo = std::min(15, static_cast<int>(static_cast<int8_t>(x[i] * id + 8.5f)));
          const int hi = std::min(15, static_cast<int>(static_cast<int8_t>(x[i + 16] * id + 8.5f)));
          o[2 + i] = static_cast<uint8_t>(lo | (hi << 4));
        }
      } else {
        const float d = amax / 127.0f;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        put16(o, core::fp32_to_fp16(d));
        for (int64_t i = 0; i < kBlock; ++i)
          o[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::round(x[i] * id)));
      }
    }
  }
  return out;
}

std::vector<uint8_t> f16_rows(const float* w, int64_t n, int64_t k,
                              const std::vector<int64_t>& row_order) {
  const auto order = resolve_order(row_order, n, "F16 rows");
  std::vector<uint8_t> out(static_cast<size_t>(n * k * 2));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t i = 0; i < k; ++i)
      put16(out.data() + (r * k + i) * 2, core::fp32_to_fp16(w[order[r] * k + i]));
  }
  return out;
}

std::vector<int64_t> llama_rope_row_order(int64_t rows, int64_t heads) {
  if (heads <= 0 || rows % (2 * heads) != 0) {
    throw Error(
        ErrorKind::kArgument,
        fmt::format("rope row order: {} rows are not a whole number of heads ({}) of even size",
                    rows, heads));
  }
  const int64_t d = rows / heads, half = d / 2;
  std::vector<int64_t> order(static_cast<size_t>(rows));
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      for (int64_t j = 0; j < 2; ++j) order[h * d + 2 * i + j] = h * d + j * half + i;
    }
  }
  return order;
}

}  // namespace gptq::quant
