"""Quantization settings: AutoGPTQ's ``BaseQuantizeConfig`` and GPTQModel's ``QuantizeConfig``."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

from . import _core
from .errors import ArgumentError, UnsupportedError

__all__ = ["BaseQuantizeConfig", "QuantizeConfig"]

_FILE = "quantize_config.json"


@dataclass
class BaseQuantizeConfig:
    """AutoGPTQ's quantization settings, with its field names and defaults.

    Fields as in AutoGPTQ: ``bits`` (2, 3, 4 or 8), ``group_size`` (-1: one group per output row,
    else 16..1024), ``damp_percent`` (in (0, 1); raised by 0.01 while the Cholesky factorization
    fails), ``desc_act`` (act-order), ``static_groups``, ``sym``, ``true_sequential``,
    ``quant_method`` (only "gptq"), ``checkpoint_format``, ``model_name_or_path`` and
    ``model_file_base_name`` (kept for compatibility; the files are always named ``model*``).

    ``checkpoint_format`` is "gptq" (v1 zero points; asymmetric ones packed as GPTQModel packs
    them, so that loaders that ignore the key read them right) or "gptq_v2"; None means "gptq".

    gptq.cpp's own fields: ``mse`` (search a clipping range per group; slower, slightly better),
    ``damp_search`` (damp_percent chosen per linear by cross-validation; slower),
    ``act_group_aware`` (GPTQModel's group-aware act-order; not with desc_act), ``method`` ("gptq", or "rtn" for the round-to-nearest baseline) and ``calib_dtype``
    ("fp32" or "bf16": the precision of the calibration Hessians; None means fp32), ``grid``
    ("gptq", or "ggml" for llama.cpp's Q4_0/Q8_0 scale rule, so that a g32 folder exports to GGUF
    as the blocks llama-quantize lays out; None means "gptq") and ``mse_hessian`` (the clipping
    search weights each column by GPTQ's loss weight; implies ``mse``).

    Settings are checked when the object is made: a bad one raises ArgumentError (a ValueError)
    naming the field.
    """

    bits: int = 4
    group_size: int = -1
    damp_percent: float = 0.01
    desc_act: bool = True
    static_groups: bool = False
    sym: bool = True
    true_sequential: bool = True
    quant_method: str = "gptq"
    checkpoint_format: Optional[str] = None
    model_name_or_path: Optional[str] = None
    model_file_base_name: Optional[str] = None
    mse: bool = False
    damp_search: bool = False
    act_group_aware: bool = False
    method: str = "gptq"
    calib_dtype: Optional[str] = None
    grid: Optional[str] = None
    mse_hessian: bool = False

    def __post_init__(self) -> None:
        self._to_cpp()  # validates

    def _to_cpp(self) -> "_core.QuantizeConfig":
        if str(self.quant_method).lower() != "gptq":
            raise UnsupportedError(f"quant_method = {self.quant_method!r}: gptq.cpp does GPTQ only")
        q = _core.QuantizeConfig()
        try:
            q.bits = int(self.bits)
            q.group_size = int(self.group_size)
            q.damp_percent = float(self.damp_percent)
        except (TypeError, ValueError) as e:
            raise ArgumentError(f"quantization config: {e}") from None
        q.desc_act = bool(self.desc_act)
        q.static_groups = bool(self.static_groups)
        q.sym = bool(self.sym)
        q.true_sequential = bool(self.true_sequential)
        q.mse = self._mse_flag()
        q.damp_search = bool(self.damp_search)
        q.act_group_aware = bool(self.act_group_aware)
        q.method = str(self.method)
        q.calib_dtype = "" if self.calib_dtype is None else str(self.calib_dtype).lower()
        q.format = "" if self.checkpoint_format is None else str(self.checkpoint_format).lower()
        q.grid = "" if self.grid is None else str(self.grid).lower()
        q.mse_hessian = bool(self.mse_hessian)
        _core.validate_quantize_config(q)
        return q

    def _mse_flag(self) -> bool:
        return bool(self.mse)

    def to_dict(self) -> Dict[str, Any]:
        """The settings as quantize_config.json stores them."""
        q = self._to_cpp()
        return {
            "bits": q.bits,
            "group_size": q.group_size,
            "damp_percent": q.damp_percent,
            "desc_act": q.desc_act,
            "static_groups": q.static_groups,
            "sym": q.sym,
            "true_sequential": q.true_sequential,
            "quant_method": "gptq",
            "checkpoint_format": q.format or "gptq",
            "model_name_or_path": self.model_name_or_path,
            "model_file_base_name": self.model_file_base_name,
        }

    def save_pretrained(self, save_dir: "str | os.PathLike[str]", **kwargs: Any) -> None:
        """Writes ``save_dir/quantize_config.json`` (save_quantized writes it too)."""
        os.makedirs(save_dir, exist_ok=True)
        with open(os.path.join(save_dir, _FILE), "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)

    @classmethod
    def from_pretrained(cls, save_dir: "str | os.PathLike[str]", **kwargs: Any) -> "BaseQuantizeConfig":
        """Reads quantize_config.json, or config.json's "quantization_config", of a folder."""
        path = os.path.join(save_dir, _FILE)
        try:
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    d = json.load(f)
            else:
                with open(os.path.join(save_dir, "config.json"), encoding="utf-8") as f:
                    d = json.load(f).get("quantization_config")
                if d is None:
                    raise ArgumentError(f"{save_dir}: no {_FILE} and no quantization_config in config.json")
        except OSError as e:
            from .errors import FileError

            raise FileError(f"{save_dir}: cannot read the quantization config: {e}") from None
        names = {f.name for f in dataclasses.fields(cls)}
        args = {k: v for k, v in d.items() if k in names}
        if "checkpoint_format" not in args and "format" in d:
            args["checkpoint_format"] = d["format"]
        args.update(kwargs)
        return cls(**args)


@dataclass
class QuantizeConfig(BaseQuantizeConfig):
    """GPTQModel's name for the settings, with GPTQModel's defaults for GPTQ.

    Differences from BaseQuantizeConfig: ``group_size`` 128, ``desc_act`` False, ``damp_percent``
    0.05; ``format`` is GPTQModel's name for ``checkpoint_format``; ``mse`` is GPTQModel's norm,
    where 0 turns the search off and 2.4 is the only other value gptq.cpp supports (its search
    minimises the error to the power 2.4); ``damp_auto_increment`` must be 0.01, gptq.cpp's step.
    """

    group_size: int = 128
    damp_percent: float = 0.05
    desc_act: bool = False
    format: Optional[str] = None
    mse: float = 0.0  # type: ignore[assignment]
    damp_auto_increment: float = 0.01

    def __post_init__(self) -> None:
        if self.format is not None:
            if self.checkpoint_format is not None and self.checkpoint_format != self.format:
                raise ArgumentError(
                    f"format = {self.format!r} and checkpoint_format = {self.checkpoint_format!r} disagree"
                )
            self.checkpoint_format = self.format
        if abs(float(self.damp_auto_increment) - 0.01) > 1e-12:
            raise UnsupportedError(
                f"damp_auto_increment = {self.damp_auto_increment}: gptq.cpp raises damp_percent by 0.01"
            )
        super().__post_init__()

    def _mse_flag(self) -> bool:
        m = float(self.mse)
        if m == 0.0:
            return False
        if abs(m - 2.4) < 1e-9:
            return True
        raise UnsupportedError(f"mse = {self.mse}: gptq.cpp's clipping search uses the norm 2.4 (or 0: off)")
