// The BPE model of a Hugging Face tokenizer.json: a vocabulary, merges ranked by their position in
// the file, and the sentencepiece options (byte fallback to <0xNN> tokens, unknown-token fusing).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace gptq::tok {

// Hash for std::string keys that also accepts std::string_view (heterogeneous lookup), so lookups
// of a piece of the input do not build a temporary string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// Open-addressing map from a pair of token ids to (rank, merged id). The merge loop looks pairs up
// millions of times on a 1 MB text, which std::unordered_map's node chasing makes several times
// slower.
class MergeMap {
 public:
  struct Entry {
    int32_t rank;
    int32_t id;
  };
  void reserve(size_t n);
  // Later insertions of the same pair replace earlier ones, as in Hugging Face tokenizers, whose
  // merge table is a hash map filled in file order.
  void insert(int32_t a, int32_t b, Entry e);
  const Entry* find(int32_t a, int32_t b) const {
    if (keys_.empty()) return nullptr;
    const uint64_t k = key(a, b);
    size_t i = hash(k) & mask_;
    while (true) {
      if (keys_[i] == k) return &vals_[i];
      if (keys_[i] == kEmpty) return nullptr;
      i = (i + 1) & mask_;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  static size_t hash(uint64_t k) {
    // splitmix64's finaliser: cheap and mixes both halves into the low bits used for the index.
    k ^= k >> 30;
    k *= 0xbf58476d1ce4e5b9ULL;
    k ^= k >> 27;
    k *= 0x94d049bb133111ebULL;
    k ^= k >> 31;
    return static_cast<size_t>(k);
  }
  void grow();
  std::vector<uint64_t> keys_;
  std::vector<Entry> vals_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

struct BpeOptions {
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool ignore_merges = false;
  int32_t unk_id = -1;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
};

class Bpe {
 public:
  // vocab: token -> id; merges: pairs of tokens in rank order. Throws gptq::Error(kFormat) naming
  // `origin` when a merge names a token outside the vocabulary or makes one that is not in it.
  Bpe(Vocab vocab, const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions opts,
      std::string_view origin);

  // Appends the ids of one pre-tokenized word (valid UTF-8). Reproduces Hugging Face tokenizers'
  // BPE: characters (or their <0xNN> bytes, or the unknown token) first, then the pair of lowest
  // rank is merged, leftmost first, until no ranked pair is left.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  const Vocab& vocab() const { return vocab_; }

 private:
  int32_t char_id(uint32_t cp) const;

  Vocab vocab_;
  MergeMap merges_;
  BpeOptions opts_;
  bool affixes_ = false;           // continuing_subword_prefix or end_of_word_suffix is set
  std::vector<int32_t> char_ids_;  // code point (< 0x10000) -> id of its one-character token
  std::unordered_map<uint32_t, int32_t> char_ids_high_;  // the same above U+FFFF
  int32_t byte_ids_[256];                                // id of the <0xNN> token, -1 when absent
};

}  // namespace gptq::tok
