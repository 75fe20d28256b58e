"""LOGISTIC: int8 -> int8 (gemmlowp fixed point, as TFLM) and float32.

TFLM `micro/kernels/logistic_common.cc` and `reference/integer_ops/logistic.h`; see
`sigmoid_common` for the shared input scaling. TFLM requires only the output zero point -128
and never reads the output scale (the result is always in units of 1/256); LiteRT's
BUILTIN_REF requires the output scale 1/256 and tabulates the float32 sigmoid instead.
"""

from __future__ import annotations

import numpy as np

from tinyswap.fixedpoint import logistic, rounding_divide_by_pot
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
    logistic_f32,
    sigmoid_f32,
)

OUTPUT_INTEGER_BITS = 8  # Q0.31 -> units of 2**-8


def logistic_int8(q4: np.ndarray) -> np.ndarray:
    """The Q4.27 input's logistic in units of 1/256, minus 128 (before the clamp)."""
    return rounding_divide_by_pot(logistic(q4, INPUT_INTEGER_BITS), 31 - OUTPUT_INTEGER_BITS) - 128


@register
class Logistic(TabulatedUnaryKernel[FixedPointSigmoidParams | FloatTableParams | None]):
    op_name = "LOGISTIC"

    def prepare(self, ctx: PrepareContext) -> Prepared[FixedPointSigmoidParams | FloatTableParams | None]:
        x = ctx.input(0)
        q = prepare_unary(ctx)
        if q is None:
            return Prepared([x.shape], None)
        xs, xzp, ys, yzp = q.input_scale, q.input_zero_point, q.output_scale, q.output_zero_point
        check_input_scale(ctx, xs)
        if ctx.profile == Profile.LITERT:
            if float(ys) != 1.0 / 256:
                raise ctx.error(f"int8 output needs scale 1/256 (LiteRT), got {ys}")
            return Prepared([x.shape], FloatTableParams(float_table(xs, xzp, ys, yzp, sigmoid_f32)))
        if yzp != -128:
            raise ctx.error(f"int8 output needs zero point -128 (TFLM), got {yzp}")
        return Prepared([x.shape], fixed_point_params(xs, xzp, logistic_int8))

    def eval(self, prepared: Prepared[FixedPointSigmoidParams | FloatTableParams | None],
             inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        if p is None:
            return [blockwise(logistic_f32, x)]
        return [p.lookup.apply(x)]
