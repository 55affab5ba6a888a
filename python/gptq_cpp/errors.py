"""Exceptions raised by gptq_cpp.

Every error of the C++ library (a ``gptq::Error``) comes out as one of these classes, chosen by
its kind, with the library's message unchanged: the message names the file or argument, what was
expected and what was found. Each class also derives from the built-in exception that Python code
already catches for that kind of problem (``OSError`` for files, ``ValueError`` for bad arguments
and malformed input, ...), so ``except ValueError`` works as it would with AutoGPTQ.
"""

from __future__ import annotations

__all__ = [
    "GPTQError",
    "FileError",
    "FormatError",
    "ConfigError",
    "ShapeError",
    "UnsupportedError",
    "NumericError",
    "ArgumentError",
    "Interrupted",
]


class GPTQError(Exception):
    """Base class of every gptq_cpp error."""


class FileError(GPTQError, OSError):
    """A file or folder cannot be opened, read, written or renamed (kIo)."""


class FormatError(GPTQError, ValueError):
    """A file is malformed: safetensors, JSON, tokenizer (kFormat)."""


class ConfigError(GPTQError, ValueError):
    """config.json or a quantization config misses a key or holds a bad value (kConfig)."""


class ShapeError(GPTQError, ValueError):
    """A tensor's shape or dtype disagrees with what the config implies (kShape)."""


class UnsupportedError(GPTQError, NotImplementedError):
    """Valid input that gptq.cpp does not handle: a model type, a bit width, an option (kUnsupported)."""


class NumericError(GPTQError, ArithmeticError):
    """NaN/Inf, or a Hessian that stays indefinite after damping (kNumeric)."""


class ArgumentError(GPTQError, ValueError):
    """A bad argument: out of range, wrong type of data, ids outside the vocabulary (kArgument)."""


class Interrupted(KeyboardInterrupt):
    """The work was stopped (kInterrupted) with no Python exception to report instead.

    Ctrl-C itself comes out as the ``KeyboardInterrupt`` that Python's signal handler raised. Like
    that one, this is not an ``Exception``, so ``except Exception`` does not swallow it.
    """


# In the order of gptq::ErrorKind (include/gptq/error.h); registered with the extension.
_BY_KIND = (
    FileError,
    FormatError,
    ConfigError,
    ShapeError,
    UnsupportedError,
    NumericError,
    ArgumentError,
    Interrupted,
)
