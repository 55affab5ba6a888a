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

rope_tables.json: transformers' RoPE frequency tables (yarn, longrope) for a few real-sized
configs, read by the config and backend tests.

Needs torch and transformers (not needed by CI, which only reads the committed folders):
  /tmp/fetch-models/venv/bin/python scripts/gen_family_goldens.py [family ... | rope_tables]
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


def longrope_factors(n, lo, hi, seed):
    """n increasing per-frequency divisors in [lo, hi] (real LongRoPE lists rise with the dimension)."""
    r = np.random.default_rng(seed)
    return sorted(float(round(x, 4)) for x in r.uniform(lo, hi, size=n))


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
    f["starcoder2"] = (tf.Starcoder2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=16,
                                           norm_epsilon=1e-5, use_bias=True, hidden_act="gelu_pytorch_tanh",
                                           tie_word_embeddings=True, **COMMON), False)
    f["granite"] = (tf.GraniteConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6, attention_bias=True, mlp_bias=False,
                                     embedding_multiplier=4.0, residual_multiplier=0.7, attention_multiplier=0.15,
                                     logits_scaling=1.3, tie_word_embeddings=False, **COMMON), False)
    f["olmo2"] = (tf.Olmo2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6, attention_bias=False,
                                 tie_word_embeddings=False, **COMMON), False)
    f["stablelm"] = (tf.StableLmConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=1, num_key_value_heads=1, layer_norm_eps=1e-5,
                                       use_qkv_bias=True, qk_layernorm=False, use_parallel_residual=False,
                                       partial_rotary_factor=0.25, tie_word_embeddings=False, **COMMON), False)
    f["stablelm_parallel"] = (tf.StableLmConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                num_attention_heads=2, num_key_value_heads=2, layer_norm_eps=1e-5,
                                                use_qkv_bias=False, qk_layernorm=False, use_parallel_residual=True,
                                                partial_rotary_factor=0.5, tie_word_embeddings=False, **COMMON),
                              False)
    f["cohere"] = (tf.CohereConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, head_dim=16, layer_norm_eps=1e-5, logit_scale=0.5, attention_bias=False,
                                   use_qk_norm=False, tie_word_embeddings=True, **COMMON), False)
    # RoPE scaling variants (folder names <family>_<rope>). LongRoPE: the prompt (20 tokens) stays
    # within original_max_position_embeddings (32), so its logits use the short factors; the
    # perplexity windows (40) and the greedy continuation past 32 use the long ones (the greedy
    # golden recomputes every step, as transformers' Phi-3 generation does once it crosses 32).
    # YaRN: 16 frequencies over a pretraining context of 64, so the ramp between kept and
    # interpolated frequencies spans several of them.
    f["phi3_longrope"] = (tf.Phi3Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=1, num_key_value_heads=1, rms_norm_eps=1e-5,
                                        tie_word_embeddings=False, original_max_position_embeddings=32,
                                        rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                                         "partial_rotary_factor": 0.75,
                                                         "short_factor": longrope_factors(12, 1.0, 1.5, 3),
                                                         "long_factor": longrope_factors(12, 1.0, 24.0, 4)},
                                        **COMMON), False)
    f["qwen2_yarn"] = (tf.Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=1, num_key_value_heads=1, rms_norm_eps=1e-6,
                                      tie_word_embeddings=False,
                                      rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                                       "original_max_position_embeddings": 64},
                                      **COMMON), False)
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


