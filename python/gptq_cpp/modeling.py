"""The model object and the AutoGPTQ / GPTQModel entry points."""

from __future__ import annotations

import json
import os
import re
import warnings
from types import SimpleNamespace
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import numpy as np

from . import _core, _inputs, _progress
from .config import BaseQuantizeConfig, QuantizeConfig
from .errors import ArgumentError, ConfigError, UnsupportedError
from .tokenizer import Tokenizer

__all__ = ["GPTQCausalLM", "AutoGPTQForCausalLM", "GPTQModel", "quantize_model"]

PathLike = Union[str, "os.PathLike[str]"]

# Keyword arguments of AutoGPTQ / GPTQModel that choose devices, kernels or memory placement.
# gptq.cpp runs on the CPU with its own kernels, so these have no meaning here and are accepted
# and ignored (a script written for those tools runs unchanged).
_IGNORED_LOAD_KWARGS = {
    "max_memory", "trust_remote_code", "torch_dtype", "dtype", "low_cpu_mem_usage", "device_map",
    "use_triton", "use_qigen", "use_marlin", "inject_fused_attention", "inject_fused_mlp",
    "use_cuda_fp16", "use_safetensors", "warmup_triton", "trainable", "disable_exllama",
    "disable_exllamav2", "use_tritonv2", "model_basename", "backend", "profile", "revision",
    "cache_dir", "local_files_only", "attn_implementation", "checkpoint_format",
}
_IGNORED_QUANTIZE_KWARGS = {
    "use_triton", "use_cuda_fp16", "autotune_warmup_after_quantized", "cache_examples_on_gpu",
    "calibration_sort", "backend", "tokenizer", "calibration_data_min_length",
    "calibration_concat_separator", "auto_gc",
}


def _check_kwargs(kwargs: Dict[str, Any], allowed: Iterable[str], call: str) -> None:
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"{call}() got unexpected keyword arguments: {', '.join(unknown)}")


def _check_device(device: Any) -> None:
    if device is None:
        return
    name = str(device)
    if not name.startswith("cpu"):
        warnings.warn(f"device={name!r}: gptq.cpp runs on the CPU; the device is ignored", stacklevel=3)


def _threads(n: Optional[int]) -> int:
    if n is None:
        return 0
    n = int(n)
    if n < 1:
        raise ArgumentError(f"threads = {n}: must be at least 1 (or None for the default)")
    return n


_SIZE_UNITS = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KIB": 1024.0, "MIB": 1024.0**2, "GIB": 1024.0**3}


def _parse_size(s: Union[int, str]) -> int:
    """Bytes of "4GB", "500MB", "2GiB" or an int, as the CLI's --max-shard-size reads them."""
    if isinstance(s, (int, np.integer)):
        v = int(s)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(s))
        if not m or m.group(2).upper() not in _SIZE_UNITS:
            raise ArgumentError(f"max_shard_size = {s!r}: expected a size like 4GB or 500MB")
        v = int(float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()])
    if v < 1:
        raise ArgumentError(f"max_shard_size = {s!r}: must be at least 1 byte")
    return v


def _read_config(path: str) -> Dict[str, Any]:
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}  # the C++ loader reports missing or malformed files with the full story


def _is_quantized_folder(path: str) -> bool:
    return os.path.exists(os.path.join(path, "quantize_config.json")) or "quantization_config" in _read_config(path)


