"""Bad input raises a clear exception: the C++ library's message, as a class that is also the
built-in Python code catches for that kind of problem."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import gptq_cpp
from gptq_cpp import errors
from conftest import STORIES


@pytest.fixture(scope="module")
def dense():
    return gptq_cpp.AutoGPTQForCausalLM.from_pretrained(STORIES, gptq_cpp.BaseQuantizeConfig(group_size=32))


def test_five_bits_is_refused_with_the_libraries_message():
    with pytest.raises(ValueError) as e:
        gptq_cpp.BaseQuantizeConfig(bits=5)
    assert isinstance(e.value, gptq_cpp.ArgumentError)
    assert "bits = 5: must be one of 2, 3, 4, 8" in str(e.value)
    for bad, needle in [(dict(group_size=7), "group_size = 7"), (dict(damp_percent=1.5), "damp_percent = 1.5"),
                        (dict(checkpoint_format="marlin"), "gptq_v2"), (dict(method="awq"), "--method awq"),
                        (dict(calib_dtype="fp16"), "--calib-dtype fp16"), (dict(grid="k_quants"), "--grid k_quants"),
                        (dict(grid="ggml", bits=3), "--grid ggml with 3-bit")]:
        with pytest.raises(gptq_cpp.ArgumentError, match=needle):
            gptq_cpp.BaseQuantizeConfig(**bad)
    with pytest.raises(gptq_cpp.UnsupportedError):
        gptq_cpp.BaseQuantizeConfig(quant_method="awq")
    with pytest.raises(gptq_cpp.UnsupportedError, match="2.4"):
        gptq_cpp.QuantizeConfig(mse=2.0)


def test_a_missing_folder_is_an_oserror_naming_it(tmp_path):
    missing = tmp_path / "no-such-model"
    for load in [lambda: gptq_cpp.AutoGPTQForCausalLM.from_pretrained(missing, gptq_cpp.BaseQuantizeConfig()),
                 lambda: gptq_cpp.AutoGPTQForCausalLM.from_quantized(missing),
                 lambda: gptq_cpp.GPTQModel.load(missing),
                 lambda: gptq_cpp.Tokenizer.from_pretrained(missing)]:
        with pytest.raises(OSError) as e:
            load()
        assert isinstance(e.value, gptq_cpp.FileError)
        assert str(missing) in str(e.value)


def test_malformed_files_are_value_errors_naming_the_file(tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(STORIES, bad, ignore=shutil.ignore_patterns("golden"))
    (bad / "config.json").write_text("{ not json", encoding="utf-8")
    with pytest.raises(ValueError) as e:
        gptq_cpp.AutoGPTQForCausalLM.from_quantized(bad)
    assert isinstance(e.value, gptq_cpp.GPTQError) and "config.json" in str(e.value)
    cfg = json.loads((STORIES / "config.json").read_text())
    cfg["model_type"] = "gpt_bigcode"
    (bad / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(NotImplementedError, match="gpt_bigcode"):
        gptq_cpp.AutoGPTQForCausalLM.from_pretrained(bad, gptq_cpp.BaseQuantizeConfig())


def test_ragged_input_ids_are_refused(dense):
    for call in [lambda: dense.quantize([{"input_ids": [[1, 2, 3], [1, 2]]}], progress=False),
                 lambda: dense([[1, 2, 3], [1, 2]]),
                 lambda: dense.generate(input_ids=[[1, 2, 3], [1, 2]])]:
        with pytest.raises(gptq_cpp.ArgumentError, match="ragged"):
            call()


def test_ids_beyond_the_vocabulary_are_refused(dense):
    for call in [lambda: dense.quantize([[1, 2, 512]], progress=False),
                 lambda: dense([1, 2, 600]),
                 lambda: dense.generate([1, 700]),
                 lambda: dense.tokenizer.decode([1, 512])]:
        with pytest.raises(gptq_cpp.ArgumentError, match="outside the vocabulary"):
            call()
    # The C++ check behind the Python one gives its own message through the same class.
    with pytest.raises(gptq_cpp.ArgumentError, match=r"token id 600 at position 1 is outside the vocabulary \[0, 512\)"):
        dense._m.logits(np.array([1, 600], dtype=np.int32))


def test_quantized_model_refuses_to_quantize_and_dense_refuses_from_quantized(tmp_path, dense):
    with pytest.raises(gptq_cpp.ConfigError, match="not a GPTQ checkpoint"):
        gptq_cpp.AutoGPTQForCausalLM.from_quantized(STORIES)
    with pytest.raises(gptq_cpp.ArgumentError, match="call quantize"):
        dense.save_quantized(tmp_path / "x")


def test_a_failed_quantize_leaves_a_model_that_says_so(calib_rows):
    model = gptq_cpp.AutoGPTQForCausalLM.from_pretrained(STORIES, gptq_cpp.BaseQuantizeConfig(group_size=32))

    class Stop(Exception):
        pass

    def progress(stage, done, total, item):
        if done == 2:
            raise Stop("from the callback")

    with pytest.raises(Stop, match="from the callback"):  # the callback's own exception, unchanged
        model.quantize(calib_rows, progress=progress)
    with pytest.raises(gptq_cpp.ArgumentError, match="load the model again"):
        model([1, 2, 3])
    with pytest.raises(gptq_cpp.ArgumentError, match="load the model again"):
        model.quantize(calib_rows, progress=False)


def test_every_error_kind_has_a_class():
    assert len(errors._BY_KIND) == len(gptq_cpp._core.error_kinds)
    assert issubclass(gptq_cpp.Interrupted, KeyboardInterrupt)
    assert not issubclass(gptq_cpp.Interrupted, Exception)


def test_unknown_keyword_arguments_are_type_errors(dense):
    with pytest.raises(TypeError, match="no_such_option"):
        dense.quantize([[1, 2]], no_such_option=1)
    with pytest.raises(TypeError, match="no_such_option"):
        gptq_cpp.AutoGPTQForCausalLM.from_quantized(STORIES, no_such_option=1)
