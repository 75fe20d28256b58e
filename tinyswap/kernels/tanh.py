"""TANH: int8 -> int8 (gemmlowp fixed point, as TFLM) and float32.

TFLM `micro/kernels/tanh.cc` and `reference/integer_ops/tanh.h`; see `sigmoid_common` for the
shared input scaling. TFLM checks no output quantization at all (the result is always in
units of 1/128 around zero); LiteRT's BUILTIN_REF tabulates the float32 tanh requantized to
whatever output quantization the model declares.
"""

from __future__ import annotations

import numpy as np

from tinyswap.fixedpoint import rounding_divide_by_pot, tanh
from tinyswap.kernels.base import Prepared, PrepareContext, Profile
from tinyswap.kernels.elementwise import TabulatedUnaryKernel, prepare_unary
from tinyswap.kernels.registry import register
from tinyswap.kernels.sigmoid_common import (
    INPUT_INTEGER_BITS,
    FixedPointSigmoidParams,
    FloatTableParams,
    blockwise,
    check_input_scale,
    fixed_point_params,
    float_table,
    tanhf,
)

OUTPUT_FRACTIONAL_BITS = 7  # Q0.31 -> units of 2**-7


def tanh_int8(q4: np.ndarray) -> np.ndarray:
    """The Q4.27 input's tanh in units of 1/128 (before the clamp)."""
    return rounding_divide_by_pot(tanh(q4, INPUT_INTEGER_BITS), 31 - OUTPUT_FRACTIONAL_BITS)


@register
class Tanh(TabulatedUnaryKernel[FixedPointSigmoidParams | FloatTableParams | None]):
    op_name = "TANH"

    def prepare(self, ctx: PrepareContext) -> Prepared[FixedPointSigmoidParams | FloatTableParams | None]:
        x = ctx.input(0)
        q = prepare_unary(ctx)
        if q is None:
            return Prepared([x.shape], None)
        xs, xzp, ys, yzp = q.input_scale, q.input_zero_point, q.output_scale, q.output_zero_point
        check_input_scale(ctx, xs)
        if ctx.profile == Profile.LITERT:
            return Prepared([x.shape], FloatTableParams(float_table(xs, xzp, ys, yzp, tanhf)))
        return Prepared([x.shape], fixed_point_params(xs, xzp, tanh_int8))

    def eval(self, prepared: Prepared[FixedPointSigmoidParams | FloatTableParams | None],
             inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        if p is None:
            return [blockwise(tanhf, x)]
        return [p.lookup.apply(x)]
