"""Quantization helpers shared by kernels: activation ranges, multipliers, requantization.

Float appears only here and only at prepare time (turning scales into integer multipliers),
in the exact precision TFLite uses: float32 scales widened to double.
"""

from __future__ import annotations

import math

import numpy as np

from tinyswap.fixedpoint import (
    multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_single_rounding,
    quantize_multiplier,
    quantize_multiplier_single_rounding,
)
from tinyswap.kernels.base import Profile
from tinyswap.schema import Activation, TensorType

QUANT_RANGES: dict[TensorType, tuple[int, int]] = {
    TensorType.INT8: (-128, 127),
    TensorType.UINT8: (0, 255),
    TensorType.INT16: (-32768, 32767),
    TensorType.INT32: (-(2**31), 2**31 - 1),
}


def _round_half_away(x: float) -> float:
    return math.floor(abs(x) + 0.5) * (1.0 if x >= 0 else -1.0)


def round_half_away_f32(value: np.ndarray | np.floating) -> np.ndarray:
    """C `roundf` / `TfLiteRound` on float32 values: halves away from zero, computed in float64
    (adding 0.5 to a float32 value is exact there, so no second rounding sneaks in)."""
    v = np.asarray(value, dtype=np.float64)
    return np.copysign(np.floor(np.abs(v) + 0.5), v)


def _quantize_float32(scale: float, zero_point: int, value: float) -> int:
    """TFLite `Quantize` in kernel_util.cc: `zp + round(f / scale)` with f and scale as float32."""
    quotient = float(np.float32(value) / np.float32(scale))
    return zero_point + int(_round_half_away(quotient))


def activation_range(activation: Activation, scale: float, zero_point: int, ttype: TensorType) -> tuple[int, int]:
    """TFLite `CalculateActivationRangeQuantized` for an output tensor of type `ttype`."""
    qmin, qmax = QUANT_RANGES[ttype]
    if activation == Activation.NONE:
        return qmin, qmax
    if activation == Activation.RELU:
        return max(qmin, _quantize_float32(scale, zero_point, 0.0)), qmax
    if activation == Activation.RELU6:
        return (
            max(qmin, _quantize_float32(scale, zero_point, 0.0)),
            min(qmax, _quantize_float32(scale, zero_point, 6.0)),
        )
    if activation == Activation.RELU_N1_TO_1:
        return (
            max(qmin, _quantize_float32(scale, zero_point, -1.0)),
            min(qmax, _quantize_float32(scale, zero_point, 1.0)),
        )
    raise ValueError(f"fused activation {activation.name} is not supported on quantized tensors")


def float_activation_range(activation: Activation) -> tuple[float, float]:
    """TFLite `CalculateActivationRange` for float32 outputs."""
    inf = float("inf")
    return {
        Activation.NONE: (-inf, inf),
        Activation.RELU: (0.0, inf),
        Activation.RELU6: (0.0, 6.0),
        Activation.RELU_N1_TO_1: (-1.0, 1.0),
    }[activation]


# A multiplier needing a left shift above this would overflow int32 in TFLite's C++
# (`x * (1 << left_shift)`): no sensible model has one, so it is refused, not emulated.
MAX_LEFT_SHIFT = 30


def checked_multiplier(real: float, quantize=quantize_multiplier) -> tuple[int, int]:
    """`quantize(real)` after checking that the effective scale is finite and representable."""
    from tinyswap.errors import QuantizationError

    if not math.isfinite(real) or real < 0:
        raise QuantizationError(f"effective scale {real!r} is not a finite non-negative number")
    multiplier, shift = quantize(real)
    if shift > MAX_LEFT_SHIFT:
        raise QuantizationError(
            f"effective scale {real:.6g} needs a left shift of {shift} (> {MAX_LEFT_SHIFT}); "
            "the quantization parameters are not usable"
        )
    return multiplier, shift


def channel_multipliers(
    input_scale: float, filter_scales: np.ndarray, output_scale: float, channels: int, profile: Profile
) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel (multiplier, shift) as TFLite's conv/FC Prepare computes them.

    effective = (double)input_scale * (double)filter_scale[c] / (double)output_scale. A
    per-tensor filter scale is broadcast to every channel (TFLM does the same).
    """
    scales = np.broadcast_to(np.asarray(filter_scales, dtype=np.float32), (channels,))
    quantize = quantize_multiplier_single_rounding if profile == Profile.LITERT else quantize_multiplier
    pairs = [checked_multiplier(float(input_scale) * float(s) / float(output_scale), quantize) for s in scales]
    multipliers = np.array([p[0] for p in pairs], dtype=np.int64)
    shifts = np.array([p[1] for p in pairs], dtype=np.int64)
    return multipliers, shifts


def requantize(acc: np.ndarray, multiplier, shift, single_rounding: bool) -> np.ndarray:
    """acc * multiplier * 2**(shift - 31) with the rounding of the selected runtime."""
    if single_rounding:
        return multiply_by_quantized_multiplier_single_rounding(acc, multiplier, shift)
    return multiply_by_quantized_multiplier(acc, multiplier, shift)


def clamp_cast(values: np.ndarray, lo: int, hi: int, dtype: np.dtype) -> np.ndarray:
    return np.clip(values, lo, hi).astype(dtype)


# |x - x_zp| <= 255 and |w| <= 128 for int8 operands, so every product is at most 32640.
_MAX_INT8_PRODUCT = 255 * 128


def exact_float_dtype(terms: int) -> np.dtype:
    """The cheapest float type in which a sum of `terms` int8 products is exact.

    float32 holds every integer up to 2**24, so sums of up to 514 products are exact in it
    (and twice as fast in BLAS); longer sums use float64 (exact up to 2**53).
    """
    return np.dtype(np.float32) if terms * _MAX_INT8_PRODUCT < 2**24 else np.dtype(np.float64)


def exact_int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer matrix product computed with float BLAS, exact by construction.

    Operands are int8 values less a zero point, so every product is at most 32640 in
    magnitude; `exact_float_dtype` picks float32 or float64 so that the sum of `k` of them is
    an integer the float type holds exactly. The result is converted back to int64.
    """
    dtype = exact_float_dtype(a.shape[-1])
    return (a.astype(dtype) @ b.astype(dtype)).astype(np.int64)
