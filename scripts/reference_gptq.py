#!/usr/bin/env python3
"""Runs the GPTQ paper's reference quantizer on a Hugging Face Llama-style folder, for quality
comparisons with `gptq quantize` on the same calibration tokens. Not part of CI: it needs pip's
torch and transformers, and a checkout of IST-DASLab/gptq (its gptq.py and quant.py are imported
from --gptq-repo as they are; nothing of them is copied here).

  # calibration windows, as JSONL rows of input_ids (also what `gptq quantize --calib` reads)
  reference_gptq.py calib --model DIR --text wikitext2-test.txt --skip-tokens 20480 \
      --nsamples 128 --seqlen 512 --seed 0 --out calib.jsonl
  # reference GPTQ (or --nearest for round-to-nearest), then perplexity as `gptq perplexity` does it
  reference_gptq.py quantize --model DIR --gptq-repo gptq/ --calib calib.jsonl \
      --bits 4 --group-size 64 [--asym] [--act-order] [--static-groups] [--mse] [--nearest] \
      --eval-text wikitext2-test.txt --windows 40 --ctx 512 --out result.json

Layer by layer, as the reference's llama.py does: the calibration windows are run up to the first
decoder layer, every layer's linears collect their Hessians from the current (already quantized
upstream) activations, are solved with GPTQ.fasterquant, and the layer's outputs computed with its
quantized weights become the next layer's inputs. True-sequential order (q,k,v | o | up,gate |
down) unless --no-true-sequential. The head and embeddings stay in fp32, as in the reference.

Perplexity: the first --windows non-overlapping windows of --ctx tokens of --eval-text, NLL of
tokens 1..ctx-1 of each window, ppl = exp(mean of the window means): the method of
`gptq perplexity` and of the reference figures in REFERENCE.json.
"""
import argparse
import json
import math
import random
import sys
import time


def load_tokenizer(model_dir):
    from tokenizers import Tokenizer
    return Tokenizer.from_file(model_dir + "/tokenizer.json")


def encode_text(model_dir, path):
    tok = load_tokenizer(model_dir)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return tok.encode(text, add_special_tokens=False).ids


def cmd_calib(args):
    ids = encode_text(args.model, args.text)
    pool = ids[args.skip_tokens:]
    if len(pool) < args.seqlen + 1:
        raise SystemExit("%s: only %d tokens after --skip-tokens %d" % (args.text, len(pool), args.skip_tokens))
    rng = random.Random(args.seed)
    with open(args.out, "w") as f:
        for _ in range(args.nsamples):
            start = rng.randint(0, len(pool) - args.seqlen - 1)
            f.write(json.dumps({"input_ids": pool[start:start + args.seqlen]}) + "\n")
    print("%s: %d windows of %d tokens from %s (tokens %d.. of %d)" % (
        args.out, args.nsamples, args.seqlen, args.text, args.skip_tokens, len(ids)))


def perplexity(model, ids, windows, ctx, batch=4):
    import torch
    need = windows * ctx
    if len(ids) < need:
        raise SystemExit("eval text has %d tokens, fewer than %d x %d" % (len(ids), windows, ctx))
    stream = torch.tensor(ids[:need], dtype=torch.long).view(windows, ctx)
    means = []
    with torch.no_grad():
        for b in range(0, windows, batch):
            x = stream[b:b + batch]
            logits = model(x, use_cache=False).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            nll = -logp.gather(-1, x[:, 1:].unsqueeze(-1)).squeeze(-1)
            means.extend(float(v) for v in nll.double().mean(dim=1))
    return math.exp(sum(means) / len(means))