class GPTQCausalLM:
    """A causal LM loaded by gptq.cpp: dense (to quantize) or a GPTQ checkpoint (to run).

    Made by ``AutoGPTQForCausalLM.from_pretrained`` / ``from_quantized`` or ``GPTQModel.load``.
    Every call that works releases the GIL, can be stopped with Ctrl-C (KeyboardInterrupt), and
    takes ``threads=`` for that call alone (default: the model's, given at load; else the
    process's, ``gptq_cpp.set_num_threads``). Quantization gives the same files at any thread
    count; logits may differ in float32 rounding.
    """

    def __init__(self, core: "_core.CausalLM", path: str, quantize_config: Optional[BaseQuantizeConfig],
                 threads: int) -> None:
        self._m = core
        self.model_dir = path
        self.quantize_config = quantize_config
        self._threads = threads
        self._quantized_here = False
        self.tokenizer = Tokenizer(core.tokenizer)
        self.config = SimpleNamespace(**_read_config(path))

    # -- facts -------------------------------------------------------------------------------

    @property
    def quantized(self) -> bool:
        """True for a GPTQ checkpoint, and for a model after quantize()."""
        return self._quantized_here or self._m.info().quantized

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def context_length(self) -> int:
        return self._m.context_length

    @property
    def vocab_size(self) -> int:
        return self._m.info().vocab

    def info(self) -> "_core.ModelInfo":
        """Architecture, sizes, dtypes and quantization settings (as ``gptq inspect``)."""
        return self._m.info()

    def to(self, device: Any) -> "GPTQCausalLM":
        _check_device(device)
        return self

    def eval(self) -> "GPTQCausalLM":
        return self

    def _t(self, threads: Optional[int]) -> int:
        return _threads(threads) or self._threads

    # -- quantization ------------------------------------------------------------------------

    def quantize(self, examples: Any, batch_size: int = 1, *, threads: Optional[int] = None,
                 progress: _progress.ProgressArg = None, calibration_concat_size: Optional[int] = None,
                 **kwargs: Any) -> "_core.QuantizeReport":
        """GPTQ-quantizes the model with the settings given at load, calibrated on ``examples``.

        ``examples``: a list whose items are texts (tokenized with BOS, cut to the context), dicts
        (or BatchEncodings) with ``input_ids`` and optionally ``attention_mask``, or token ids;
        ids may be lists, numpy arrays or anything with ``__array__`` / ``.tolist()`` (torch
        tensors), one row ``[T]`` or a batch ``[B, T]``. Every row is one calibration sequence.
        Masked positions never reach a Hessian: padding at either end of a row is cut off, so a
        padded row gives the same result as the row without padding; a mask with a hole is an
        ArgumentError (split the row instead); an all-zero row is dropped.

        ``batch_size`` and the GPU options of AutoGPTQ/GPTQModel are accepted and ignored (results
        do not depend on batching). ``progress``: True/None shows a bar per layer (tqdm if
        installed, else a line per layer on stderr), False nothing, or a callable
        ``f(stage, done, total, item)``. Returns the per-module report. If the call is
        interrupted or fails part-way, the model is unusable and must be loaded again.
        """
        _check_kwargs(kwargs, _IGNORED_QUANTIZE_KWARGS, "quantize")
        if calibration_concat_size:
            raise UnsupportedError("calibration_concat_size: concatenating calibration rows is not supported")
        if self._m.info().quantized:
            raise ArgumentError(f"{self.model_dir}: the model is already quantized; load the original model")
        rows = _inputs.calibration_rows(examples, self.vocab_size, self.context_length,
                                        lambda text: self.tokenizer.encode(text, True))
        fn = _progress.make(progress, True, "layer")
        try:
            rep = self._m.quantize_ids(rows, progress=fn, threads=self._t(threads))
        finally:
            _progress.close(fn)
        self._quantized_here = True
        return rep

    def save_quantized(self, save_dir: PathLike, use_safetensors: bool = True,
                       safetensors_metadata: Optional[Dict[str, str]] = None, *,
                       max_shard_size: Union[int, str] = "4GB", force: bool = True) -> None:
        """Writes the quantized model as a GPTQ folder: model.safetensors (or shards of at most
        ``max_shard_size``), config.json with quantization_config, quantize_config.json, and the
        tokenizer and generation files. The folder is written whole or not at all (temp +
        rename); an existing one is replaced, as a re-run of the same script expects
        (``force=False`` refuses instead)."""
        if not use_safetensors:
            raise UnsupportedError("use_safetensors=False: gptq.cpp writes safetensors only")
        if safetensors_metadata:
            raise UnsupportedError("safetensors_metadata: extra metadata in the weight files is not supported")
        self._m.save_quantized(os.fspath(save_dir), force=force, max_shard_bytes=_parse_size(max_shard_size))

    def save_pretrained(self, save_dir: PathLike, **kwargs: Any) -> None:
        """Alias of save_quantized (as in AutoGPTQ)."""
        self.save_quantized(save_dir, **kwargs)

    def save(self, save_dir: PathLike, safetensors_metadata: Optional[Dict[str, str]] = None,
             max_shard_size: Union[int, str] = "4GB", **kwargs: Any) -> None:
        """GPTQModel's name for save_quantized."""
        _check_kwargs(kwargs, {"meta_quantizer", "force"}, "save")
        self.save_quantized(save_dir, safetensors_metadata=safetensors_metadata, max_shard_size=max_shard_size,
                            force=kwargs.get("force", True))

    # -- running -----------------------------------------------------------------------------

    def __call__(self, input_ids: Any = None, attention_mask: Any = None, *, threads: Optional[int] = None,
                 **kwargs: Any) -> np.ndarray:
        """Logits as a float32 numpy array: ``[T, vocab]`` for one row of ids, ``[B, T, vocab]``
        for a batch (row i of a sequence predicts token i+1). Each row runs on its own; with an
        attention_mask, padding at the ends of a row is cut off before running it and its
        positions hold NaN in the result."""
        _check_kwargs(kwargs, {"use_cache", "return_dict", "labels"}, "forward")
        if input_ids is None:
            raise ArgumentError("input_ids is required")
        one_row = _inputs.as_array(input_ids, "input_ids").ndim == 1
        ids = _inputs._as_rows(input_ids, "input_ids", "ids")
        rows = _inputs.rows_from(ids, attention_mask, self.vocab_size, "input_ids")
        out = np.full((ids.shape[0], ids.shape[1], self.vocab_size), np.nan, dtype=np.float32)
        t = self._t(threads)
        for r, row, before, _ in rows:
            out[r, before : before + row.size] = self._m.logits(row, threads=t)
        return out[0] if one_row else out

    forward = __call__

    def generate(self, inputs: Any = None, *, input_ids: Any = None, attention_mask: Any = None,
                 max_new_tokens: Optional[int] = None, max_length: Optional[int] = None,
                 do_sample: bool = False, temperature: float = 1.0, top_k: Optional[int] = 50,
                 top_p: Optional[float] = 1.0, seed: int = 0, ignore_eos: bool = False,
                 pad_token_id: Optional[int] = None, on_text: Optional[Callable[[str], None]] = None,
                 threads: Optional[int] = None, **kwargs: Any) -> np.ndarray:
        """Continues prompts; ids in, ids out (int64 numpy), as Hugging Face's generate.

        The prompt: ``inputs`` or ``input_ids`` (one row ``[T]``, a batch ``[B, T]``, lists,
        arrays, tensors; with ``attention_mask`` for padded batches), or a text (tokenized with
        BOS). Returns each prompt followed by its new tokens, ``[T + n]`` for one row or a text,
        ``[B, T + n]`` for a batch (a row that stopped early at EOS is filled with
        ``pad_token_id``, by default EOS). Options as Hugging Face names them and defaults them:
        greedy unless ``do_sample``; then ``temperature``, ``top_k`` (None/0: off), ``top_p``
        (None/1: off) and ``seed``. ``max_new_tokens`` (default 128, the CLI's -n) or
        ``max_length`` (prompt + new); ``ignore_eos`` keeps going past EOS; ``on_text(piece)``
        receives the decoded text as it is made (one row only).
        """
        _check_kwargs(kwargs, {"num_beams", "use_cache", "num_return_sequences", "streamer",
                               "eos_token_id", "repetition_penalty", "min_new_tokens"}, "generate")
        if kwargs.get("num_beams", 1) != 1 or kwargs.get("num_return_sequences", 1) != 1:
            raise UnsupportedError("beam search and several sequences per prompt are not supported")
        if kwargs.get("repetition_penalty", 1.0) != 1.0 or kwargs.get("min_new_tokens", 0):
            raise UnsupportedError("repetition_penalty and min_new_tokens are not supported")
        if kwargs.get("streamer") is not None:
            raise UnsupportedError("streamer: pass on_text=callable to receive text as it is made")
        if inputs is not None and input_ids is not None:
            raise ArgumentError("give the prompt as inputs or input_ids, not both")
        prompt = inputs if inputs is not None else input_ids
        if prompt is None:
            raise ArgumentError("generate() needs a prompt (inputs or input_ids)")
        if _inputs._is_mapping(prompt):  # model.generate(tokenizer(...)) without **
            attention_mask = prompt.get("attention_mask", attention_mask)
            prompt = prompt["input_ids"]
        if isinstance(prompt, str):
            ids = np.asarray([self.tokenizer.encode(prompt, True)], dtype=np.int64)
            one_row = True
            if attention_mask is not None:
                raise ArgumentError("attention_mask goes with token ids, not with a text prompt")
        else:
            one_row = _inputs.as_array(prompt, "input_ids").ndim == 1
            ids = _inputs._as_rows(prompt, "input_ids", "ids")
        rows = _inputs.rows_from(ids, attention_mask, self.vocab_size, "input_ids")
        if len(rows) != ids.shape[0]:
            raise ArgumentError("input_ids: a row is fully masked: nothing to continue")
        if on_text is not None and len(rows) > 1:
            raise ArgumentError("on_text streams one row; pass a single prompt")
        if max_new_tokens is None:
            max_new_tokens = 128 if max_length is None else int(max_length) - ids.shape[1]
        elif max_length is not None:
            raise ArgumentError("give max_new_tokens or max_length, not both")
        if max_new_tokens < 1:
            raise ArgumentError(f"max_new_tokens = {max_new_tokens}: must be at least 1")
        if do_sample:
            if not temperature > 0:
                raise ArgumentError(f"temperature = {temperature}: must be > 0 when do_sample")
            temp = float(temperature)
        else:
            temp = 0.0
        pad = pad_token_id if pad_token_id is not None else (self.tokenizer.pad_token_id or 0)
        t = self._t(threads)
        new: List[List[int]] = []
        for _, row, _, _ in rows:
            res = self._m.generate_ids(row, n_predict=int(max_new_tokens), temperature=temp,
                                       top_k=int(top_k or 0), top_p=float(1.0 if top_p is None else top_p),
                                       seed=int(seed), ignore_eos=bool(ignore_eos), on_text=on_text, threads=t)
            new.append(list(res.new_ids))
        n = max(len(x) for x in new)
        out = np.full((ids.shape[0], ids.shape[1] + n), pad, dtype=np.int64)
        out[:, : ids.shape[1]] = ids
        for (r, _, _, after), x in zip(rows, new):
            # Right-padded prompts: the new tokens follow the last real token, as Hugging Face
            # would need the prompt's padding removed to do; the rest of the row is padding.
            start = ids.shape[1] - after
            out[r, start : start + len(x)] = x
            out[r, start + len(x) :] = pad
        return out[0] if one_row else out

    def perplexity(self, text: Union[str, Any], ctx: int = 512, *, bos_per_window: bool = False,
                   max_windows: Optional[int] = None, threads: Optional[int] = None,
                   progress: _progress.ProgressArg = None) -> "_core.PerplexityResult":
        """Perplexity of a text (or of a token-id stream without BOS) as ``gptq perplexity``:
        GPTQ-paper convention by default (tokenize once with BOS first, non-overlapping windows of
        ``ctx`` tokens, remainder dropped, every token but each window's first scored);
        ``bos_per_window``: each window is BOS + ctx-1 text tokens. The result has ``ppl``,
        ``nll``, ``tokens``, ``windows``; ``float(result)`` is the perplexity."""
        fn = _progress.make(progress, False, "window")
        mw = -1 if max_windows is None else int(max_windows)
        try:
            if isinstance(text, str):
                return self._m.perplexity(text, ctx=int(ctx), bos_per_window=bos_per_window, max_windows=mw,
                                          progress=fn, threads=self._t(threads))
            rows = _inputs.rows_from(text, None, self.vocab_size, "perplexity(ids)")
            if len(rows) != 1:
                raise ArgumentError("perplexity() takes one token stream, not a batch")
            return self._m.perplexity_ids(rows[0][1], ctx=int(ctx), bos_per_window=bos_per_window,
                                          max_windows=mw, progress=fn, threads=self._t(threads))
        finally:
            _progress.close(fn)

    def __repr__(self) -> str:
        i = self._m.info()
        q = f"GPTQ {i.bits}-bit g{i.group_size}" if i.quantized else ("quantized in memory" if self.quantized
                                                                        else "dense")
        return f"<GPTQCausalLM {i.architecture} {i.layers} layers, {q}, from {self.model_dir}>"


