"""generate, model(input_ids) and the tokenizer against the CLI and against each other."""

from __future__ import annotations

import numpy as np
import pytest

import gptq_cpp
from conftest import STORIES, run_cli

PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def model():
    return gptq_cpp.GPTQModel.load(STORIES)


@pytest.mark.parametrize("py,flags", [
    (dict(), ["--temp", "0"]),  # greedy, as Hugging Face's default
    (dict(do_sample=True, temperature=0.8, top_k=40, top_p=0.95, seed=3),
     ["--temp", "0.8", "--top-k", "40", "--top-p", "0.95", "--seed", "3"]),
    (dict(do_sample=True, temperature=1.3, top_k=None, top_p=None, seed=11),
     ["--temp", "1.3", "--top-k", "0", "--top-p", "1", "--seed", "11"]),
])
def test_generate_is_the_clis_generate(model, cli, py, flags):
    want = run_cli(cli, "generate", "-m", str(STORIES), "-p", PROMPT, "-n", "24", *flags).rstrip("\n")
    ids = model.generate(PROMPT, max_new_tokens=24, **py)
    assert ids.dtype == np.int64 and ids.ndim == 1
    assert ids[: len(model.tokenizer.encode(PROMPT))].tolist() == model.tokenizer.encode(PROMPT)
    assert model.tokenizer.decode(ids) == want


def test_streamed_text_is_the_decoded_continuation(model):
    pieces = []
    ids = model.generate(PROMPT, max_new_tokens=30, on_text=pieces.append)
    n = len(model.tokenizer.encode(PROMPT))
    assert PROMPT + "".join(pieces) == model.tokenizer.decode(ids)
    assert len(ids) - n == 30 or ids[-1] == model.tokenizer.eos_token_id


def test_a_padded_batch_generates_what_each_row_generates(model):
    prompts = [PROMPT, "The little dog ran to the park and", "Tom"]
    enc = [model.tokenizer.encode(p) for p in prompts]
    singles = [model.generate(e, max_new_tokens=12) for e in enc]
    n = max(len(e) for e in enc)
    ids = np.array([[2] * (n - len(e)) + e for e in enc])
    mask = np.array([[0] * (n - len(e)) + [1] * len(e) for e in enc])
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12)
    assert out.shape[0] == 3
    for r, s in enumerate(singles):
        assert out[r, n - len(enc[r]) : n - len(enc[r]) + len(s)].tolist() == s.tolist()
    # As Hugging Face is called: generate(**tokenizer(...)) with a mapping of arrays.
    assert model.generate(**model.tokenizer(PROMPT, return_tensors="np"), max_new_tokens=12)[0].tolist() == \
        singles[0].tolist()


def test_max_length_counts_the_prompt(model):
    n = len(model.tokenizer.encode(PROMPT))
    assert len(model.generate(PROMPT, max_length=n + 5, ignore_eos=True)) == n + 5


def test_logits_of_rows_and_of_a_masked_batch(model):
    a = model.tokenizer.encode("Once upon a time there was a cat")
    b = model.tokenizer.encode("Lily")
    la, lb = model(a), model(np.array(b))
    assert la.shape == (len(a), model.vocab_size) and la.dtype == np.float32
    # The next token after the prompt, by the logits, is what greedy generation picks.
    assert int(np.argmax(la[-1])) == int(model.generate(a, max_new_tokens=1)[-1])
    ids = np.array([a, b + [2] * (len(a) - len(b))])
    mask = np.array([[1] * len(a), [1] * len(b) + [0] * (len(a) - len(b))])
    batch = model(ids, attention_mask=mask)
    assert batch.shape == (2, len(a), model.vocab_size)
    np.testing.assert_array_equal(batch[0], la)
    np.testing.assert_array_equal(batch[1, : len(b)], lb)
    assert np.isnan(batch[1, len(b) :]).all()


def test_tokenizer_round_trip_and_call(model):
    t = model.tokenizer
    ids = t.encode(PROMPT)
    assert ids[0] == t.bos_token_id and t.decode(ids) == PROMPT
    assert t.encode(PROMPT, add_special_tokens=False) == ids[1:]
    enc = t([PROMPT, "Tom"], padding=True, return_tensors="np")
    assert enc["input_ids"].shape == enc["attention_mask"].shape == (2, len(ids))
    assert enc["attention_mask"][1].tolist() == [1] * len(t.encode("Tom")) + [0] * (len(ids) - len(t.encode("Tom")))
    assert t.batch_decode(enc["input_ids"]) == [PROMPT, "Tom"]


def test_perplexity_conventions(model, tmp_path, cli, eval_text):
    f = tmp_path / "eval.txt"
    f.write_text(eval_text, encoding="utf-8")
    import json

    want = json.loads(run_cli(cli, "perplexity", "-m", str(STORIES), "-f", str(f), "-c", "128", "--bos-per-window",
                              "--chunks", "20", "--json"))
    got = model.perplexity(eval_text, ctx=128, bos_per_window=True, max_windows=20, threads=1)
    assert (got.ppl, got.tokens, got.windows) == (want["ppl"], want["tokens"], want["windows"])
    assert float(got) == got.ppl
    # A token stream (no BOS) gives what the text gives in the per-window convention.
    stream = model.tokenizer.encode(eval_text, add_special_tokens=False)
    assert model.perplexity(stream, ctx=128, bos_per_window=True, max_windows=20, threads=1).ppl == got.ppl
