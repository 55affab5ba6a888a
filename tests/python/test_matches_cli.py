"""quantize + save_quantized + from_quantized give what the CLI gives for the same settings: the
same bytes on disk and exactly the same perplexity (the same C++ code runs underneath)."""

from __future__ import annotations

import json

import pytest

import gptq_cpp
from conftest import STORIES, run_cli, write_jsonl

# (BaseQuantizeConfig arguments, the same settings as CLI flags)
CASES = [
    (dict(bits=4, group_size=32, desc_act=True), ["--bits", "4", "--group-size", "32", "--desc-act"]),
    (dict(bits=3, group_size=-1, desc_act=False, sym=False, damp_percent=0.05),
     ["--bits", "3", "--group-size", "-1", "--asym", "--damp", "0.05"]),
    (dict(bits=4, group_size=32, desc_act=False, grid="ggml", mse_hessian=True),
     ["--bits", "4", "--group-size", "32", "--grid", "ggml", "--mse-hessian"]),
]


def cli_quantize(cli, out, calib, flags):
    run_cli(cli, "quantize", "-m", str(STORIES), "-o", str(out), "--calib", str(calib), "--nsamples", "1000",
            "--seqlen", "512", *flags)


def cli_ppl(cli, model, eval_file):
    return json.loads(run_cli(cli, "perplexity", "-m", str(model), "-f", str(eval_file), "-c", "256", "--json"))


@pytest.mark.parametrize("args,flags", CASES, ids=["4bit-g32-act-order", "3bit-asym-per-row", "4bit-g32-ggml-grid-mse-hessian"])
def test_same_files_and_perplexity_as_cli(tmp_path, cli, calib_rows, eval_text, args, flags):
    calib = write_jsonl(tmp_path / "calib.jsonl", calib_rows)
    cli_quantize(cli, tmp_path / "cli", calib, flags)

    model = gptq_cpp.AutoGPTQForCausalLM.from_pretrained(STORIES, gptq_cpp.BaseQuantizeConfig(**args))
    model.quantize([{"input_ids": r, "attention_mask": [1] * len(r)} for r in calib_rows], progress=False)
    model.save_quantized(tmp_path / "py")

    for name in ["model.safetensors", "config.json", "quantize_config.json"]:
        assert (tmp_path / "py" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name

    eval_file = tmp_path / "eval.txt"
    eval_file.write_text(eval_text, encoding="utf-8")
    want = cli_ppl(cli, tmp_path / "cli", eval_file)
    q = gptq_cpp.AutoGPTQForCausalLM.from_quantized(tmp_path / "py")
    got = q.perplexity(eval_text, ctx=256, threads=1)
    assert got.ppl == want["ppl"]  # exactly: the same code path
    assert got.tokens == want["tokens"] and got.windows == want["windows"]
    # And the quantized model differs from the dense one (the comparison is not vacuous).
    assert cli_ppl(cli, STORIES, eval_file)["ppl"] != want["ppl"]


def test_texts_as_the_cli_reads_text_rows(tmp_path, cli, calib_text):
    texts = [calib_text[i * 5000 : i * 5000 + 700] for i in range(8)]
    calib = write_jsonl(tmp_path / "calib.jsonl", texts, key="text")
    cli_quantize(cli, tmp_path / "cli", calib, ["--group-size", "32"])
    model = gptq_cpp.GPTQModel.load(STORIES, gptq_cpp.QuantizeConfig(group_size=32, damp_percent=0.01))
    model.quantize(texts, progress=False)
    model.save(tmp_path / "py")
    assert (tmp_path / "py" / "model.safetensors").read_bytes() == (tmp_path / "cli" / "model.safetensors").read_bytes()
    # GPTQModel.load picks from_quantized for a checkpoint.
    assert gptq_cpp.GPTQModel.load(tmp_path / "py").info().quantized


def test_streaming_quantize_model_is_the_cli(tmp_path, cli, calib_rows):
    calib = write_jsonl(tmp_path / "calib.jsonl", calib_rows)
    cli_quantize(cli, tmp_path / "cli", calib, ["--group-size", "32"])
    rep = gptq_cpp.quantize_model(STORIES, tmp_path / "py", gptq_cpp.QuantizeConfig(group_size=32, damp_percent=0.01),
                                  calib_file=calib, nsamples=1000, seqlen=512, progress=False)
    assert rep.layers == 5 and rep.calibration_tokens == sum(len(r) for r in calib_rows)
    assert (tmp_path / "py" / "model.safetensors").read_bytes() == (tmp_path / "cli" / "model.safetensors").read_bytes()
    # Hidden states in a scratch file: the same bytes, and nothing left in its folder.
    (tmp_path / "spill").mkdir()
    gptq_cpp.quantize_model(STORIES, tmp_path / "disk", gptq_cpp.QuantizeConfig(group_size=32, damp_percent=0.01),
                            calib_file=calib, nsamples=1000, seqlen=512, progress=False, hidden_states="disk",
                            offload_dir=tmp_path / "spill")
    assert (tmp_path / "disk" / "model.safetensors").read_bytes() == (tmp_path / "cli" / "model.safetensors").read_bytes()
    assert not any((tmp_path / "spill").iterdir())
    with pytest.raises(gptq_cpp.ArgumentError, match="swap"):
        gptq_cpp.quantize_model(STORIES, tmp_path / "bad", gptq_cpp.QuantizeConfig(group_size=32), calib_file=calib,
                                progress=False, hidden_states="swap")
