"""Fixed-point primitives of TFLite's integer kernels, vectorised on int64 NumPy arrays.

Names follow TFLite / gemmlowp so that a reader can hold this file next to
`tensorflow/lite/kernels/internal/common.{h,cc}` and `gemmlowp/fixedpoint/fixedpoint.h`.
Every function takes and returns int64 arrays (or anything `np.asarray` accepts) holding
values in the int32 range; int64 is wide enough that no intermediate product overflows
(|a * b| < 2**62), so no step needs wrapping arithmetic.

`quantize_multiplier` is the only place where a float becomes a fixed-point multiplier.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

ArrayLike = "np.ndarray | int"


def _round_half_away_from_zero(x: float) -> int:
    """C++ `std::round` (TfLiteRound): halves go away from zero, unlike Python's `round`."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite `QuantizeMultiplier`: real = multiplier * 2**(shift - 31), multiplier in [2**30, 2**31).

    The input is a Python float (a C++ double), computed by the caller in double precision
    from the float32 scales, exactly as TFLM's Prepare does. A zero multiplier, or one so small
    that the shift would pass -31, becomes (0, 0): TFLM flushes it to zero.
    """
    if real_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)
    q_fixed = _round_half_away_from_zero(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return int(q_fixed), int(shift)


def quantize_multiplier_single_rounding(real_multiplier: float) -> tuple[int, int]:
    """`QuantizeMultiplier` as built with TFLITE_SINGLE_ROUNDING: shifts above 30 saturate."""
    multiplier, shift = quantize_multiplier(real_multiplier)
    if shift > 30:
        return INT32_MAX, 30
    return multiplier, shift


def saturating_rounding_doubling_high_mul(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """gemmlowp `SaturatingRoundingDoublingHighMul`: round(a * b / 2**31), halves away from zero.

    The C code adds a nudge of 2**30 (or 1 - 2**30 when the product is negative) and then
    divides by 2**31 truncating toward zero. Saturates only for a == b == INT32_MIN.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b
    nudged = ab + np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    # Truncating division by 2**31: shift the magnitude, then restore the sign.
    high = np.where(nudged >= 0, nudged >> 31, -((-nudged) >> 31))
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, np.int64(INT32_MAX), high)


def rounding_divide_by_pot(x: ArrayLike, exponent: ArrayLike) -> np.ndarray:
    """gemmlowp `RoundingDivideByPOT`: x / 2**exponent rounded half away from zero.

    `exponent` is in [0, 31] and may be an array broadcasting against `x` (per channel).
    """
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(x: ArrayLike, multiplier: ArrayLike, shift: ArrayLike) -> np.ndarray:
    """TFLite `MultiplyByQuantizedMultiplier`, double rounding (the TFLM build): x * M * 2**(shift-31).

    A positive shift is applied as a left shift of x before the high multiply; a negative one
    as a rounding right shift after it. x must fit in int32 after the left shift, as in C.
    """
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x << left, multiplier), right)


def multiply_by_quantized_multiplier_single_rounding(
    x: ArrayLike, multiplier: ArrayLike, shift: ArrayLike
) -> np.ndarray:
    """TFLite `MultiplyByQuantizedMultiplier` built with TFLITE_SINGLE_ROUNDING.

    (x * M + 2**(30 - shift)) >> (31 - shift): one rounding, halves toward +infinity.
    """
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    total_shift = 31 - shift
    rounding = np.int64(1) << (total_shift - 1)
    return (x * np.asarray(multiplier, dtype=np.int64) + rounding) >> total_shift


def multiply_by_quantized_multiplier_smaller_than_one_exp(
    x: ArrayLike, multiplier: ArrayLike, left_shift: ArrayLike
) -> np.ndarray:
    """TFLite `MultiplyByQuantizedMultiplierSmallerThanOneExp` (left_shift <= 0): used by ADD/SUB."""
    return rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(x, multiplier), -np.asarray(left_shift, dtype=np.int64)
    )


def multiply_by_quantized_multiplier_greater_than_one(
    x: ArrayLike, multiplier: ArrayLike, left_shift: ArrayLike
) -> np.ndarray:
    """TFLite `MultiplyByQuantizedMultiplierGreaterThanOne` (left_shift >= 0): used by SOFTMAX."""
    x = np.asarray(x, dtype=np.int64)
    return saturating_rounding_doubling_high_mul(x << np.asarray(left_shift, dtype=np.int64), multiplier)
