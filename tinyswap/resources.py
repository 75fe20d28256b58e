"""Where the example models and data that ship with tinyswap live.

In a checkout (or an editable install) they are the repository's `models/` folder; a wheel
(`pip install .`) carries the same folder as `tinyswap/_models` (setup.py's build step copies it),
so `tinyswap demo` and `tinyswap bench` work from any folder without a checkout.
"""

from __future__ import annotations

from pathlib import Path

from tinyswap.errors import TinySwapError

_PACKAGE = Path(__file__).resolve().parent
# A marker file every copy of the models folder has: tells a real models folder from a stray one.
_MARKER = Path("digits") / "cnn.json"


def models_dir() -> Path:
    """The folder holding `digits/`, `examples/`, `keras/` and `tflm/`."""
    for candidate in (_PACKAGE / "_models", _PACKAGE.parent / "models"):
        if (candidate / _MARKER).is_file():
            return candidate
    raise TinySwapError(f"tinyswap's example models are missing: neither {_PACKAGE / '_models'} (an installed "
                        f"wheel) nor {_PACKAGE.parent / 'models'} (a checkout) holds {_MARKER}; reinstall tinyswap")
