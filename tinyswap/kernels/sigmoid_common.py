"""Shared by LOGISTIC and TANH: the int8 input scaling both TFLM kernels compute in Prepare,
the two params records, LiteRT's float lookup table, and the float32 transcendental helpers.

TFLM (`micro/kernels/logistic_common.cc`, `micro/kernels/tanh.cc`): the input is rescaled into
gemmlowp FixedPoint<int32, 4> (Q4.27) by (multiplier, left shift) taken from
frexp(input_scale * 2**27), inputs at or beyond +-`input_range_radius` saturate, the rest go
through gemmlowp's fixed-point `logistic` / `tanh` (`tinyswap.fixedpoint`), and the Q0.31
result is rounded to 8 (LOGISTIC, zero point -128) or 7 (TANH) fractional bits. Neither
kernel reads the output scale.

LiteRT's BUILTIN_REF (`lite/kernels/activations.cc`, kReference) does not use that path for
int8: Prepare tabulates the float32 function on every dequantized int8 input
(`PopulateLookupTable`), which the `litert` profile reproduces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinyswap.fixedpoint import multiply_by_quantized_multiplier
from tinyswap.kernels.base import PrepareContext
from tinyswap.kernels.quantized import Int8Lookup, round_half_away_f32

INPUT_INTEGER_BITS = 4  # both kernels' kInputIntegerBits

# Below this input scale frexp(scale * 2**27) has a negative exponent and TFLM's
# CalculateInputRadius shifts by it (undefined behaviour in C++): refused, not emulated.
MIN_INPUT_SCALE = 2.0**-28


@dataclass(frozen=True)
class FixedPointSigmoidParams:
    """TFLM's int8 OpData: input - zero point at or below -radius gives -128, at or above
    +radius gives 127; the rest is rescaled into Q4.27 by (multiplier, left_shift) before the
    gemmlowp function. `lookup` is all of it, tabulated over the 256 int8 inputs."""

    input_zero_point: int
    input_multiplier: int
    input_left_shift: int
    input_range_radius: int
    lookup: Int8Lookup


@dataclass(frozen=True)
class FloatTableParams:
    """LiteRT's int8 path: the float32 function on each dequantized input, requantized."""

    lookup: Int8Lookup


def input_scaling(input_scale: float) -> tuple[int, int, int]:
    """(input_multiplier, input_left_shift, input_range_radius) as TFLM's Prepare computes them:
    q, shift = frexp((double)scale * 2**27); multiplier = round(q * 2**31);
    radius = floor(15 * 2**27 / 2**shift) (CalculateInputRadius(4, shift, 31))."""
    q, shift = math.frexp(float(input_scale) * float(1 << (31 - INPUT_INTEGER_BITS)))
    multiplier = int(math.floor(q * (1 << 31) + 0.5))  # q >= 0.5: TfLiteRound
    radius = math.floor(
        ((1 << INPUT_INTEGER_BITS) - 1) * (1 << (31 - INPUT_INTEGER_BITS)) / (1 << shift)
    )
    return multiplier, shift, radius


def fixed_point_table(zero_point: int, multiplier: int, left_shift: int, radius: int,
                      function: Callable[[np.ndarray], np.ndarray]) -> Int8Lookup:
    """TFLM's per-element loop over all 256 int8 inputs: saturate outside the radius, else
    `function` (Q4.27 raw -> int8 value, before the clamp) of the rescaled input."""
    x = np.arange(-128, 128, dtype=np.int64) - zero_point
    inside = (x > -radius) & (x < radius)
    # Outside the radius the C never rescales (the left shift may be huge): feed 0 instead.
    q4 = multiply_by_quantized_multiplier(np.where(inside, x, 0), multiplier, left_shift)
    computed = np.clip(function(q4), -128, 127)
    return Int8Lookup.of(lambda _: np.where(x <= -radius, -128, np.where(x >= radius, 127, computed)))