def _load(path: PathLike, quantize_config: Optional[BaseQuantizeConfig], threads: Optional[int],
          lm_head_bits: int = 0, progress: _progress.ProgressArg = None) -> GPTQCausalLM:
    p = os.fspath(path)
    if quantize_config is not None and not isinstance(quantize_config, BaseQuantizeConfig):
        if isinstance(quantize_config, dict):
            quantize_config = QuantizeConfig(**quantize_config)
        else:
            raise ArgumentError(f"quantize_config must be a BaseQuantizeConfig, got {type(quantize_config).__name__}")
    t = _threads(threads)
    fn = _progress.make(progress, False, "layer")
    try:
        core = _core.CausalLM.load(p, None if quantize_config is None else quantize_config._to_cpp(), threads=t,
                                   lm_head_bits=int(lm_head_bits), progress=fn)
    finally:
        _progress.close(fn)
    return GPTQCausalLM(core, p, quantize_config, t)


class AutoGPTQForCausalLM:
    """AutoGPTQ's entry points: ``from_pretrained`` to quantize, ``from_quantized`` to run."""

    def __init__(self) -> None:
        raise EnvironmentError("use AutoGPTQForCausalLM.from_pretrained() or .from_quantized()")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: PathLike, quantize_config: BaseQuantizeConfig,
                        max_memory: Optional[dict] = None, trust_remote_code: bool = False, *,
                        threads: Optional[int] = None, progress: _progress.ProgressArg = None,
                        **model_init_kwargs: Any) -> GPTQCausalLM:
        """Loads a dense Hugging Face model folder (local; fp32/fp16/bf16 safetensors) to quantize
        with ``quantize_config``. Device and dtype options are accepted and ignored."""
        _check_kwargs(model_init_kwargs, _IGNORED_LOAD_KWARGS, "from_pretrained")
        if quantize_config is None:
            raise ArgumentError("from_pretrained() needs a quantize_config (BaseQuantizeConfig)")
        return _load(pretrained_model_name_or_path, quantize_config, threads, progress=progress)

    @classmethod
    def from_quantized(cls, model_name_or_path: PathLike, device_map: Any = None, max_memory: Optional[dict] = None,
                       device: Any = None, *, threads: Optional[int] = None, lm_head_bits: int = 0,
                       progress: _progress.ProgressArg = None, quantize_config: Any = None,
                       **kwargs: Any) -> GPTQCausalLM:
        """Loads a GPTQ checkpoint folder (ours, AutoGPTQ's, GPTQModel's) to run on the CPU.
        ``lm_head_bits=8`` rounds a copy of the output projection to 8 bits (the CLI's
        --lm-head-bits). Kernel, device and dtype options are accepted and ignored (a device
        other than the CPU warns)."""
        _check_kwargs(kwargs, _IGNORED_LOAD_KWARGS, "from_quantized")
        _check_device(device)
        m = _load(model_name_or_path, None, threads, lm_head_bits=lm_head_bits, progress=progress)
        if not m.info().quantized:
            raise ConfigError(f"{os.fspath(model_name_or_path)}: not a GPTQ checkpoint (config.json has no "
                              f"quantization_config); load it with from_pretrained to quantize it")
        return m


