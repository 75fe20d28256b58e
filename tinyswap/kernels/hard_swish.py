"""HARD_SWISH: int8 (TFLM `hard_swish_common.cc`, `kernels/internal/reference/hard_swish.h`) and
float32 (`x * min(6, max(0, x + 3)) / 6`).

int8 works in 16-bit fixed point: the input less its zero point, shifted left by 7, is (a)
rescaled to the output scale before the final shift with the int16 output multiplier and (b)
mapped to a "reluish" value in [0, 1] (x / 3 saturated to [-1, 1], then (v + 1) / 2) with the
int16 reluish multiplier and exponent; their truncating doubling high product, rounded right by
the output exponent, plus the output zero point (int16 arithmetic), clamped to int8, is the
result. Every int16 step (saturating, truncating, wrapping) is reproduced on int64 values.
The real multipliers are quotients of the float32 scales, divided in double by the tflite_micro
wheel and in float32 by LiteRT.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from tinyswap.kernels.base import Prepared, PrepareContext, Profile
from tinyswap.kernels.quantized import Int8Lookup, checked_multiplier
from tinyswap.kernels.elementwise import TabulatedUnaryKernel, prepare_unary
from tinyswap.kernels.registry import register

INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1


def _wrap16(x: np.ndarray) -> np.ndarray:
    """A C conversion of an int value to int16_t (two's complement wrap)."""
    return ((x + 2**15) & 0xFFFF) - 2**15


def down_scale_int32_to_int16_multiplier(multiplier: int) -> int:
    """TFLite `DownScaleInt32ToInt16Multiplier`: the Q0.31 multiplier rounded to Q0.15
    (saturating at INT16_MAX from INT32_MAX - 2**15 on)."""
    if multiplier >= 2**31 - 1 - (1 << 15):
        return INT16_MAX
    return (multiplier + (1 << 15)) >> 16


def srdhm16(a: np.ndarray, b: int) -> np.ndarray:
    """gemmlowp `SaturatingRoundingDoublingHighMul` on int16: (a * b + nudge) / 2**15, truncated."""
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    high = _wrap16(_trunc_div(ab + nudge, 1 << 15))
    return np.where((a == INT16_MIN) & (b == INT16_MIN), INT16_MAX, high)


def sdhm16(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """TFLite `SaturatingDoublingHighMul` on int16: a * b / 2**15 truncated toward zero."""
    high = _wrap16(_trunc_div(a * b, 1 << 15))
    return np.where((a == b) & (a == INT16_MIN), INT16_MAX, high)


def _trunc_div(x: np.ndarray, d: int) -> np.ndarray:
    """C integer division (toward zero) by a positive d."""
    q = np.abs(x) // d
    return np.where(x < 0, -q, q)


def rounding_divide_by_pot16(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp `RoundingDivideByPOT<int16_t>`, literally: the mask is `(1ll << e) - 1` converted
    to int16 (all ones from e = 16 on), and the threshold is computed in int16 as well."""
    mask = int(_wrap16(np.int64((1 << exponent) - 1)))
    remainder = x & mask
    threshold = _wrap16((mask >> 1) + (x < 0))
    return _wrap16((x >> exponent) + (remainder > threshold))


def saturating_left_shift16(x: np.ndarray, amount: int) -> np.ndarray:
    return np.clip(x * (1 << amount), INT16_MIN, INT16_MAX)


@dataclass(frozen=True)
class HardSwishParams:
    """int8 (TFLite `HardSwishParams`)."""

    input_zero_point: int
    output_zero_point: int
    reluish_multiplier_fixedpoint_int16: int
    reluish_multiplier_exponent: int
    output_multiplier_fixedpoint_int16: int
    output_multiplier_exponent: int
    lookup: Int8Lookup  # `compute`, tabulated

    def compute(self, q: np.ndarray) -> np.ndarray:
        """reference_ops::HardSwish<int8_t> on int8 values, line by line, as int64."""
        value = _wrap16(q.astype(np.int64) - self.input_zero_point)
        hires = _wrap16(value * (1 << 7))
        preshift_output = srdhm16(hires, self.output_multiplier_fixedpoint_int16)
        reluish = hires
        exponent = self.reluish_multiplier_exponent
        if exponent > 0:
            reluish = saturating_left_shift16(reluish, exponent - 1)
        reluish = srdhm16(reluish, self.reluish_multiplier_fixedpoint_int16)
        if exponent > 0:
            reluish = saturating_left_shift16(reluish, 1)
        if exponent < 0:
            reluish = rounding_divide_by_pot16(reluish, -exponent)
        reluish = (reluish + (1 << 15)) >> 1
        preshift = sdhm16(reluish, preshift_output)
        out = rounding_divide_by_pot16(preshift, -self.output_multiplier_exponent)
        out = _wrap16(out + self.output_zero_point)
        return np.clip(out, -128, 127)


@register
class HardSwish(TabulatedUnaryKernel[HardSwishParams | None]):
    op_name = "HARD_SWISH"

    def prepare(self, ctx: PrepareContext) -> Prepared[HardSwishParams | None]:
        x = ctx.input(0)
        q = prepare_unary(ctx)
        if q is None:
            return Prepared([x.shape], None)
        xs, xzp, ys, yzp = q.input_scale, q.input_zero_point, q.output_scale, q.output_zero_point
        hires_input_scale = np.float32(1.0 / 128.0) * np.float32(xs)  # exact: a power of two
        reluish_scale = np.float32(3.0) / np.float32(32768.0)  # exact: 3 * 2**-15
        if ctx.profile == Profile.LITERT:  # float32 quotients, widened to double afterwards
            output_real = float(hires_input_scale / np.float32(ys))
            reluish_real = float(hires_input_scale / reluish_scale)
        else:  # the tflite_micro wheel divides in double (the oracle tests tell the two apart)
            output_real = float(hires_input_scale) / float(np.float32(ys))
            reluish_real = float(hires_input_scale) / float(reluish_scale)
        output_m, output_e = checked_multiplier(output_real)
        if output_e > 0:
            raise ctx.error(
                f"output multiplier exponent {output_e} must be <= 0 (TFLM): input scale {xs} is too "
                f"large for output scale {ys}"
            )
        reluish_m, reluish_e = checked_multiplier(reluish_real)
        record = HardSwishParams(xzp, yzp, down_scale_int32_to_int16_multiplier(reluish_m), reluish_e,
                                 down_scale_int32_to_int16_multiplier(output_m), output_e, Int8Lookup(b""))
        return Prepared([x.shape], replace(record, lookup=Int8Lookup.of(record.compute)))

    def eval(self, prepared: Prepared[HardSwishParams | None], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        if p is None:
            six = np.float32(6)
            with np.errstate(invalid="ignore", over="ignore"):  # -inf * 0 is NaN, as in C
                return [(x * np.minimum(six, np.maximum(np.float32(0), x + np.float32(3))) / six).astype(np.float32)]
        return [p.lookup.apply(x)]
