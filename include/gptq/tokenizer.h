// Tokenizers read from a Hugging Face tokenizer.json (+ tokenizer_config.json and
// generation_config.json for BOS/EOS and whether BOS is added). Two models are supported:
// sentencepiece-style BPE with byte fallback (Llama 2, Mistral, stories260k) and byte-level BPE
// with regex pre-tokenization (Llama 3, Qwen2, GPT-2). Encoding reproduces Hugging Face
// tokenizers' ids; the one known gap is the NFC normalizer (Qwen2), which is taken as the
// identity: text that is not already in NFC (decomposed accents) is not composed first.
//
// Stages understood in tokenizer.json: normalizers Sequence, Prepend, Replace, Strip, NFC;
// pre-tokenizers Sequence, Split, ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit,
// Punctuation, CharDelimiterSplit; decoders Sequence, Replace, ByteFallback, Fuse, Strip,
// ByteLevel, Metaspace; post-processors TemplateProcessing, ByteLevel, Sequence, Roberta/Bert.
// Others are gptq::Error(kUnsupported). A Tokenizer is immutable after loading: encode and decode
// may be called from several threads at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace gptq {

class Tokenizer {
 public:
  // Reads <dir>/tokenizer.json and, when present, tokenizer_config.json and
  // generation_config.json. Throws gptq::Error naming the file and the problem.
  static Tokenizer from_dir(const std::filesystem::path& dir);
  // From the texts of the files; config texts may be empty. `origin` names the source in errors.
  static Tokenizer from_json(std::string_view tokenizer_json, std::string_view tokenizer_config_json = {},
                             std::string_view generation_config_json = {},
                             std::string_view origin = "tokenizer.json");

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Encodes text. With add_special, BOS is put first when the tokenizer's config says so
  // (add_bos_token, or the post-processor's template; likewise EOS after it with add_eos_token or
  // a template that ends with one). Special tokens written in the text (e.g. "<|eot_id|>") are
  // recognised as their ids. Ill-formed UTF-8 in the text is replaced by U+FFFD first.
  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const;
  // Decodes ids to UTF-8; special tokens are skipped when skip_special. Bytes that do not form a
  // character (byte-fallback or byte-level tokens cut short) become U+FFFD. Throws
  // gptq::Error(kArgument) for an id outside [0, vocab_size()).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = true) const;

  // Incremental decoding for streaming output: returns the text that the new token completes.
  // Bytes of a UTF-8 character split over several tokens are held back until it is complete;
  // bytes that can no longer complete come out as U+FFFD. Special tokens are skipped. The pieces
  // concatenate to decode(all pushed ids): a token is decoded in the context of the ones before
  // it, so after pushing a prompt, "▁was" comes out as " was" (decode of the new ids alone would
  // strip that leading space). flush() gives what is held back (as U+FFFD) at the end.
  class StreamDecoder {
   public:
    explicit StreamDecoder(const Tokenizer& tok) : tok_(&tok) {}
    std::string push(int32_t id);
    std::string flush();

   private:
    const Tokenizer* tok_;
    std::vector<int32_t> ids_;
    size_t emitted_ = 0;  // bytes of decode(ids_) already returned
  };

  int32_t vocab_size() const;  // largest id + 1
  int32_t bos_id() const;      // -1 when none
  const std::vector<int32_t>& eos_ids() const;  // may be several (Llama 3)
  bool add_bos() const;
  bool is_special(int32_t id) const;
  std::string id_to_piece(int32_t id) const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gptq
