"""tinyswap: hot-swappable adapters on a frozen INT8 TFLite base model, in pure NumPy."""

from tinyswap.errors import (
    InputFileError,
    InterpreterError,
    ModelError,
    QuantizationError,
    TinySwapError,
    UnsupportedOpError,
)

# Kept equal to pyproject.toml's version (tests/tinyswap/test_cli.py checks); the command line
# prefers the installed distribution's metadata and falls back to this in a bare checkout.
__version__ = "0.1.0"

__all__ = [
    "InputFileError",
    "InterpreterError",
    "ModelError",
    "QuantizationError",
    "TinySwapError",
    "UnsupportedOpError",
    "__version__",
]

from tinyswap.interpreter import Interpreter, Profile  # noqa: E402

__all__ += ["Interpreter", "Profile"]
