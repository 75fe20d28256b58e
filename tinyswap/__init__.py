"""tinyswap: hot-swappable adapters on a frozen INT8 TFLite base model, in pure NumPy."""

from tinyswap.errors import (
    BuilderError,
    InterpreterError,
    ModelError,
    QuantizationError,
    TinySwapError,
    UnsupportedOpError,
)

__version__ = "0.1.0"

__all__ = [
    "BuilderError",
    "InterpreterError",
    "ModelError",
    "QuantizationError",
    "TinySwapError",
    "UnsupportedOpError",
    "__version__",
]

from tinyswap.interpreter import Interpreter, Profile  # noqa: E402

__all__ += ["Interpreter", "Profile"]
