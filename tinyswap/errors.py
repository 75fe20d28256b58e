"""One exception hierarchy for everything tinyswap refuses.

Every message names the thing that is wrong (file offset, tensor, operator, slot) and what
was expected, so a user can act on it without a debugger.
"""

from __future__ import annotations


class TinySwapError(Exception):
    """Base class of every error tinyswap raises on purpose."""


class ModelError(TinySwapError):
    """A `.tflite` file is malformed, truncated, hostile or inconsistent."""


class UnsupportedOpError(ModelError):
    """The model uses an operator, or an operator with a tensor type, that we do not implement."""


class QuantizationError(ModelError):
    """Quantization parameters are missing or outside what the kernel (and TFLM) accept."""


class InterpreterError(TinySwapError, ValueError):
    """The interpreter was used out of order or given tensors of the wrong type or shape."""


class KernelError(InterpreterError):
    """A kernel failed while evaluating: prepare let through something it should have refused.

    Never expected on a model that prepared successfully; reported with the operator named.
    Fuzz tests treat it as a bug, not as a clean refusal.
    """


class InputFileError(TinySwapError):
    """A file given to tinyswap cannot be used: missing, a directory, empty, binary or malformed.

    `path` is the file, `problem` what is wrong with it; the message names both, on one line,
    so the command line can print it as it is.
    """

    def __init__(self, path: object, problem: str, what: str = "file") -> None:
        self.path = str(path)
        self.problem = problem
        self.what = what
        super().__init__(f"{what} {self.path}: {problem}")