def cmd_quantize(args):
    import torch
    import torch.nn as nn
    sys.path.insert(0, args.gptq_repo)
    # The reference synchronises CUDA after each solve; this runs on the CPU.
    torch.cuda.synchronize = lambda *a, **k: None
    torch.cuda.empty_cache = lambda *a, **k: None
    import gptq as ref_gptq
    import quant as ref_quant
    from transformers import AutoModelForCausalLM

    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    layers = model.model.layers

    with open(args.calib) as f:
        calib = [json.loads(line)["input_ids"] for line in f if line.strip()]
    calib = calib[:args.nsamples]
    t0 = time.time()

    # Inputs of the first decoder layer, and the keyword arguments it is called with (positions,
    # rotary embeddings, mask): every window has the same length, so one set serves all.
    class Captured(Exception):
        pass
    inps, kwargs = [], {}

    def catch(_mod, a, kw):
        inps.append(a[0] if a else kw.pop("hidden_states"))
        kwargs.clear()
        kwargs.update({k: v for k, v in kw.items() if k != "hidden_states"})
        raise Captured

    h = layers[0].register_forward_pre_hook(catch, with_kwargs=True)
    for ids in calib:
        try:
            model(torch.tensor([ids]), use_cache=False)
        except Captured:
            pass
    h.remove()
    kwargs["use_cache"] = False
    kwargs.pop("past_key_values", None)
    kwargs.pop("past_key_value", None)

    def run(layer, x):
        out = layer(x, **kwargs)
        return out[0] if isinstance(out, (tuple, list)) else out

    groups = [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.o_proj"],
              ["mlp.up_proj", "mlp.gate_proj"], ["mlp.down_proj"]]
    report = []
    for li, layer in enumerate(layers):
        linears = {n: m for n, m in layer.named_modules() if isinstance(m, nn.Linear)}
        order = groups if not args.no_true_sequential else [sum(groups, [])]
        for names in order:
            if args.nearest:
                for n in names:
                    W = linears[n].weight.data.float()
                    cols = W.shape[1]
                    gs = args.group_size if args.group_size > 0 else cols
                    Q = torch.empty_like(W)
                    for c in range(0, cols, gs):
                        qz = ref_quant.Quantizer()
                        qz.configure(args.bits, perchannel=True, sym=not args.asym, mse=args.mse)
                        qz.find_params(W[:, c:c + gs], weight=True)
                        Q[:, c:c + gs] = ref_quant.quantize(W[:, c:c + gs], qz.scale, qz.zero, qz.maxq)
                    linears[n].weight.data = Q.to(linears[n].weight.dtype)
                continue
            solvers = {}
            for n in names:
                g = ref_gptq.GPTQ(linears[n])
                g.quantizer = ref_quant.Quantizer()
                g.quantizer.configure(args.bits, perchannel=True, sym=not args.asym, mse=args.mse)
                solvers[n] = g

            def hook(name):
                def f(_m, inp, out):
                    solvers[name].add_batch(inp[0].data, out.data)
                return f
            hs = [linears[n].register_forward_hook(hook(n)) for n in names]
            for x in inps:
                run(layer, x)
            for hh in hs:
                hh.remove()
            for n in names:
                print("layer %d %s" % (li, n), flush=True)
                solvers[n].fasterquant(percdamp=args.damp, groupsize=args.group_size,
                                       actorder=args.act_order, static_groups=args.static_groups)
                solvers[n].free()
        if not args.nearest:  # round-to-nearest needs no activations
            inps = [run(layer, x) for x in inps]
        report.append(li)
        print("layer %d done, %.0fs" % (li, time.time() - t0), flush=True)
    t_quant = time.time() - t0

    ids = encode_text(args.model, args.eval_text)
    ppl = perplexity(model, ids, args.windows, args.ctx)
    setting = {k: getattr(args, k) for k in ("bits", "group_size", "asym", "act_order", "static_groups",
                                             "mse", "nearest", "damp", "no_true_sequential", "nsamples")}
    result = {"setting": setting, "calib": args.calib, "eval_text": args.eval_text,
              "windows": args.windows, "ctx": args.ctx, "ppl": ppl, "quantize_seconds": t_quant,
              "torch": torch.__version__}
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    if args.save:
        model.save_pretrained(args.save)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("calib", help="write calibration windows as JSONL input_ids rows")
    c.add_argument("--model", required=True)
    c.add_argument("--text", required=True)
    c.add_argument("--skip-tokens", type=int, default=0, help="leave the first N tokens out (the evaluated part)")
    c.add_argument("--nsamples", type=int, default=128)
    c.add_argument("--seqlen", type=int, default=512)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", required=True)
    q = sub.add_parser("quantize", help="reference GPTQ or RTN, then perplexity")
    q.add_argument("--model", required=True)
    q.add_argument("--gptq-repo", required=True, help="checkout of IST-DASLab/gptq (gptq.py, quant.py)")
    q.add_argument("--calib", required=True)
    q.add_argument("--nsamples", type=int, default=128)
    q.add_argument("--bits", type=int, default=4)
    q.add_argument("--group-size", type=int, default=128)
    q.add_argument("--asym", action="store_true")
    q.add_argument("--act-order", action="store_true")
    q.add_argument("--static-groups", action="store_true")
    q.add_argument("--mse", action="store_true")
    q.add_argument("--nearest", action="store_true", help="round to nearest instead of GPTQ")
    q.add_argument("--damp", type=float, default=0.01)
    q.add_argument("--no-true-sequential", action="store_true")
    q.add_argument("--eval-text", required=True)
    q.add_argument("--windows", type=int, default=40)
    q.add_argument("--ctx", type=int, default=512)
    q.add_argument("--threads", type=int, default=0)
    q.add_argument("--out")
    q.add_argument("--save", help="also save the fake-quantized fp32 model here")
    args = ap.parse_args(argv)
    {"calib": cmd_calib, "quantize": cmd_quantize}[args.cmd](args)


if __name__ == "__main__":
    main()
