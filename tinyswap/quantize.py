"""Float model inputs to int8 with an input tensor's scale and zero point.

The demo, the scenario datasets and the digits evaluation each feed float images to an int8
model; they must quantize them identically, or the accuracies they report would not be
comparable (nor match the committed results), so there is one function for it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def quantize_int8(x: npt.ArrayLike, scale: float, zero_point: int) -> np.ndarray:
    """`clip(round(x / scale) + zero_point, -128, 127)` as int8.

    `np.round` rounds halves to even, as every former copy of this did; the committed digits
    results were measured with it. The arithmetic runs in `x`'s own float type (float32 pixels
    stay float32, float64 stays float64): converting here would move values lying next to a
    rounding boundary by one LSB, so callers choose the precision by the array they pass.
    """
    x = np.asarray(x)
    return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)


__all__ = ["quantize_int8"]
