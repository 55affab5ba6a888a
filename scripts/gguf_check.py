#!/usr/bin/env python3
"""Checks a GGUF file written by `gptq export-gguf` against the GPTQ folder it came from, with two
readers that share no code with gptq.cpp: llama.cpp's gguf-py (PyPI package `gguf`) reads and
dequantizes the GGUF, and scripts/gptq_format.py (numpy) dequantizes the GPTQ folder. Every
quantized linear must agree bit for bit (Q4_0, Q8_0, and Q4_1 where its offset m = -d*z is an
fp16 number; other Q4_1 blocks are reported with their largest difference over d), after undoing
the q/k row permutation llama.cpp's converter applies for llama-style RoPE (written here from the
converter's reshape/swapaxes). Dense tensors stored as F32 must equal the folder's values.

Usage: gguf_check.py OUT.gguf GPTQ_DIR [--json]   (exit 0: all exact; 1: a mismatch; 77: no gguf)
"""
import argparse
import json
import os
import sys

import numpy as np

try:
    import gguf
    from gguf.quants import dequantize as gguf_dequantize
except ImportError:
    print("gguf_check: the gguf package (llama.cpp's gguf-py) is not installed; skipped")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gptq_format as gf  # noqa: E402

ROLES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
         "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
         "mlp.down_proj": "ffn_down"}


def converter_permute(w, heads):
    # llama.cpp's convert_hf_to_gguf.py LlamaModel.permute, restated.
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def field_value(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    if f.types and f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    if f.types and f.types[0] == gguf.GGUFValueType.ARRAY:
        return len(f.data)
    return f.parts[f.data[0]].tolist()[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf_file")
    ap.add_argument("gptq_dir")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    reader = gguf.GGUFReader(args.gguf_file)
    tensors = {t.name: t for t in reader.tensors}
    with open(os.path.join(args.gptq_dir, "config.json")) as f:
        cfg = json.load(f)
    qc = cfg.get("quantization_config") or {}
    arch = field_value(reader, "general.architecture")
    problems, report = [], {"exact": 0, "q4_1_inexact_blocks": 0, "q4_1_max_err_over_d": 0.0, "linears": 0,
                            "dense_checked": 0, "types": {}}
    folder = gf.Folder(args.gptq_dir)
    for name in sorted(folder.names()):
        if not name.endswith(".qweight"):
            continue
        module = name[:-len(".qweight")]
        parts = module.split(".")
        layer, role = int(parts[2]), ".".join(parts[3:])
        gname = f"blk.{layer}.{ROLES[role]}.weight"
        scheme = dict(qc, **(gf.module_scheme(module, qc) or {}))
        qw, qz = folder.array(module + ".qweight"), folder.array(module + ".qzeros")
        sc = folder.array(module + ".scales").astype(np.float32)
        gi = folder.array(module + ".g_idx")
        want = gf.dequantize(qw, qz, sc, gi, scheme["bits"], scheme.get("checkpoint_format", "gptq"))
        if arch == "llama" and role in ("self_attn.q_proj", "self_attn.k_proj"):
            heads = cfg["num_attention_heads"] if role == "self_attn.q_proj" else cfg.get(
                "num_key_value_heads", cfg["num_attention_heads"])
            want = converter_permute(want, heads)
        t = tensors.get(gname)
        if t is None:
            problems.append(f"{gname} ({module}) missing from the GGUF")
            continue
        qtype = gguf.GGMLQuantizationType(t.tensor_type)
        report["types"][qtype.name] = report["types"].get(qtype.name, 0) + 1
        got = gguf_dequantize(np.asarray(t.data), qtype).reshape(want.shape)
        report["linears"] += 1
        same = got.astype(np.float32).view(np.uint32) == want.astype(np.float32).view(np.uint32)
        if same.all():
            report["exact"] += 1
            continue
        if qtype == gguf.GGMLQuantizationType.Q4_1:
            # Per block: the scale d is the block's first fp16; the difference must be a constant
            # (the offset's rounding) within each block.
            raw = np.asarray(t.data).reshape(-1, 20)
            d = raw[:, :2].copy().view(np.float16).astype(np.float64).reshape(want.shape[0], -1)
            diff = (got.astype(np.float64) - want.astype(np.float64)).reshape(want.shape[0], -1, 32)
            spread = diff.max(axis=2) - diff.min(axis=2)
            err = np.abs(diff).max(axis=2) / np.where(d == 0, 1, d)
            report["q4_1_inexact_blocks"] += int((np.abs(diff).max(axis=2) > 0).sum())
            report["q4_1_max_err_over_d"] = max(report["q4_1_max_err_over_d"], float(err.max()))
            if err.max() > 2.0**-7:
                problems.append(f"{gname}: Q4_1 offset error {err.max():g} d exceeds 2^-7 d")
            if (spread > 1e-6 * np.abs(want).max()).any():
                problems.append(f"{gname}: Q4_1 error is not constant within a block")
            continue
        bad = np.argwhere(~same)
        r, c = bad[0]
        problems.append(f"{gname} ({module}, {qtype.name}): {len(bad)} of {same.size} values differ; first "
                        f"[{r}, {c}]: gguf {got[r, c]!r}, gptq {want[r, c]!r}")
    # Dense tensors stored as F32 must be the folder's values exactly.
    dense = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    for l in range(cfg["num_hidden_layers"]):
        dense[f"blk.{l}.attn_norm.weight"] = f"model.layers.{l}.input_layernorm.weight"
        dense[f"blk.{l}.ffn_norm.weight"] = f"model.layers.{l}.post_attention_layernorm.weight"
    for gname, src in dense.items():
        t = tensors.get(gname)
        if t is None:
            if gname != "output.weight" or not cfg.get("tie_word_embeddings"):
                problems.append(f"{gname} missing from the GGUF")
            continue
        if t.tensor_type != gguf.GGMLQuantizationType.F32 or src not in folder.where:
            continue
        want = gf.to_f32(folder.where[src].tensors[src][0], folder.array(src))
        got = np.asarray(t.data).reshape(want.shape)
        report["dense_checked"] += 1
        if not np.array_equal(got.view(np.uint32), want.astype(np.float32).view(np.uint32)):
            problems.append(f"{gname}: F32 values differ from {src}")
    n_tok = field_value(reader, "tokenizer.ggml.tokens")
    if n_tok != cfg["vocab_size"]:
        problems.append(f"tokenizer.ggml.tokens has {n_tok} entries, vocab_size is {cfg['vocab_size']}")
    report["problems"] = problems
    if args.json:
        print(json.dumps(report))
    else:
        print(f"gguf_check: {report['exact']} of {report['linears']} quantized linears bit for bit "
              f"({report['types']}), {report['dense_checked']} F32 tensors equal; Q4_1 blocks with a rounded offset: "
              f"{report['q4_1_inexact_blocks']} (max {report['q4_1_max_err_over_d']:.3g} d)")
        for p in problems:
            print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
