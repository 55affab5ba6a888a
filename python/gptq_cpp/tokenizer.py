"""The model folder's tokenizer (tokenizer.json, read by gptq.cpp), with the calls of a Hugging Face
tokenizer that quantization and generation scripts use."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from . import _core
from ._inputs import as_array
from .errors import ArgumentError, UnsupportedError

__all__ = ["Tokenizer"]


class Tokenizer:
    """Encodes and decodes text as the model's tokenizer.json says (Hugging Face's ids).

    ``tok(text)`` returns ``{"input_ids": [...], "attention_mask": [...]}`` like a Hugging Face
    tokenizer, so ``examples = [tok(t) for t in texts]`` is ready for ``model.quantize``.
    """

    padding_side: str = "right"

    def __init__(self, core: "_core.Tokenizer") -> None:
        # A model's tokenizer keeps its C++ model alive by itself (nanobind's reference_internal),
        # without a reference cycle that would hold a large model until the cyclic GC runs.
        self._t = core

    @classmethod
    def from_pretrained(cls, path: "str | os.PathLike[str]", **kwargs: Any) -> "Tokenizer":
        """Reads ``path/tokenizer.json`` (and tokenizer_config.json, generation_config.json)."""
        return cls(_core.Tokenizer.from_dir(os.fspath(path)))

    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        """Token ids of text; BOS first when add_special_tokens and the tokenizer adds one."""
        if not isinstance(text, str):
            raise ArgumentError(f"encode() takes a str, got {type(text).__name__}")
        return self._t.encode(text, add_special_tokens)

    def decode(self, token_ids: Any, skip_special_tokens: bool = True, **kwargs: Any) -> str:
        """Text of a sequence of ids (list, numpy array, tensor; a [1, T] batch is accepted)."""
        ids = as_array(token_ids, "decode(token_ids)")
        if ids.ndim == 0:
            ids = ids[None]
        if ids.ndim == 2 and ids.shape[0] == 1:
            ids = ids[0]
        if ids.ndim != 1:
            raise ArgumentError(f"decode() takes one sequence of ids, got shape {list(ids.shape)}; use batch_decode")
        if ids.size and ids.dtype.kind not in "iu":
            raise ArgumentError(f"decode(): expected integer ids, got {ids.dtype}")
        vocab = self.vocab_size
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            bad = ids[(ids < 0) | (ids >= vocab)][0]
            raise ArgumentError(f"decode(): token id {int(bad)} is outside the vocabulary [0, {vocab})")
        return self._t.decode(np.ascontiguousarray(ids, dtype=np.int32), skip_special_tokens)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = True, **kwargs: Any) -> List[str]:
        return [self.decode(s, skip_special_tokens) for s in sequences]

    def __call__(
        self,
        text: Union[str, Sequence[str]],
        add_special_tokens: bool = True,
        padding: Union[bool, str] = False,
        return_tensors: Optional[str] = None,
        **kwargs: Any,
    ) -> Dict[str, Any]:
        """``{"input_ids", "attention_mask"}`` of a text, or of a list of texts (one row each;
        ``padding=True`` pads them to the longest on ``padding_side`` with the pad/EOS id).
        ``return_tensors="np"`` gives numpy arrays; torch tensors are not made (no torch here)."""
        if return_tensors not in (None, "np"):
            raise UnsupportedError(f"return_tensors={return_tensors!r}: only None (lists) and 'np' are supported")
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        rows = [self.encode(t, add_special_tokens) for t in texts]
        if padding in (True, "longest", "max_length") and len(rows) > 1:
            n = max(len(r) for r in rows)
            pad = self.pad_token_id if self.pad_token_id is not None else 0
            ids, masks = [], []
            for r in rows:
                fill = [pad] * (n - len(r))
                ids.append(fill + r if self.padding_side == "left" else r + fill)
                m = [0] * (n - len(r))
                masks.append(m + [1] * len(r) if self.padding_side == "left" else [1] * len(r) + m)
        else:
            ids, masks = rows, [[1] * len(r) for r in rows]
        if single:
            out: Dict[str, Any] = {"input_ids": ids[0], "attention_mask": masks[0]}
        else:
            out = {"input_ids": ids, "attention_mask": masks}
        if return_tensors == "np":
            try:
                out = {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}
            except ValueError:
                raise ArgumentError("return_tensors='np' needs rows of one length: pass padding=True") from None
            if single:
                out = {k: v[None, :] for k, v in out.items()}
        return out

    @property
    def vocab_size(self) -> int:
        return self._t.vocab_size

    def __len__(self) -> int:
        return self._t.vocab_size

    @property
    def bos_token_id(self) -> Optional[int]:
        b = self._t.bos_id
        return None if b < 0 else b

    @property
    def eos_token_id(self) -> Optional[int]:
        e = self._t.eos_ids
        return e[0] if e else None

    @property
    def eos_token_ids(self) -> List[int]:
        return list(self._t.eos_ids)

    @property
    def pad_token_id(self) -> Optional[int]:
        """The EOS id (gptq.cpp's tokenizer has no pad token of its own)."""
        return self.eos_token_id

    @property
    def add_bos_token(self) -> bool:
        return self._t.add_bos

    def convert_ids_to_tokens(self, ids: Union[int, Sequence[int]]) -> Union[str, List[str]]:
        if isinstance(ids, (int, np.integer)):
            return self._t.id_to_piece(int(ids))
        return [self._t.id_to_piece(int(i)) for i in ids]