class GPTQModel:
    """GPTQModel's entry points, as thin aliases: ``load`` picks from_quantized for a GPTQ
    checkpoint and from_pretrained (with ``quantize_config``, default ``QuantizeConfig()``)
    otherwise."""

    def __init__(self) -> None:
        raise EnvironmentError("use GPTQModel.load()")

    @classmethod
    def load(cls, model_id_or_path: PathLike, quantize_config: Optional[BaseQuantizeConfig] = None,
             device_map: Any = None, device: Any = None, *, threads: Optional[int] = None,
             lm_head_bits: int = 0, progress: _progress.ProgressArg = None, **kwargs: Any) -> GPTQCausalLM:
        _check_kwargs(kwargs, _IGNORED_LOAD_KWARGS, "load")
        _check_device(device)
        p = os.fspath(model_id_or_path)
        if os.path.isdir(p) and _is_quantized_folder(p):
            return _load(p, None, threads, lm_head_bits=lm_head_bits, progress=progress)
        return _load(p, quantize_config if quantize_config is not None else QuantizeConfig(), threads,
                     progress=progress)

    @classmethod
    def from_pretrained(cls, model_id_or_path: PathLike, quantize_config: BaseQuantizeConfig, *,
                        threads: Optional[int] = None, **kwargs: Any) -> GPTQCausalLM:
        return AutoGPTQForCausalLM.from_pretrained(model_id_or_path, quantize_config, threads=threads, **kwargs)

    @classmethod
    def from_quantized(cls, model_id_or_path: PathLike, device_map: Any = None, device: Any = None, *,
                       threads: Optional[int] = None, **kwargs: Any) -> GPTQCausalLM:
        return AutoGPTQForCausalLM.from_quantized(model_id_or_path, device_map=device_map, device=device,
                                                  threads=threads, **kwargs)


