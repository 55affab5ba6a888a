#include "tokenizer/bpe.h"

#include <fmt/format.h>

#include <algorithm>

#include "gptq/error.h"
#include "tokenizer/utf8.h"

namespace gptq::tok {

void MergeMap::reserve(size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;
  if (cap <= keys_.size()) return;
  std::vector<uint64_t> old_keys = std::move(keys_);
  std::vector<Entry> old_vals = std::move(vals_);
  keys_.assign(cap, kEmpty);
  vals_.assign(cap, Entry{0, 0});
  mask_ = cap - 1;
  size_ = 0;
  for (size_t i = 0; i < old_keys.size(); ++i) {
    if (old_keys[i] == kEmpty) continue;
    size_t j = hash(old_keys[i]) & mask_;
    while (keys_[j] != kEmpty) j = (j + 1) & mask_;
    keys_[j] = old_keys[i];
    vals_[j] = old_vals[i];
    ++size_;
  }
}

void MergeMap::grow() { reserve(keys_.empty() ? 8 : keys_.size()); }

void MergeMap::insert(int32_t a, int32_t b, Entry e) {
  // Keep the load factor at or below 1/2 so that probe sequences stay short.
  if (2 * (size_ + 1) > keys_.size()) grow();
  const uint64_t k = key(a, b);
  size_t i = hash(k) & mask_;
  while (keys_[i] != kEmpty && keys_[i] != k) i = (i + 1) & mask_;
  if (keys_[i] == kEmpty) {
    keys_[i] = k;
    ++size_;
  }
  vals_[i] = e;
}

Bpe::Bpe(Vocab vocab, const std::vector<std::pair<std::string, std::string>>& merges,
         BpeOptions opts, std::string_view origin)
    : vocab_(std::move(vocab)), opts_(std::move(opts)) {
  affixes_ = !opts_.continuing_subword_prefix.empty() || !opts_.end_of_word_suffix.empty();
  char_ids_.assign(0x10000, -1);
  std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
  for (const auto& [tok, id] : vocab_) {
    if (tok.empty()) continue;
    const Utf8Char c = utf8_next(tok, 0);
    if (c.status == Utf8Status::kValid && static_cast<size_t>(c.len) == tok.size()) {
      if (c.cp < 0x10000) {
        char_ids_[c.cp] = id;
      } else {
        char_ids_high_[c.cp] = id;
      }
    }
    // Byte-fallback tokens are spelled "<0x" + two upper-case hex digits + ">".
    if (tok.size() == 6 && tok.compare(0, 3, "<0x") == 0 && tok[5] == '>') {
      auto hex = [](char ch) -> int {
        if (ch >= '0' && ch <= '9') return ch - '0';
        if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
        return -1;
      };
      const int hi = hex(tok[3]), lo = hex(tok[4]);
      if (hi >= 0 && lo >= 0) byte_ids_[hi * 16 + lo] = id;
    }
  }
  merges_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ia = vocab_.find(a);
    auto ib = vocab_.find(b);
    if (ia == vocab_.end() || ib == vocab_.end()) {
      throw Error(
          ErrorKind::kFormat,
          fmt::format("{}: merge {} ({:?} + {:?}) names the token {:?}, which is not in the "
                      "vocabulary",
                      origin, rank, a, b, ia == vocab_.end() ? a : b));
    }
    // The merged token drops the continuing-subword prefix of its right part.
    std::string_view right = b;
    const auto& pre = opts_.continuing_subword_prefix;
    if (!pre.empty() && right.substr(0, pre.size()) == pre) right.remove_prefix(pre.size());
    joined.assign(a);
    joined.append(right);
    auto ij = vocab_.find(joined);
    if (ij == vocab_.end()) {
      throw Error(
          ErrorKind::kFormat,
          fmt::format("{}: merge {} ({:?} + {:?}) makes {:?}, which is not in the vocabulary",
                      origin, rank, a, b, joined));
    }
    merges_.insert(ia->second, ib->second, {static_cast<int32_t>(rank), ij->second});
  }
}

int32_t Bpe::char_id(uint32_t cp) const {
  if (cp < 0x10000) return char_ids_[cp];
  auto it = char_ids_high_.find(cp);
  return it == char_ids_high_.end() ? -1 : it->second;
}

namespace {

struct Symbol {
  int32_t id;
  int32_t prev;  // index of the previous live symbol, -1 at the start
  int32_t next;  // index of the next live symbol, -1 at the end
  bool live;
};

// A candidate merge of symbols[pos] with its right neighbour, packed as rank << 32 | pos so that
// the smallest key is the lowest rank and, among equal ranks, the leftmost position: the order in
// which Hugging Face's Word::merge_all pops its heap. A one-word key keeps the heap, which holds
// about one entry per character of a 1 MB text, compact.
uint64_t candidate(int32_t rank, int32_t pos) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(rank)) << 32) | static_cast<uint32_t>(pos);
}

}  // namespace

