#!/usr/bin/env python3
"""Writes the two tiny byte-level BPE tokenizers used by tests/tokenizer/byte_level_test.cpp.

Both share one model: the 256 byte tokens of GPT-2's bytes-to-unicode map at ids 0..255 (in
GPT-2's order, so the id of a byte can be worked out on paper, see the test), 24 merges written
by hand, and one token that no merge makes ("Ġxyz"), which only ignore_merges can produce.
llama3_tiny/ spells merges as ["a", "b"] arrays and is configured like Llama 3 (Split with the
Llama 3 regex, ignore_merges, <|begin_of_text|> template); qwen2_tiny/ spells them "a b" and is
configured like Qwen2 (Qwen2 regex with single digits, NFC, no BOS). No tokenizer library is
involved; run it from this folder.
"""
import json
import os


def bytes_to_unicode():
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [(b, chr(c)) for b, c in zip(bs, cs)]


MERGES = [  # rank: left, right -> id 256 + rank
    ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("in", "g"), ("Ġ", "a"), ("'", "s"),
    ("1", "2"), ("12", "3"), ("l", "l"), ("e", "ll"), ("h", "ell"), ("hell", "o"), ("Ġ", "w"),
    ("o", "r"), ("Ġw", "or"), ("l", "d"), ("Ġwor", "ld"), ("Ã", "©"), ("c", "a"), ("ca", "f"),
    ("caf", "Ã©"), ("Ġ", "Ġ"), ("Ċ", "Ċ"),
]

LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def vocab():
    v = {}
    for i, (_, ch) in enumerate(bytes_to_unicode()):
        v[ch] = i
    for r, (a, b) in enumerate(MERGES):
        v[a + b] = 256 + r
    v["Ġxyz"] = 256 + len(MERGES)  # 280
    return v


def added(i, content, special):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": special}


def write(folder, tok, cfg, gen):
    os.makedirs(folder, exist_ok=True)
    for name, obj in (("tokenizer.json", tok), ("tokenizer_config.json", cfg), ("generation_config.json", gen)):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=1)
            f.write("\n")


def main():
    n = len(vocab())  # 281
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab()}
    llama3 = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(n, "<|begin_of_text|>", True), added(n + 1, "<|end_of_text|>", True),
                         added(n + 2, "<|eot_id|>", True), added(n + 3, "<extra>", False)],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_RE}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                      {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                      {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [n],
                                                      "tokens": ["<|begin_of_text|>"]}}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": dict(model, ignore_merges=True, merges=[[a, b] for a, b in MERGES]),
    }
    write("llama3_tiny", llama3,
          {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "clean_up_tokenization_spaces": True,
           "model_max_length": 8192, "tokenizer_class": "PreTrainedTokenizerFast"},
          {"bos_token_id": n, "eos_token_id": [n + 1, n + 2]})
    qwen2 = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(n, "<|endoftext|>", True), added(n + 1, "<|im_start|>", True),
                         added(n + 2, "<|im_end|>", True), added(n + 3, "<tool_call>", False)],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_RE}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": dict(model, ignore_merges=False, merges=[a + " " + b for a, b in MERGES]),
    }
    write("qwen2_tiny", qwen2,
          {"add_prefix_space": False, "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
           "errors": "replace", "model_max_length": 32768, "tokenizer_class": "Qwen2Tokenizer", "unk_token": None},
          {"bos_token_id": n, "eos_token_id": [n + 2, n], "pad_token_id": n})


if __name__ == "__main__":
    main()
