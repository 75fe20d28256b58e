"""RELU6. int8 in TFLM (`activations_common.cc` Relu6Prepare) clamps to [zp, q(6)] in the
*input's* quantization and never rescales; LiteRT's reference kernel rescales to the output's.
Both agree when input and output share quantization, which is what converters emit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import Prepared, PrepareContext, Profile
from tinyswap.kernels.quantized import Int8Lookup, Rescale, checked_multiplier, round_half_away_f32
from tinyswap.kernels.elementwise import TabulatedUnaryKernel, prepare_unary
from tinyswap.kernels.registry import register


def quantize_value_f32(value: float, scale: float, zero_point: int) -> int:
    """TFLM `FloatToQuantizedType`: round(value / scale) in float32 + zero point, clamped to int8."""
    q = int(round_half_away_f32(np.float32(value) / np.float32(scale))) + zero_point
    return min(127, max(-128, q))


@dataclass(frozen=True)
class Relu6Params:
    """int8: clamp to [act_min, act_max], after `rescale` when there is one (LiteRT with
    differing input and output quantization)."""

    act_min: int
    act_max: int
    rescale: Rescale | None = None
    lookup: Int8Lookup | None = None  # the three above, tabulated

    def tabulated(self) -> "Relu6Params":
        rescale = self.rescale
        lookup = Int8Lookup.of(lambda v: np.clip(v if rescale is None else rescale.apply(v), self.act_min, self.act_max))
        return Relu6Params(self.act_min, self.act_max, rescale, lookup)


@register
class Relu6(TabulatedUnaryKernel[Relu6Params | None]):
    op_name = "RELU6"

    def prepare(self, ctx: PrepareContext) -> Prepared[Relu6Params | None]:
        x = ctx.input(0)
        q = prepare_unary(ctx)
        if q is None:
            return Prepared([x.shape], None)  # clip(x, 0, 6) needs no parameter
        xs, xzp, ys, yzp = q.input_scale, q.input_zero_point, q.output_scale, q.output_zero_point
        same = np.float32(xs) == np.float32(ys) and xzp == yzp
        if ctx.profile == Profile.TFLM or same:
            return Prepared([x.shape], Relu6Params(xzp, quantize_value_f32(6.0, xs, xzp)).tabulated())
        m, s = checked_multiplier(float(np.float32(xs) / np.float32(ys)))
        rescale = Rescale(xzp, yzp, m, s)
        return Prepared([x.shape], Relu6Params(max(-128, yzp), quantize_value_f32(6.0, ys, yzp), rescale).tabulated())

    def eval(self, prepared: Prepared[Relu6Params | None], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        if p is None:
            return [np.clip(x, np.float32(0), np.float32(6))]
        assert p.lookup is not None  # prepare tabulates every int8 case
        return [p.lookup.apply(x)]
