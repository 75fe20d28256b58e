"""RELU: int8 rescales (TFLM `activations_common.cc`: multiplier from the float32 quotient
input_scale / output_scale, clamp at the output's zero) and float32."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import Prepared, PrepareContext
from tinyswap.kernels.quantized import Int8Lookup, Rescale, checked_multiplier, round_half_away_f32
from tinyswap.kernels.elementwise import TabulatedUnaryKernel, prepare_unary
from tinyswap.kernels.registry import register


@dataclass(frozen=True)
class ReluParams:
    """int8: rescale to the output's quantization, then clamp to [act_min, act_max]."""

    rescale: Rescale
    act_min: int
    act_max: int
    lookup: Int8Lookup  # the three above, tabulated


@register
class Relu(TabulatedUnaryKernel[ReluParams | None]):
    op_name = "RELU"

    def prepare(self, ctx: PrepareContext) -> Prepared[ReluParams | None]:
        x = ctx.input(0)
        q = prepare_unary(ctx)
        if q is None:
            return Prepared([x.shape], None)  # max(x, 0) needs no parameter
        xs, xzp, ys, yzp = q.input_scale, q.input_zero_point, q.output_scale, q.output_zero_point
        m, s = checked_multiplier(float(np.float32(xs) / np.float32(ys)))
        lo = max(-128, yzp + int(round_half_away_f32(np.float32(0.0) / np.float32(ys))))
        rescale = Rescale(xzp, yzp, m, s)
        lookup = Int8Lookup.of(lambda v: np.clip(rescale.apply(v), lo, 127))
        return Prepared([x.shape], ReluParams(rescale, lo, 127, lookup))

    def eval(self, prepared: Prepared[ReluParams | None], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        if p is None:
            return [np.maximum(x, np.float32(0))]
        return [p.lookup.apply(x)]
