"""Post-training INT8 quantization to the TFLite spec, in NumPy (no TensorFlow converter).

- Weights: symmetric per output channel, int8 in [-127, 127], zero point 0.
- Bias: int32 at scale input_scale * weight_scale[c], zero point 0.
- Activations: asymmetric int8 from the calibrated [min, max] (widened to include 0, so that
  zero is exact, as TFLite requires for padding and ReLU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ActQuant:
    scale: float  # a float32 value
    zero_point: int

    @property
    def real_range(self) -> tuple[float, float]:
        return (self.scale * (-128 - self.zero_point), self.scale * (127 - self.zero_point))


#: The narrowest real range an activation is given. A layer whose calibrated output is
#: (almost) constant, e.g. a ReLU that is never active on the calibration data, would otherwise
#: get a scale near 1e-9: legal for TFLite Micro, but its requantization multipliers then
#: exceed what LiteRT's XNNPACK delegate accepts (< 256), and it refuses the model.
MIN_ACTIVATION_RANGE = 1e-3


def activation_quant(lo: float, hi: float) -> ActQuant:
    """Asymmetric int8 parameters covering [lo, hi] and exact at 0."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < MIN_ACTIVATION_RANGE:
        hi = lo + MIN_ACTIVATION_RANGE
    scale = float(np.float32((hi - lo) / 255.0))
    zero_point = int(np.clip(np.round(-128.0 - lo / scale), -128, 127))
    return ActQuant(scale, zero_point)


def symmetric_quant(absmax: float) -> ActQuant:
    """Zero point 0, covering [-absmax, absmax]."""
    return ActQuant(float(np.float32(max(float(absmax), MIN_ACTIVATION_RANGE / 2) / 127.0)), 0)


def quantize_weights(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel symmetric int8 along `axis`: (int8 weights, float32 scales)."""
    moved = np.moveaxis(np.asarray(w, dtype=np.float64), axis, 0)
    absmax = np.abs(moved.reshape(moved.shape[0], -1)).max(axis=1)
    scales = (np.maximum(absmax, 1e-8) / 127.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scales.reshape(shape).astype(np.float64)), -127, 127).astype(np.int8)
    return q, scales


def quantize_bias(b: np.ndarray, input_scale: float, weight_scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int32 bias at scale input_scale * weight_scale[c] (float32, as TFLite stores it)."""
    scales = (np.float32(input_scale) * weight_scales.astype(np.float32)).astype(np.float32)
    q = np.clip(np.round(np.asarray(b, dtype=np.float64) / scales.astype(np.float64)), -(2**31), 2**31 - 1)
    return q.astype(np.int32), scales