void Bpe::encode_word(std::string_view w, std::vector<int32_t>& out) const {
  if (w.empty()) return;
  if (opts_.ignore_merges) {
    auto it = vocab_.find(w);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }

  // 1. One symbol per character: its token, else its <0xNN> byte tokens, else the unknown token
  //    (consecutive unknown characters share one when fuse_unk is set).
  std::vector<Symbol> syms;
  syms.reserve(w.size());
  auto add = [&](int32_t id) {
    const auto n = static_cast<int32_t>(syms.size());
    syms.push_back({id, n - 1, -1, true});
  };
  bool unk_pending = false;
  auto flush_unk = [&] {
    if (unk_pending) add(opts_.unk_id);
    unk_pending = false;
  };
  std::string affixed;
  size_t i = 0;
  while (i < w.size()) {
    const Utf8Char c = utf8_next(w, i);
    // The input was made valid UTF-8 before pre-tokenization; a stray byte is treated as a
    // one-byte character so that this loop always moves forward.
    const size_t len = c.status == Utf8Status::kValid ? static_cast<size_t>(c.len) : 1;
    int32_t id;
    if (!affixes_) {
      id = c.status == Utf8Status::kValid ? char_id(c.cp) : -1;
    } else {
      affixed.clear();
      if (i != 0) affixed += opts_.continuing_subword_prefix;
      affixed.append(w.substr(i, len));
      if (i + len == w.size()) affixed += opts_.end_of_word_suffix;
      auto it = vocab_.find(affixed);
      id = it == vocab_.end() ? -1 : it->second;
    }
    if (id >= 0) {
      flush_unk();
      add(id);
    } else {
      bool done = false;
      if (opts_.byte_fallback) {
        bool all = true;
        for (size_t k = 0; k < len; ++k)
          all = all && byte_ids_[static_cast<unsigned char>(w[i + k])] >= 0;
        if (all) {
          flush_unk();
          for (size_t k = 0; k < len; ++k) add(byte_ids_[static_cast<unsigned char>(w[i + k])]);
          done = true;
        }
      }
      if (!done && opts_.unk_id >= 0) {
        if (unk_pending && !opts_.fuse_unk) add(opts_.unk_id);
        unk_pending = true;
      }
      // With neither byte fallback nor an unknown token the character is dropped, as Hugging
      // Face tokenizers does.
    }
    i += len;
  }
  flush_unk();
  if (syms.empty()) return;
  syms.back().next = -1;
  for (size_t k = 0; k + 1 < syms.size(); ++k) syms[k].next = static_cast<int32_t>(k + 1);

  // 2. Merge the ranked pair of lowest rank, leftmost first. Heap entries go stale when one of
  //    their symbols was merged away or grew; they are recognised when popped and skipped. (A pair
  //    that changed never has its old rank again with the same merged token: every change makes
  //    the concatenated string longer. So comparing ranks is the same test as Hugging Face's
  //    comparison of merged ids.)
  std::vector<uint64_t> heap;
  const std::greater<uint64_t> cmp;  // std heaps are max-heaps; this makes a min-heap
  if (syms.size() > 1) {
    heap.reserve(syms.size());
    for (size_t k = 0; k + 1 < syms.size(); ++k) {
      if (const auto* m = merges_.find(syms[k].id, syms[k + 1].id)) {
        heap.push_back(candidate(m->rank, static_cast<int32_t>(k)));
      }
    }
    std::make_heap(heap.begin(), heap.end(), cmp);
  }
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), cmp);
    const uint64_t top = heap.back();
    heap.pop_back();
    const auto rank = static_cast<int32_t>(top >> 32);
    const auto pos = static_cast<int32_t>(top & 0xFFFFFFFFu);
    Symbol& left = syms[static_cast<size_t>(pos)];
    if (!left.live || left.next < 0) continue;
    Symbol& right = syms[static_cast<size_t>(left.next)];
    const auto* m = merges_.find(left.id, right.id);
    if (!m || m->rank != rank) continue;  // stale: the pair at pos has changed
    left.id = m->id;
    right.live = false;
    left.next = right.next;
    if (right.next >= 0) syms[static_cast<size_t>(right.next)].prev = pos;
    if (left.prev >= 0) {
      const Symbol& p = syms[static_cast<size_t>(left.prev)];
      if (const auto* pm = merges_.find(p.id, left.id)) {
        heap.push_back(candidate(pm->rank, left.prev));
        std::push_heap(heap.begin(), heap.end(), cmp);
      }
    }
    if (left.next >= 0) {
      const Symbol& nx = syms[static_cast<size_t>(left.next)];
      if (const auto* nm = merges_.find(left.id, nx.id)) {
        heap.push_back(candidate(nm->rank, pos));
        std::push_heap(heap.begin(), heap.end(), cmp);
      }
    }
  }
  for (int32_t k = 0; k >= 0; k = syms[static_cast<size_t>(k)].next) {
    out.push_back(syms[static_cast<size_t>(k)].id);
  }
}

}  // namespace gptq::tok
