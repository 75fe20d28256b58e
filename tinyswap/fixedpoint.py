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


# The functions below also take plain Python ints and then compute on Python ints: one row of a
# batch-1 SOFTMAX needs one reciprocal, for which some thirty NumPy calls on 0-d arrays cost
# far more than the arithmetic. `_ints` and a `type(...) is int` test where a clamp is needed
# are the only places that tell the two apart.
def _ints(x: ArrayLike) -> np.ndarray | int:
    return x if type(x) is int else np.asarray(x, dtype=np.int64)


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
    """gemmlowp `SaturatingRoundingDoublingHighMul`: a * b / 2**31, rounded.

    The C code adds a nudge of 2**30 (or 1 - 2**30 when the product is negative) and divides
    by 2**31 truncating toward zero. Both branches equal `floor((a * b + 2**30) / 2**31)`
    (round half up), which an arithmetic shift computes in one step; the tests check this
    against a line-by-line Python transcription of the C. Saturates only for
    a == b == INT32_MIN, the one pair whose result passes INT32_MAX.
    """
    a = _ints(a)
    b = _ints(b)
    high = (a * b + (1 << 30)) >> 31
    # Only INT32_MIN * INT32_MIN = 2**62 gives high = 2**31; every other int32 pair stays within
    # int32 (INT32_MIN * (INT32_MIN + 1) gives INT32_MAX): one clamp is the saturation.
    return min(high, INT32_MAX) if type(high) is int else np.minimum(high, INT32_MAX)


def rounding_divide_by_pot(x: ArrayLike, exponent: ArrayLike) -> np.ndarray:
    """gemmlowp `RoundingDivideByPOT`: x / 2**exponent rounded half away from zero.

    The C form is `(x >> e) + ((x & mask) > (mask >> 1) + (x < 0))`; for e >= 1 it equals
    `(x + 2**(e-1) - (x < 0)) >> e`, and for e == 0 it is x. `exponent` is in [0, 31] and may
    be an array broadcasting against `x` (per channel).
    """
    x = _ints(x)
    if type(exponent) is int and type(x) is int:
        return x if exponent == 0 else (x + ((1 << (exponent - 1)) - (x < 0))) >> exponent
    exponent = np.asarray(exponent, dtype=np.int64)
    if exponent.ndim == 0:
        e = int(exponent)
        if e == 0:
            return x
        return (x + ((1 << (e - 1)) - (x < 0))) >> e
    half = (np.int64(1) << exponent) >> 1
    return (x + (half - ((x < 0) & (exponent > 0)))) >> exponent


