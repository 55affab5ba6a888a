#!/usr/bin/env python3
"""Tiny random-weight models of each supported family, written by transformers itself, and
transformers' outputs for them: the goldens of tests/model/families_test.cpp.

For every family: the family's own config class with small sizes (hidden, intermediate and
head sizes multiples of 32 so that every linear quantizes at g32), 2+ layers, GQA where the
family has it, a sliding window shorter than the test sequences where it has one, biases where
it has them. Weights are random with a larger spread than the default initialisation (so that
logits and greedy choices are far apart), norm weights random too (so a missing norm offset
shows). The model is saved with save_pretrained in bf16, reloaded in fp32 with eager attention,
and run on fixed token streams:
  golden.json: prompt ids, last-position logits, 32 greedy tokens (full recompute per step, no
  cache), the smallest top-1/top-2 logit gap along the greedy path, and the perplexity windows
  as CausalLM::perplexity_ids builds them ([BOS] + stream cut into windows of `ctx`, every token
  but each window's first scored).

Needs torch and transformers (not needed by CI, which only reads the committed folders):
  /tmp/fetch-models/venv/bin/python scripts/gen_family_goldens.py [family ...]
"""

import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import transformers as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
OUT = os.path.join(DATA, "families")
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]

VOCAB = 512  # tests/data/stories260k's tokenizer
COMMON = dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0, max_position_embeddings=256)


def families():
    """name -> (config, norm weights stored as w - 1)."""
    f = {}
    f["qwen3"] = (tf.Qwen3Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6, tie_word_embeddings=False,
                                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, **COMMON), False)
    f["mistral"] = (tf.MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, head_dim=16, sliding_window=16, rms_norm_eps=1e-5,
                                     tie_word_embeddings=False, **COMMON), False)
    f["phi3"] = (tf.Phi3Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               num_key_value_heads=1, sliding_window=16, rms_norm_eps=1e-5, tie_word_embeddings=False,
                               original_max_position_embeddings=256,
                               rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                "partial_rotary_factor": 0.5}, **COMMON), False)
    f["gemma"] = (tf.GemmaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=1, head_dim=32, rms_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh",
                                 tie_word_embeddings=True, **COMMON), True)
    f["gemma2"] = (tf.Gemma2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6, query_pre_attn_scalar=12,
                                   sliding_window=16, attn_logit_softcapping=5.0, final_logit_softcapping=3.0,
                                   tie_word_embeddings=True, **COMMON), True)
    f["gemma3_text"] = (tf.Gemma3TextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                            num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                            rms_norm_eps=1e-6, query_pre_attn_scalar=16, sliding_window=16,
                                            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                                            rope_parameters={
                                                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                                "full_attention": {"rope_type": "linear", "factor": 4.0,
                                                                   "rope_theta": 1000000.0}},
                                            tie_word_embeddings=True, **COMMON), True)
    f["gpt_neox"] = (tf.GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                      layer_norm_eps=1e-5, use_parallel_residual=True, attention_bias=True,
                                      hidden_act="gelu", tie_word_embeddings=False,
                                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                       "partial_rotary_factor": 0.25}, **COMMON), False)
    f["opt"] = (tf.OPTConfig(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=2,
                             word_embed_proj_dim=32, activation_function="relu", enable_bias=True,
                             do_layer_norm_before=True, tie_word_embeddings=True, **COMMON), False)
    f["gpt2"] = (tf.GPT2Config(n_embd=32, n_inner=64, n_layer=2, n_head=2, activation_function="gelu_new",
                               layer_norm_epsilon=1e-5, tie_word_embeddings=True, **COMMON), False)
    return f


def randomize(model, offset_norms, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "norm" in name or ".ln_" in name:  # norm weights: around 1 (Gemma stores w - 1: around 0)
                p.copy_((0.0 if offset_norms else 1.0) + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.12 * torch.randn(p.shape, generator=gen))


def logits_of(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double()


def make(name, cfg, offset_norms):
    d = os.path.join(OUT, name)
    tmp = d + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    torch.manual_seed(0)
    cfg._attn_implementation = "eager"
    model = tf.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    randomize(model, offset_norms, torch.Generator().manual_seed(1234))
    model.to(torch.bfloat16).save_pretrained(tmp)
    for f in TOKENIZER_FILES:
        shutil.copy(os.path.join(DATA, "stories260k", f), tmp)
    # The goldens come from the folder as transformers loads it, in fp32.
    model = tf.AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32, attn_implementation="eager").eval()

    rng = np.random.default_rng(7)
    prompt = [1] + rng.integers(3, VOCAB, size=19).tolist()  # 20 ids, longer than the sliding windows
    last = logits_of(model, prompt)[-1]
    ids = list(prompt)
    min_gap = math.inf
    for _ in range(32):
        row = logits_of(model, ids)[-1]
        top = torch.topk(row, 2).values
        min_gap = min(min_gap, float(top[0] - top[1]))
        ids.append(int(row.argmax()))
    ctx = 40
    stream = rng.integers(3, VOCAB, size=2 * ctx - 1).tolist()
    win_ids = [1] + stream
    nll_sums = []
    for w in range(len(win_ids) // ctx):
        win = win_ids[w * ctx:(w + 1) * ctx]
        lp = torch.log_softmax(logits_of(model, win), dim=-1)
        nll_sums.append(float(-sum(lp[j - 1, win[j]] for j in range(1, ctx))))
    scored = len(nll_sums) * (ctx - 1)
    golden = {
        "family": name,
        "transformers": tf.__version__,
        "torch": torch.__version__,
        "prompt_ids": prompt,
        "last_logits": [float(x) for x in last],
        "greedy_new_ids": ids[len(prompt):],
        "greedy_min_top2_gap": min_gap,
        "ppl_stream": stream,
        "ppl_ctx": ctx,
        "ppl_window_nll_sum": nll_sums,
        "ppl_mean_nll": sum(nll_sums) / scored,
    }
    with open(os.path.join(tmp, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    shutil.rmtree(d, ignore_errors=True)
    os.rename(tmp, d)
    size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
    print(f"{name}: {size // 1024} KB, min top-2 gap {min_gap:.4f}, mean NLL {golden['ppl_mean_nll']:.5f}")


def main():
    all_f = families()
    names = sys.argv[1:] or list(all_f)
    os.makedirs(OUT, exist_ok=True)
    for n in names:
        cfg, off = all_f[n]
        make(n, cfg, off)


if __name__ == "__main__":
    main()
