// GPTQ codes as ggml quantization blocks (the weight layout llama.cpp runs). Pure bit layout, no
// files. ggml stores a weight [N, K] as N rows of K/32 blocks along the input dimension:
//   Q4_0: fp16 d, 16 bytes of 4-bit codes (byte j: element j in the low nibble, element j + 16 in
//         the high one); w = d * (q - 8).
//   Q4_1: fp16 d, fp16 m, the same 16 bytes; w = d * q + m.
//   Q8_0: fp16 d, 32 int8 codes; w = d * q.
// A GPTQ group (SPEC §1: w = s * (q - z)) maps onto these blocks exactly when each block of 32
// consecutive input columns lies in one group: 4-bit with z = 8 is Q4_0 with d = s; 8-bit with
// z = 128 is Q8_0 with d = s, q - 128 as int8; 4-bit with other zeros is Q4_1 with d = s and
// m = -s * z rounded to fp16 (exact when s * z is an fp16 number, which it is not in general:
// see GgmlEncodeStats); 2- and 3-bit codes (sym or asym: q - z in [-7, 7]) fit Q4_0 exactly with
// d = s, in 4.5 bits per weight ("widening").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gptq::quant {

// One GPTQ linear, unpacked. Zero points are true zero points (v2; v1 files converted first).
struct GptqCodesView {
  int64_t n = 0, k = 0, groups = 0;
  int bits = 4;
  const uint8_t* codes = nullptr;    // [N, K]
  const int32_t* zeros = nullptr;    // [G, N]
  const uint16_t* scales = nullptr;  // [G, N] fp16 bits
  const int32_t* g_idx = nullptr;    // [K], values in [0, G)
};

enum class GgmlTarget { kQ4_0, kQ4_1, kQ8_0 };
uint32_t ggml_type_id(GgmlTarget t);  // 2, 3, 8
const char* ggml_target_name(GgmlTarget t);

// The exact mapping of a linear, or why there is none.
struct GgmlMapping {
  bool exact = false;
  GgmlTarget target = GgmlTarget::kQ4_0;
  bool widened = false;  // 2/3-bit codes in Q4_0
  std::string why_not;   // when !exact: the reason and what to do instead, one sentence
};

// Chooses the ggml type that holds these codes exactly (see the file comment). `module` names the
// linear in why_not. With allow_widen, 2/3-bit codes are mapped to Q4_0; without, refused.
GgmlMapping choose_ggml_mapping(const GptqCodesView& c, const std::string& module,
                                bool allow_widen);

struct GgmlEncodeStats {
  int64_t blocks = 0;
  int64_t inexact_offsets = 0;  // Q4_1 blocks whose m = -d*z is not an fp16 number
  double max_offset_error = 0;  // largest |fp16(m) - (-d*z)| / d over those blocks
};

// Encodes the linear as `target` blocks, row r of the result holding output row row_order[r]
// (row_order empty: the identity; otherwise a permutation of [0, N)). K must be a multiple of 32
// and every block of 32 columns must lie in one group, and the codes must fit the target
// (choose_ggml_mapping says when); Error(kArgument) otherwise. Error(kNumeric) when a Q4_1 offset
// overflows fp16.
std::vector<uint8_t> encode_ggml_blocks(const GptqCodesView& c, GgmlTarget target,
                                        const std::vector<int64_t>& row_order = {},
                                        GgmlEncodeStats* stats = nullptr);

// Round-to-nearest into Q4_0 or Q8_0 blocks from fp32 weights [N, K] (rows in row_order as
// above), with ggml's reference rule (quantize_row_q4_0_ref / q8_0_ref): Q4_0 takes the element of
// largest magnitude m, d = m / -8, q = min(15, trunc(x / d + 8.5)); Q8_0 takes d = max|x| / 127,
// q = round(x / d). For linears with no exact mapping (--requant). Q4_1 is refused.
std::vector<uint8_t> rtn_ggml_blocks(const float* w, int64_t n, int64_t k, GgmlTarget target,
                                     const std::vector<int64_t>& row_order = {});

// fp32 [N, K] -> F16 rows (row_order as above), round to nearest even.
std::vector<uint8_t> f16_rows(const float* w, int64_t n, int64_t k,
                              const std::vector<int64_t>& row_order = {});

// llama.cpp's row order for q/k projections of llama-style models (its converter's permute):
// HF keeps each head's rotary pairs as (i, i + d/2); ggml's rotation pairs (2i, 2i + 1). New row
// h*d + 2i + j holds old row h*d + j*(d/2) + i, for `heads` heads of d = rows / heads rows.
// Error(kArgument) unless rows is a multiple of 2 * heads.
std::vector<int64_t> llama_rope_row_order(int64_t rows, int64_t heads);

}  // namespace gptq::quant
