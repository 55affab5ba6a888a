#!/usr/bin/env python3
"""Writes a Llama model folder (config.json + *.safetensors, F32/F16/BF16) as an F16 GGUF file, so
that llama.cpp's llama-bench can time the same shape and weights as `gptq bench`.

Speed only: q/k rows are not permuted to GGML's rotary layout and the vocabulary is a placeholder
of the right size, so the file generates nonsense; timings do not depend on either.

Usage: make_gguf.py MODEL_DIR OUT.gguf   (needs numpy and llama.cpp's gguf-py on PYTHONPATH)
"""
import json
import pathlib
import struct
import sys

import numpy as np
import gguf


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
    data = np.memmap(path, dtype=np.uint8, mode="r")
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[base + a:base + b]
        shape = info["shape"]
        dt = info["dtype"]
        if dt == "BF16":
            arr = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif dt == "F16":
            arr = raw.view(np.float16).astype(np.float32)
        elif dt == "F32":
            arr = raw.view(np.float32)
        else:
            raise SystemExit(f"{path}: tensor {name} has dtype {dt}; expected F32, F16 or BF16")
        yield name, arr.reshape(shape)


def main():
    src, out = pathlib.Path(sys.argv[1]), sys.argv[2]
    cfg = json.loads((src / "config.json").read_text())
    w = gguf.GGUFWriter(out, "llama")
    w.add_context_length(cfg.get("max_position_embeddings", 2048))
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    heads = cfg["num_attention_heads"]
    w.add_rope_dimension_count(cfg["hidden_size"] // heads)
    w.add_head_count(heads)
    w.add_head_count_kv(cfg.get("num_key_value_heads", heads))
    w.add_layer_norm_rms_eps(cfg.get("rms_norm_eps", 1e-5))
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    vocab = cfg["vocab_size"]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tokens += [f"tok{i}" for i in range(vocab - len(tokens))]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * (vocab - 259)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * vocab)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
                 "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                 "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down"}
    files = sorted(src.glob("*.safetensors"))
    if not files:
        raise SystemExit(f"{src}: no *.safetensors files")
    for f in files:
        for name, arr in read_safetensors(f):
            if name in names:
                gname = names[name]
            else:
                parts = name.split(".")  # model.layers.N.<module>.weight
                module = ".".join(parts[3:-1])
                if parts[:2] != ["model", "layers"] or module not in per_layer:
                    raise SystemExit(f"{f}: unexpected tensor {name}")
                gname = f"blk.{parts[2]}.{per_layer[module]}.weight"
            # Norms stay F32 (llama.cpp keeps 1-D tensors in F32); matrices become F16.
            w.add_tensor(gname, arr.astype(np.float32 if arr.ndim == 1 else np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