def fixed_point_params(input_scale: float, input_zero_point: int,
                       function: Callable[[np.ndarray], np.ndarray]) -> FixedPointSigmoidParams:
    """TFLM's int8 LOGISTIC / TANH prepare (after `check_input_scale`): the input scaling and the
    256-entry table of `function` (Q4.27 raw -> int8 value, before the clamp)."""
    multiplier, shift, radius = input_scaling(input_scale)
    lookup = fixed_point_table(input_zero_point, multiplier, shift, radius, function)
    return FixedPointSigmoidParams(input_zero_point, multiplier, shift, radius, lookup)


def check_input_scale(ctx: PrepareContext, input_scale: float) -> None:
    """Below 2**-28 TFLM's radius arithmetic shifts by a negative amount (undefined in C++)."""
    if not math.isfinite(input_scale) or input_scale < MIN_INPUT_SCALE:
        raise ctx.error(f"input scale {input_scale} must be finite and at least 2**-28")


def float_table(input_scale: float, input_zero_point: int, output_scale: float, output_zero_point: int,
                function: Callable[[np.ndarray], np.ndarray]) -> Int8Lookup:
    """LiteRT `PopulateLookupTable<int8_t>`, in float32 as the C++:
    clamp((int)(roundf(f(scale * (v - zp)) * (1 / out_scale)) + out_zp), -128, 127)."""
    v = np.arange(-128, 128, dtype=np.int64)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        dequantized = np.float32(input_scale) * (v - input_zero_point).astype(np.float32)
        inverse = np.float32(1) / np.float32(output_scale)
        rescaled = round_half_away_f32(function(dequantized) * inverse).astype(np.float32)
        shifted = (rescaled + np.float32(output_zero_point)).astype(np.float64)
        # x86 cvttss2si: NaN and anything outside int32 become INT32_MIN.
        representable = np.isfinite(shifted) & (np.abs(shifted) < 2.0**31)
        quantized = np.where(representable, np.nan_to_num(shifted), -(2.0**31))
    return Int8Lookup.of(lambda _: np.clip(quantized, -128, 127).astype(np.int64))


# Elements per block of the float32 evaluation: its float64 intermediates stay within a few
# megabytes however large the tensor.
BLOCK_ELEMENTS = 1 << 18


def blockwise(function: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """`function` (elementwise, float32 -> float32) over `x` in blocks of BLOCK_ELEMENTS."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty_like(flat)
    for start in range(0, flat.size, BLOCK_ELEMENTS):
        out[start:start + BLOCK_ELEMENTS] = function(flat[start:start + BLOCK_ELEMENTS])
    return out.reshape(np.shape(x))


def expf(x: np.ndarray) -> np.ndarray:
    """C `expf` (correctly rounded in glibc): the double exp rounded once to float32."""
    with np.errstate(over="ignore"):
        return np.exp(np.asarray(x, np.float32).astype(np.float64)).astype(np.float32)


def tanhf(x: np.ndarray) -> np.ndarray:
    """C `tanhf`: the double tanh rounded once to float32."""
    return np.tanh(np.asarray(x, np.float32).astype(np.float64)).astype(np.float32)


def logistic_f32(x: np.ndarray) -> np.ndarray:
    """TFLite's float `reference_ops::Logistic` (also LiteRT's int8 table transform uses
    1 / (1 + expf(-x)) without the cutoffs; see `sigmoid_f32`)."""
    x = np.asarray(x, np.float32)
    with np.errstate(over="ignore"):
        middle = np.float32(1) / (np.float32(1) + expf(-x))
        return np.where(x > np.float32(16.619047164916992188), np.float32(1),
                        np.where(x < np.float32(-9), expf(x), middle)).astype(np.float32)


def sigmoid_f32(x: np.ndarray) -> np.ndarray:
    """1.0f / (1.0f + std::exp(-value)) in float32: LiteRT's int8 LOGISTIC table transform."""
    with np.errstate(over="ignore"):
        return (np.float32(1) / (np.float32(1) + expf(-np.asarray(x, np.float32)))).astype(np.float32)
