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


class BuilderError(TinySwapError):
    """A model handed to the flatbuffer builder is inconsistent."""


class GraphError(BuilderError):
    """The operator graph handed to the builder is inconsistent (a tensor produced twice, used before it exists, ...)."""


class OptionError(BuilderError):
    """An operator's builtin options name an unknown field or give a value of the wrong type or range."""


class LayoutError(BuilderError):
    """The produced file breaks a byte-layout promise of the builder (a builder bug, not misuse)."""


class KernelError(InterpreterError):
    """A kernel failed while evaluating: prepare let through something it should have refused.

    Never expected on a model that prepared successfully; reported with the operator named.
    Fuzz tests treat it as a bug, not as a clean refusal.
    """
