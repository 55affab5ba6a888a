"""What quantize() accepts as examples, and that padding never reaches a Hessian: padded rows with
an attention mask give byte-for-byte the checkpoint of the unpadded rows."""

from __future__ import annotations

from collections import UserDict

import numpy as np
import pytest

import gptq_cpp
from gptq_cpp import _inputs
from conftest import STORIES

PAD = 2


class TensorLike:
    """Has only __array__, as a CPU torch tensor seen through numpy."""

    def __init__(self, a):
        self._a = np.asarray(a)

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


class ListOnly:
    """Has only .tolist(), as a tensor on a device numpy cannot read."""

    def __init__(self, a):
        self._a = np.asarray(a)

    def tolist(self):
        return self._a.tolist()


class BatchEncodingLike(UserDict):
    """transformers.BatchEncoding is a UserDict of arrays or tensors."""


def pad(rows, side):
    n = max(len(r) for r in rows)
    ids, mask = [], []
    for r in rows:
        fill = [PAD] * (n - len(r))
        ids.append(fill + list(r) if side == "left" else list(r) + fill)
        m = [0] * (n - len(r))
        mask.append(m + [1] * len(r) if side == "left" else [1] * len(r) + m)
    return ids, mask


def quantized_bytes(tmp_path, name, examples):
    model = gptq_cpp.AutoGPTQForCausalLM.from_pretrained(STORIES, gptq_cpp.BaseQuantizeConfig(group_size=32))
    model.quantize(examples, progress=False)
    model.save_quantized(tmp_path / name)
    return (tmp_path / name / "model.safetensors").read_bytes()


def test_padded_rows_with_mask_equal_unpadded_rows(tmp_path, calib_rows):
    plain = quantized_bytes(tmp_path, "plain", [{"input_ids": r} for r in calib_rows])

    a, b, c = calib_rows[:4], calib_rows[4:8], calib_rows[8:]
    ids_l, mask_l = pad(a, "left")
    ids_r, mask_r = pad(b, "right")
    ids_c, mask_c = pad(c, "left")
    # A fully padded row holds no tokens and is dropped; it must not change anything either.
    ids_c.append([PAD] * len(ids_c[0]))
    mask_c.append([0] * len(mask_c[0]))
    padded = [
        BatchEncodingLike(input_ids=np.array(ids_l, dtype=np.int64), attention_mask=np.array(mask_l)),
        {"input_ids": ids_r, "attention_mask": TensorLike(np.array(mask_r, dtype=bool))},
        {"input_ids": TensorLike(ids_c), "attention_mask": ListOnly(mask_c)},
    ]
    assert quantized_bytes(tmp_path, "padded", padded) == plain

    # Without the mask the padding would be calibrated on: a different checkpoint.
    unmasked = [{"input_ids": ids_l}, {"input_ids": ids_r}, {"input_ids": ids_c[:-1]}]
    assert quantized_bytes(tmp_path, "unmasked", unmasked) != plain


def rows(examples, vocab=512, context=512):
    enc = gptq_cpp.Tokenizer.from_pretrained(STORIES)
    return [r.tolist() for r in _inputs.calibration_rows(examples, vocab, context, lambda t: enc.encode(t, True))]


def test_every_form_of_ids_gives_the_same_rows():
    r0, r1 = [1, 5, 6, 7], [1, 9, 10, 11]
    want = [r0, r1]
    assert rows([r0, r1]) == want
    assert rows([{"input_ids": r0}, {"input_ids": r1}]) == want
    assert rows([{"input_ids": [r0, r1], "attention_mask": [[1] * 4, [1] * 4]}]) == want
    assert rows(np.array(want)) == want
    assert rows([np.array(r0, dtype=np.int32), np.array(r1, dtype=np.uint16)]) == want
    assert rows([TensorLike(want)]) == want
    assert rows([ListOnly(want)]) == want
    assert rows(BatchEncodingLike(input_ids=np.array(want))) == want
    assert rows(r0) == [r0]  # one flat list of ids (GPTQModel's List[int])
    assert rows([{"input_ids": [0, 0] + r0, "attention_mask": [0, 0, 1, 1, 1, 1]}]) == [r0]
    # Texts are tokenized with BOS and cut to the context.
    t = gptq_cpp.Tokenizer.from_pretrained(STORIES)
    assert rows(["Once upon a time"]) == [t.encode("Once upon a time")]
    assert rows(["Once upon a time"], context=3) == [t.encode("Once upon a time")[:3]]


@pytest.mark.parametrize(
    "examples,needle",
    [
        ([{"input_ids": [[1, 2, 3], [1, 2]]}], "ragged: its rows have 3, 2 tokens"),
        ([[1, 2, 3], [1, 2, 600]], "token id 600 at position 2 is outside the vocabulary [0, 512)"),
        ([[1, -4, 3]], "token id -4 at position 1"),
        ([{"input_ids": [1, 2, 3, 4], "attention_mask": [1, 0, 1, 1]}], "hole at position 1"),
        ([{"input_ids": [1, 2, 3], "attention_mask": [1, 1]}], "attention_mask has shape [1, 2]"),
        ([{"input_ids": [1, 2], "attention_mask": [1, 2]}], "attention_mask holds 2"),
        ([{"input_ids": [1.0, 2.0]}], "expected integers, got float64"),
        ([{"input_ids": [1, 2], "attention_mask": [0, 0]}], "hold no tokens"),
        ([{"ids": [1, 2]}], "needs 'input_ids'"),
        ([[[[1]]]], "expected 1 or 2 dimensions"),
        ([list(range(1, 300)) * 2], "598 tokens, more than the model's context of 512"),
        ([], "hold no tokens"),
    ],
)
def test_bad_examples_are_clear_argument_errors(examples, needle):
    with pytest.raises(gptq_cpp.ArgumentError) as e:
        rows(examples)
    assert needle in str(e.value)
    assert isinstance(e.value, ValueError)


def test_torch_tensors_when_torch_is_installed(tmp_path, calib_rows):
    torch = pytest.importorskip("torch")  # not in CI: the package never needs it
    want = [{"input_ids": r} for r in calib_rows[:3]]
    ids, mask = pad(calib_rows[:3], "left")
    got = [{"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}]
    assert quantized_bytes(tmp_path, "a", got) == quantized_bytes(tmp_path, "b", want)