def multiply_by_quantized_multiplier(x: ArrayLike, multiplier: ArrayLike, shift: ArrayLike) -> np.ndarray:
    """TFLite `MultiplyByQuantizedMultiplier`, double rounding (the TFLM build): x * M * 2**(shift-31).

    C computes `RoundingDivideByPOT(SRDHM(x << left, M), right)` with left = max(shift, 0) and
    right = max(-shift, 0). Both roundings fold into one shift of the 64-bit product
    p = x * M * 2**left (exact: floor(floor(y) / n) = floor(y / n) for integer n):

        SRDHM = floor((p + 2**30) / 2**31), negative exactly when p + 2**30 < 0, and
        RDBPOT(v, r) = floor((v + 2**(r-1) - [v < 0]) / 2**r) for r >= 1, so
        result = (p + 2**30 + (2**(r-1) - [v < 0]) * 2**31) >> (31 + r).

    Five array operations instead of a dozen; the tests check it against a line-by-line
    transcription of the C. M >= 0 (TFLite multipliers are), so SRDHM's only saturating case
    (both operands INT32_MIN) cannot occur. x must fit in int32 after the left shift, as in C.
    """
    x = np.asarray(x, dtype=np.int64)
    multiplier = np.asarray(multiplier, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    half = (np.int64(1) << right) >> 1
    offset = (np.int64(1) << 30) + (half << 31)
    negative_correction = (right > 0).astype(np.int64) << 31
    p = x * (multiplier << left)
    return (p + offset - (p < -(1 << 30)) * negative_correction) >> (31 + right)


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


# -- gemmlowp FixedPoint<int32, IntegerBits> functions used by SOFTMAX ---------------------
# A FixedPoint<int32, I> value is its raw int32; multiplying two of them is SRDHM of the raws
# (the result has I_a + I_b integer bits); adding is plain int32 addition.


def saturating_rounding_multiply_by_pot(x: ArrayLike, exponent: int) -> np.ndarray:
    """gemmlowp `SaturatingRoundingMultiplyByPOT<exponent>`: saturating left shift, or a
    rounding right shift for a negative exponent."""
    x = _ints(x)
    if exponent == 0:
        return x
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    # gemmlowp saturates x above 2**(31 - e) - 1 to INT32_MAX and below -(2**(31 - e) - 1) to
    # INT32_MIN: exactly where x << e leaves the int32 range (x = -2**(31 - e) shifts to
    # INT32_MIN itself), so clamping the wide shift is the same.
    shifted = x << exponent
    if type(shifted) is int:
        return max(min(shifted, INT32_MAX), INT32_MIN)
    return np.maximum(np.minimum(shifted, INT32_MAX), INT32_MIN)


def rescale(x: ArrayLike, src_integer_bits: int, dst_integer_bits: int) -> np.ndarray:
    """gemmlowp `Rescale<dst>(FixedPoint<int32, src>)`."""
    return saturating_rounding_multiply_by_pot(x, src_integer_bits - dst_integer_bits)


def rounding_half_sum(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """gemmlowp `RoundingHalfSum` for int32: (a + b + sign) / 2, truncating toward zero."""
    s = _ints(a) + _ints(b)
    # t = s + 1 (s >= 0) or s - 1 (s < 0), halved toward zero: (s + 1) >> 1 for s >= 0, and
    # for s < 0 trunc((s - 1) / 2) = floor(s / 2) = s >> 1. One shift either way.
    return (s + (s >= 0)) >> 1


_SRDHM = saturating_rounding_doubling_high_mul


def exp_on_interval_between_negative_one_quarter_and_0_excl(a: ArrayLike) -> np.ndarray:
    """gemmlowp: exp(a) for a in [-1/4, 0), a and result in Q0.31 (Taylor series around -1/8)."""
    constant_term = 1895147668  # exp(-1/8) in Q0.31
    constant_1_over_3 = 715827883
    x = np.asarray(a, dtype=np.int64) + (1 << 28)  # + 1/8
    x2 = _SRDHM(x, x)
    x3 = _SRDHM(x2, x)
    x4 = _SRDHM(x2, x2)
    x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2)
    poly = saturating_rounding_multiply_by_pot(_SRDHM(x4_over_4 + x3, constant_1_over_3) + x2, -1)
    return constant_term + _SRDHM(constant_term, x + poly)


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))  # Q0.31 exp(-2**e)


def exp_on_negative_values(a: ArrayLike, integer_bits: int) -> np.ndarray:
    """gemmlowp `exp_on_negative_values` for FixedPoint<int32, integer_bits> a <= 0; Q0.31 result."""
    a = np.asarray(a, dtype=np.int64)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0)
    )
    remainder = a_mod_quarter_minus_one_quarter - a
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = (remainder >> (fractional_bits + exponent)) & 1
            result = np.where(bit != 0, _SRDHM(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))  # -32 in this format
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a: ArrayLike) -> np.ndarray:
    """gemmlowp: 1 / (1 + a) for a in [0, 1) in Q0.31, by three Newton-Raphson steps in Q2.29."""
    half_denominator = rounding_half_sum(a, INT32_MAX)
    constant_48_over_17 = 1515870810
    constant_neg_32_over_17 = -1010580540
    one_q2 = 1 << 29
    x = constant_48_over_17 + _SRDHM(half_denominator, constant_neg_32_over_17)
    for _ in range(3):
        half_denominator_times_x = _SRDHM(half_denominator, x)
        one_minus = one_q2 - half_denominator_times_x
        x = x + saturating_rounding_multiply_by_pot(_SRDHM(x, one_minus), 2)
    return saturating_rounding_multiply_by_pot(x, 1)  # Rescale<0>(ExactMulByPot<-1>(x))


def one_minus_x_over_one_plus_x_for_x_in_0_1(a: ArrayLike) -> np.ndarray:
    """gemmlowp: (1 - a) / (1 + a) for a in [0, 1) in Q0.31: the Newton-Raphson reciprocal of
    `one_over_one_plus_x_for_x_in_0_1` (x ~ 2 / (1 + a) in Q2.29), then Rescale<0>(x - 1)."""
    half_denominator = rounding_half_sum(a, INT32_MAX)
    one_q2 = 1 << 29
    x = 1515870810 + _SRDHM(half_denominator, -1010580540)  # 48/17 - 32/17 * d
    for _ in range(3):
        x = x + saturating_rounding_multiply_by_pot(_SRDHM(x, one_q2 - _SRDHM(half_denominator, x)), 2)
    return saturating_rounding_multiply_by_pot(x - one_q2, 2)