def quantize_model(model_dir: PathLike, out: PathLike, quantize_config: BaseQuantizeConfig, *,
                   calib_file: Optional[PathLike] = None, nsamples: int = 128, seqlen: int = 0, seed: int = 0,
                   threads: Optional[int] = None, force: bool = False, max_shard_size: Union[int, str] = "4GB",
                   progress: _progress.ProgressArg = None, hidden_states: str = "auto",
                   offload_dir: Optional[PathLike] = None) -> "_core.QuantizeReport":
    """The streaming path of ``gptq quantize`` (same arguments, same files): one decoder layer in
    memory at a time, calibration from a text or JSONL file (see the CLI's --calib), resumable
    after an interruption by calling it again with the same arguments. ``hidden_states``
    ("memory", "disk" or "auto": disk above 128 MiB) and ``offload_dir`` are the CLI's
    --hidden-states and --offload-dir."""
    if not isinstance(quantize_config, BaseQuantizeConfig):
        raise ArgumentError("quantize_config must be a BaseQuantizeConfig")
    fn = _progress.make(progress, True, "layer")
    try:
        return _core.quantize_model(os.fspath(model_dir), os.fspath(out), quantize_config._to_cpp(),
                                    calib_file=os.fspath(calib_file) if calib_file else "", nsamples=int(nsamples),
                                    seqlen=int(seqlen), seed=int(seed), threads=_threads(threads), force=force,
                                    max_shard_bytes=_parse_size(max_shard_size), progress=fn,
                                    hidden_states=hidden_states,
                                    offload_dir=os.fspath(offload_dir) if offload_dir else "")
    finally:
        _progress.close(fn)
