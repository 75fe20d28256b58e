"""LEAKY_RELU: int8 (two rescales, TFLM `leaky_relu_common.cc` and
`kernels/internal/reference/leaky_relu.h`) and float32.

int8: x - input_zero_point >= 0 goes through the identity multiplier (input_scale /
output_scale), a negative one through the alpha multiplier (input_scale * alpha /
output_scale), each a `MultiplyByQuantizedMultiplier`; the output's zero point is added and the
sum clamped to int8. The tflite_micro wheel computes both real multipliers in double from the
float32 values, LiteRT as float32 expressions (the oracle tests tell the two apart). A negative
alpha gives a negative multiplier, which the reference applies as the negation of the positive
multiplier's result.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from tinyswap.fixedpoint import multiply_by_quantized_multiplier
from tinyswap.kernels.base import Prepared, PrepareContext, Profile
from tinyswap.kernels.quantized import Int8Lookup, checked_multiplier
from tinyswap.kernels.elementwise import TabulatedUnaryKernel, prepare_unary
from tinyswap.kernels.registry import register


def _mbqm_int32(x: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """`MultiplyByQuantizedMultiplier` with its left shift `x * (1 << shift)` wrapping in int32
    as the C does: an output scale thousands of times below the input's (a left shift of 8 or
    more on |x| <= 255) overflows there, and both runtimes return the wrapped results."""
    if shift <= 0:
        return multiply_by_quantized_multiplier(x, multiplier, shift)
    wrapped = ((x << shift) + 2**31) % 2**32 - 2**31
    return multiply_by_quantized_multiplier(wrapped, multiplier, 0)


@dataclass(frozen=True)
class LeakyReluParams:
    """int8 (TFLM `LeakyReluOpData`): the alpha multiplier is stored as its magnitude and a sign."""

    input_zero_point: int
    output_zero_point: int
    identity_multiplier: int
    identity_shift: int
    alpha_multiplier: int  # |multiplier| of input_scale * alpha / output_scale
    alpha_shift: int
    alpha_negative: bool
    lookup: Int8Lookup  # the function above, tabulated

    def compute(self, q: np.ndarray) -> np.ndarray:
        """The reference's per-element arithmetic on int8 values, as int64 (clamped)."""
        v = q.astype(np.int64) - self.input_zero_point
        identity = _mbqm_int32(v, self.identity_multiplier, self.identity_shift)
        alpha = _mbqm_int32(v, self.alpha_multiplier, self.alpha_shift)
        if self.alpha_negative:
            alpha = -alpha
        return np.clip(self.output_zero_point + np.where(v >= 0, identity, alpha), -128, 127)


@dataclass(frozen=True)
class FloatLeakyReluParams:
    alpha: float  # the float32 option value


@register
class LeakyRelu(TabulatedUnaryKernel[LeakyReluParams | FloatLeakyReluParams]):
    op_name = "LEAKY_RELU"

    def prepare(self, ctx: PrepareContext) -> Prepared[LeakyReluParams | FloatLeakyReluParams]:
        x = ctx.input(0)
        alpha = np.float32(ctx.option("alpha"))
        q = prepare_unary(ctx)
        if q is None:
            return Prepared([x.shape], FloatLeakyReluParams(float(alpha)))
        xs, xzp, ys, yzp = q.input_scale, q.input_zero_point, q.output_scale, q.output_zero_point
        xs32, ys32 = np.float32(xs), np.float32(ys)
        if ctx.profile == Profile.LITERT:
            # LiteRT's activations.cc: float32 expressions, widened to double afterwards.
            identity_real, alpha_real = float(xs32 / ys32), float(xs32 * alpha / ys32)
        else:
            # The tflite_micro wheel computes both in double from the float32 values (as TFLM's
            # "fix casting" change did; the oracle tests tell the two apart on ties).
            identity_real = float(xs32) / float(ys32)
            alpha_real = float(xs32) * float(alpha) / float(ys32)
        identity_m, identity_s = checked_multiplier(identity_real)
        alpha_m, alpha_s = checked_multiplier(abs(alpha_real))
        record = LeakyReluParams(xzp, yzp, identity_m, identity_s, alpha_m, alpha_s, alpha_real < 0,
                                 Int8Lookup(b""))
        return Prepared([x.shape], replace(record, lookup=Int8Lookup.of(record.compute)))

    def eval(self, prepared: Prepared[LeakyReluParams | FloatLeakyReluParams],
             inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        if isinstance(p, FloatLeakyReluParams):
            # `val > 0 ? val : val * alpha` (alpha may be negative or above 1: no max()).
            with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN as in C
                return [np.where(x > 0, x, x * np.float32(p.alpha)).astype(np.float32)]
        return [p.lookup.apply(x)]