def rope_cases():
    """config.json dicts whose RoPE tables tests/config and tests/backend compare with transformers'."""
    base = dict(vocab_size=VOCAB, intermediate_size=128, num_hidden_layers=1)
    r = np.random.default_rng(5)

    def factors(n, hi):
        return sorted(float(round(x, 4)) for x in r.uniform(1.0, hi, size=n))

    return {
        "llama_yarn": dict(model_type="llama", hidden_size=2048, num_attention_heads=32, max_position_embeddings=32768,
                           rope_parameters={"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 4096,
                                            "rope_theta": 500000.0}, **base),
        "qwen2_yarn_v4": dict(model_type="qwen2", hidden_size=1024, num_attention_heads=8,
                              max_position_embeddings=131072, rope_theta=1000000.0,
                              rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
                              **base),
        "llama_yarn_mscale": dict(model_type="llama", hidden_size=1024, num_attention_heads=16,
                                  max_position_embeddings=16384,
                                  rope_parameters={"rope_type": "yarn", "factor": 16.0, "mscale": 1.0,
                                                   "mscale_all_dim": 0.8, "beta_fast": 16, "beta_slow": 2,
                                                   "truncate": False, "original_max_position_embeddings": 1024,
                                                   "rope_theta": 10000.0}, **base),
        "llama_yarn_attention_factor": dict(model_type="llama", hidden_size=512, num_attention_heads=8,
                                            max_position_embeddings=8192,
                                            rope_parameters={"rope_type": "yarn", "factor": None,
                                                             "attention_factor": 1.25,
                                                             "original_max_position_embeddings": 2048,
                                                             "rope_theta": 10000.0}, **base),
        "phi3_longrope": dict(model_type="phi3", hidden_size=3072, num_attention_heads=32,
                              max_position_embeddings=131072, original_max_position_embeddings=4096,
                              rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                               "short_factor": factors(48, 1.1), "long_factor": factors(48, 60.0)},
                              **base),
        "phi3_su_attention_factor": dict(model_type="phi3", hidden_size=512, num_attention_heads=8,
                                         max_position_embeddings=65536,
                                         rope_scaling={"type": "su", "attention_factor": 1.1, "original_max_position_embeddings": 2048,
                                                       "short_factor": factors(32, 1.1),
                                                       "long_factor": factors(32, 30.0)}, **base),
        "phi4mini_partial": dict(model_type="phi3", hidden_size=3072, num_attention_heads=24, num_key_value_heads=8,
                                 max_position_embeddings=131072, original_max_position_embeddings=4096,
                                 partial_rotary_factor=0.75,
                                 rope_scaling={"type": "longrope", "short_factor": factors(48, 1.2),
                                               "long_factor": factors(48, 40.0)}, rope_theta=10000.0, **base),
        "llama_longrope_factor": dict(model_type="llama", hidden_size=512, num_attention_heads=8,
                                      max_position_embeddings=8192,
                                      rope_parameters={"rope_type": "longrope", "factor": 2.0,
                                                       "original_max_position_embeddings": 2048,
                                                       "short_factor": factors(32, 1.1),
                                                       "long_factor": factors(32, 8.0), "rope_theta": 10000.0},
                                      **base),
    }


def rope_tables():
    """tests/data/families/rope_tables.json: for each case, transformers' inverse frequencies (the
    long LongRoPE set too) and attention scaling, from the rotary embedding of the config's model."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    out = {"transformers": tf.__version__, "cases": {}}
    for name, d in rope_cases().items():
        cfg = tf.AutoConfig.for_model(**json.loads(json.dumps(d)))
        rp = cfg.rope_parameters
        init = ROPE_INIT_FUNCTIONS[rp["rope_type"]]
        inv, scale = init(cfg, None)
        case = {"config": d, "inv_freq": inv.double().tolist(), "attention_scaling": float(scale)}
        if rp["rope_type"] == "longrope":
            orig = rp["original_max_position_embeddings"]
            long_inv, _ = init(cfg, None, seq_len=orig + 1)
            case["long_inv_freq"] = long_inv.double().tolist()
            case["long_after"] = orig
        out["cases"][name] = case
    path = os.path.join(OUT, "rope_tables.json")
    with open(path + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print(f"rope_tables.json: {len(out['cases'])} cases")


def main():
    all_f = families()
    names = sys.argv[1:] or list(all_f) + ["rope_tables"]
    os.makedirs(OUT, exist_ok=True)
    for n in names:
        if n == "rope_tables":
            rope_tables()
            continue
        cfg, off = all_f[n]
        make(n, cfg, off)


if __name__ == "__main__":
    main()
