"""gptq_cpp: GPTQ quantization and CPU inference with AutoGPTQ's API, on gptq.cpp's C++ core.

No PyTorch needed. The five lines of AutoGPTQ work with only the import changed::

    from gptq_cpp import AutoGPTQForCausalLM, BaseQuantizeConfig
    quantize_config = BaseQuantizeConfig(bits=4, group_size=128)
    model = AutoGPTQForCausalLM.from_pretrained(model_dir, quantize_config)
    model.quantize(examples)
    model.save_quantized(out_dir)

``AutoGPTQForCausalLM.from_quantized(out_dir)`` loads the result to run it (``generate``,
``model(input_ids)`` logits, ``perplexity``); GPTQModel's names (``GPTQModel.load``,
``QuantizeConfig``, ``model.save``) are aliases. Errors are gptq_cpp.errors classes, which also
derive from the built-in exception for their kind (OSError, ValueError, ...).
"""

from . import _core
from . import errors as errors
from .config import BaseQuantizeConfig, QuantizeConfig
from .errors import (
    ArgumentError,
    ConfigError,
    FileError,
    FormatError,
    GPTQError,
    Interrupted,
    NumericError,
    ShapeError,
    UnsupportedError,
)
from .modeling import AutoGPTQForCausalLM, GPTQCausalLM, GPTQModel, quantize_model
from .tokenizer import Tokenizer

_core._set_error_classes(list(errors._BY_KIND))

__version__: str = _core.__version__
set_num_threads = _core.set_num_threads
num_threads = _core.num_threads
blas_kernels = _core.blas_kernels

__all__ = [
    "AutoGPTQForCausalLM",
    "BaseQuantizeConfig",
    "GPTQCausalLM",
    "GPTQModel",
    "QuantizeConfig",
    "Tokenizer",
    "quantize_model",
    "set_num_threads",
    "num_threads",
    "blas_kernels",
    "GPTQError",
    "FileError",
    "FormatError",
    "ConfigError",
    "ShapeError",
    "UnsupportedError",
    "NumericError",
    "ArgumentError",
    "Interrupted",
    "errors",
]
