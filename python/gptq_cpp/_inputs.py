"""Turning what users pass (lists, numpy arrays, torch tensors, a tokenizer's BatchEncoding, texts)
into the int32 token-id rows the C++ library takes, with clear errors for everything else.

Padding: a row's attention mask may zero positions at its start (left padding) and at its end
(right padding); those positions are cut off, so a padded row gives exactly what the unpadded row
gives. A mask with a hole (a 0 between two 1s) is refused: gptq.cpp runs each example as one
contiguous sequence, and dropping the hole would shift the positions of the tokens after it.
Split such a row into separate examples. A row whose mask is all zeros holds no tokens and is
dropped.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .errors import ArgumentError

IdRow = np.ndarray  # int32, 1-D, C-contiguous


def _is_text(x: Any) -> bool:
    return isinstance(x, str)


def _is_mapping(x: Any) -> bool:
    # dict, a tokenizer's BatchEncoding (a UserDict), or anything that has keys and items.
    return isinstance(x, Mapping) or (hasattr(x, "keys") and hasattr(x, "__getitem__") and not hasattr(x, "shape"))


def as_array(x: Any, what: str) -> np.ndarray:
    """x as a numpy array: lists, numpy arrays, anything with __array__ (torch CPU tensors) or
    .tolist() (torch tensors on any device, jax, ...). Ragged nested lists raise ArgumentError."""
    if isinstance(x, np.ndarray):
        return x
    if _is_text(x) or isinstance(x, (bytes, bytearray)):
        raise ArgumentError(f"{what}: expected token ids, got {type(x).__name__}")
    if not isinstance(x, (list, tuple)):
        if hasattr(x, "__array__"):
            try:
                return np.asarray(x)
            except (TypeError, RuntimeError):
                pass  # e.g. a CUDA tensor: .tolist() still works
        if hasattr(x, "tolist"):
            x = x.tolist()
        else:
            raise ArgumentError(f"{what}: expected a list or array of token ids, got {type(x).__name__}")
    if isinstance(x, (list, tuple)) and x and all(isinstance(r, (list, tuple, np.ndarray)) for r in x):
        lengths = [len(r) for r in x]
        if len(set(lengths)) > 1:
            raise ArgumentError(
                f"{what} is ragged: its rows have {_lengths(lengths)} tokens; pad them to one length and "
                f"give an attention_mask, or pass each row as its own example"
            )
    try:
        return np.asarray(x)
    except ValueError as e:  # inhomogeneous nesting deeper down
        raise ArgumentError(f"{what} is ragged or not numeric: {e}") from None


def _lengths(lengths: Sequence[int]) -> str:
    shown = ", ".join(str(n) for n in lengths[:8])
    return shown + (", ..." if len(lengths) > 8 else "")


def _as_rows(x: Any, what: str, kind: str) -> np.ndarray:
    """A [rows, T] array of integers (kind "ids") or of 0/1 (kind "mask") from 1-D or 2-D input."""
    a = as_array(x, what)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ArgumentError(f"{what}: expected 1 or 2 dimensions ([T] or [batch, T]), got shape {list(a.shape)}")
    if a.size == 0 and a.dtype == np.float64:
        a = a.astype(np.int64)  # [] and [[]] come out as float64
    if a.dtype == np.bool_:
        if kind == "ids":
            raise ArgumentError(f"{what}: expected integer token ids, got booleans")
        return a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise ArgumentError(f"{what}: expected integers, got {a.dtype} values")
    return a


def strip_padding(row_ids: np.ndarray, row_mask: Optional[np.ndarray], where: str) -> Optional[np.ndarray]:
    """The unpadded part of one row, or None when the mask selects nothing."""
    if row_mask is None:
        return row_ids
    if np.any((row_mask != 0) & (row_mask != 1)):
        bad = row_mask[(row_mask != 0) & (row_mask != 1)][0]
        raise ArgumentError(f"{where}: attention_mask holds {bad}; expected 0 or 1")
    keep = np.flatnonzero(row_mask)
    if keep.size == 0:
        return None
    first, last = int(keep[0]), int(keep[-1])
    if last - first + 1 != keep.size:
        hole = first + int(np.flatnonzero(row_mask[first : last + 1] == 0)[0])
        raise ArgumentError(
            f"{where}: attention_mask has a hole at position {hole} (a 0 between 1s); only padding at the "
            f"start or end of a row is supported: split the row into separate examples"
        )
    return row_ids[first : last + 1]


def _check_ids(row: np.ndarray, vocab: int, where: str) -> IdRow:
    if row.size == 0:
        raise ArgumentError(f"{where}: no tokens")
    bad = np.flatnonzero((row < 0) | (row >= vocab))
    if bad.size:
        p = int(bad[0])
        raise ArgumentError(
            f"{where}: token id {int(row[p])} at position {p} is outside the vocabulary [0, {vocab})"
        )
    return np.ascontiguousarray(row, dtype=np.int32)


def rows_from(input_ids: Any, attention_mask: Any, vocab: int, where: str) -> List[Tuple[int, IdRow, int, int]]:
    """(row index, unpadded ids, pad before, pad after) for each row of a batch that keeps tokens."""
    ids = _as_rows(input_ids, f"{where}: input_ids", "ids")
    mask = None
    if attention_mask is not None:
        mask = _as_rows(attention_mask, f"{where}: attention_mask", "mask")
        if mask.shape != ids.shape:
            raise ArgumentError(
                f"{where}: attention_mask has shape {list(mask.shape)} but input_ids has {list(ids.shape)}"
            )
    out = []
    for r in range(ids.shape[0]):
        rw = f"{where}: row {r}" if ids.shape[0] > 1 else where
        kept = strip_padding(ids[r], None if mask is None else mask[r], rw)
        if kept is None:
            continue
        before = 0 if mask is None else int(np.flatnonzero(mask[r])[0])
        after = ids.shape[1] - before - kept.size
        out.append((r, _check_ids(kept, vocab, rw), before, after))
    return out


def calibration_rows(examples: Any, vocab: int, context: int, encode) -> List[IdRow]:
    """Token-id rows for quantize(): see the module comment and GPTQCausalLM.quantize.

    ``encode(text)`` tokenizes a text with BOS as CausalLM::quantize does with texts; the result is
    cut to the context and dropped when empty, as there.
    """
    if examples is None:
        raise ArgumentError("quantize() needs calibration examples")
    if _is_text(examples) or _is_mapping(examples):
        items: Sequence[Any] = [examples]
    elif isinstance(examples, (list, tuple)):
        items = examples
        if items and isinstance(items[0], (numbers.Integral, np.integer)):
            items = [examples]  # one flat list of ids (GPTQModel's List[int])
    else:
        items = [examples]  # an array or tensor of ids, [T] or [batch, T]
    rows: List[IdRow] = []
    for i, ex in enumerate(items):
        where = f"examples[{i}]"
        if _is_text(ex):
            ids = np.asarray(encode(ex), dtype=np.int32)[:context]
            if ids.size:
                rows.append(np.ascontiguousarray(ids))
            continue
        if _is_mapping(ex):
            if "input_ids" not in ex:
                raise ArgumentError(f"{where}: a dict example needs 'input_ids' (keys: {sorted(ex.keys())})")
            mask = ex["attention_mask"] if "attention_mask" in ex else None
            found = rows_from(ex["input_ids"], mask, vocab, where)
        else:
            found = rows_from(ex, None, vocab, where)
        for _, row, _, _ in found:
            if row.size > context:
                raise ArgumentError(f"{where}: {row.size} tokens, more than the model's context of {context}")
            rows.append(row)
    if not rows:
        raise ArgumentError("quantize(): the examples hold no tokens (every row is empty or fully masked)")
    return rows
