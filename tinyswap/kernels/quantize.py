"""QUANTIZE: float32 -> int8 (TFLM reference `quantize.h`: round(x / scale) in float32, halves
away from zero, + zero point, clamped) and int8 -> int8 requantization (`requantize.h`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import FLOAT32, INT8, Kernel, Prepared, PrepareContext, Step
from tinyswap.kernels.elementwise import int8_table_step
from tinyswap.kernels.quantized import Rescale, checked_multiplier, round_half_away_f32
from tinyswap.kernels.registry import register


@dataclass(frozen=True)
class QuantizeParams:
    """float32 -> int8: the output's scale (a float32 value) and zero point."""

    scale: float
    zero_point: int


@register
class Quantize(Kernel[QuantizeParams | Rescale]):
    op_name = "QUANTIZE"

    def prepare(self, ctx: PrepareContext) -> Prepared[QuantizeParams | Rescale]:
        ctx.expect_counts(1)
        x, y = ctx.input(0), ctx.output()
        ctx.require_types(x, FLOAT32, INT8)
        ctx.require_types(y, INT8)
        if y.quantization is None or y.quantization.per_channel:
            raise ctx.error("the output needs per-tensor quantization parameters")
        ys, yzp = ctx.per_tensor(y)
        if x.dtype == FLOAT32:
            return Prepared([x.shape], QuantizeParams(float(np.float32(ys)), yzp))
        xs, xzp = ctx.per_tensor(x)
        m, s = checked_multiplier(xs / ys)
        return Prepared([x.shape], Rescale(xzp, yzp, m, s))

    def eval(self, prepared: Prepared[QuantizeParams | Rescale], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        if isinstance(p, QuantizeParams):
            return [quantize_float(p, x).astype(np.int8)]
        return [np.clip(p.apply(x), -128, 127).astype(np.int8)]

    def bind(self, prepared: Prepared[QuantizeParams | Rescale], inputs: list[np.ndarray | None],
             outputs: list[np.ndarray]) -> Step:
        """int8 -> int8: one gather from the 256 values `eval` gives. float32 -> int8: straight
        into the output view."""
        p = prepared.params
        if isinstance(p, QuantizeParams):
            x, out = inputs[0], outputs[0]
            return lambda: np.copyto(out, quantize_float(p, x), casting="unsafe")
        return int8_table_step(self.eval, prepared, inputs[0], outputs[0])


def quantize_float(p: QuantizeParams, x: np.ndarray) -> np.ndarray:
    """round(x / scale) in float32, halves away from zero, NaN as 0, + zero point, clamped to
    int8's range; float64 values (exact integers) ready for the int8 cast."""
    with np.errstate(invalid="ignore", over="ignore"):
        q = round_half_away_f32(np.divide(x, np.float32(p.scale), dtype=np.float32))
    q[np.isnan(q)] = 0.0
    q += p.zero_point
    np.maximum(q, -128, out=q)  # +-inf clamp too
    np.minimum(q, 127, out=q)
    return q