def logistic(a: ArrayLike, integer_bits: int) -> np.ndarray:
    """gemmlowp `logistic` of FixedPoint<int32, integer_bits> a; Q0.31 result.

    1 / (1 + exp(-|a|)) for the magnitude; 1 - that (raw INT32_MAX - r) for a < 0; exactly
    one half (2**30) for a == 0."""
    a = np.asarray(a, dtype=np.int64)
    positive = a > 0
    magnitude = np.where(positive, a, -a)
    if_positive = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(-magnitude, integer_bits))
    return np.where(a == 0, np.int64(1 << 30), np.where(positive, if_positive, INT32_MAX - if_positive))


def tanh(a: ArrayLike, integer_bits: int) -> np.ndarray:
    """gemmlowp `tanh` of FixedPoint<int32, integer_bits> a; Q0.31 result.

    With n = -|a|: t = (1 - exp(2n)) / (1 + exp(2n)), where 2n is the same raw read with one
    more integer bit (ExactMulByPot<1>); -t for a < 0, t for a > 0, 0 for a == 0."""
    a = np.asarray(a, dtype=np.int64)
    negative = a < 0
    n = np.where(negative, a, -a)
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1))
    return np.where(a == 0, np.int64(0), np.where(negative, -t, t))


def count_leading_zeros_u32(x: ArrayLike) -> np.ndarray:
    """Leading zero bits of x as a uint32 (x > 0); exact because x < 2**53 is exact in float64."""
    if type(x) is int:
        return 32 - x.bit_length()
    x = np.asarray(x, dtype=np.int64)
    _, exponent = np.frexp(x.astype(np.float64))
    return 32 - exponent.astype(np.int64)


def get_reciprocal(x: ArrayLike, x_integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite `GetReciprocal`: (Q0.31 of 1/x scaled into [0.5, 1), num_bits_over_unit) for x > 0."""
    if type(x) is int and 0 < x < 1 << 31:
        return _get_reciprocal_int(x, x_integer_digits)
    x = _ints(x)
    headroom_plus_one = count_leading_zeros_u32(x)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted_sum_minus_one = ((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31)
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit


def _get_reciprocal_int(x: int, x_integer_digits: int) -> tuple[int, int]:
    """`get_reciprocal` of one int in [1, 2**31), the generic functions inlined: a batch-1
    SOFTMAX needs one per row, and their type tests cost more than the arithmetic.

    With h = 32 - bit_length(x), the shifted sum less one is a = (x << h) - 2**31 (no bit is
    lost), so RoundingHalfSum(a, INT32_MAX) is x << (h - 1). Every SRDHM here has operands
    whose product is within +-2**62 and none is INT32_MIN * INT32_MIN, so it is
    floor((a * b + 2**30) / 2**31) without saturation. In the Newton-Raphson steps the
    correction stays far from saturating (48/17 - 32/17 d is within 1/17 of 1/d on
    [1/2, 1]); the final doubling saturates exactly when x is a power of two. The tests check
    this against the generic (array) path over random and edge sums."""
    headroom_plus_one = 32 - x.bit_length()
    half_denominator = x << (headroom_plus_one - 1)
    one_q2 = 1 << 29
    y = 1515870810 + ((half_denominator * -1010580540 + (1 << 30)) >> 31)
    for _ in range(3):
        one_minus = one_q2 - ((half_denominator * y + (1 << 30)) >> 31)
        y += ((y * one_minus + (1 << 30)) >> 31) << 2
    return min(y << 1, INT32_MAX), x_integer_digits - headroom_plus_one


def quantize_multiplier_greater_than_one(real_multiplier: float) -> tuple[int, int]:
    """TFLite `QuantizeMultiplierGreaterThanOne`: `quantize_multiplier` with a shift >= 0."""
    if real_multiplier <= 1.0:
        raise ValueError(f"multiplier {real_multiplier} must be greater than one")
    multiplier, shift = quantize_multiplier(real_multiplier)
    if shift < 0:
        raise ValueError(f"multiplier {real_multiplier} gave a negative shift {shift}")
    return multiplier, shift
