"""QUANTIZE: float32 -> int8 (TFLM reference `quantize.h`: round(x / scale) in float32, halves
away from zero, + zero point, clamped) and int8 -> int8 requantization (`requantize.h`)."""

from __future__ import annotations

import numpy as np

from tinyswap.fixedpoint import multiply_by_quantized_multiplier
from tinyswap.kernels.base import Kernel, Prepared, PrepareContext
from tinyswap.kernels.quantized import checked_multiplier, round_half_away_f32
from tinyswap.kernels.registry import register
from tinyswap.schema import TensorType


@register
class Quantize(Kernel):
    op_name = "QUANTIZE"

    def prepare(self, ctx: PrepareContext) -> Prepared:
        ctx.expect_counts(1)
        x, y = ctx.input(0), ctx.output()
        ctx.require_types(x, TensorType.FLOAT32, TensorType.INT8)
        ctx.require_types(y, TensorType.INT8)
        if y.quantization is None or y.quantization.per_channel:
            raise ctx.error("the output needs per-tensor quantization parameters")
        ys, yzp = ctx.per_tensor(y)
        if x.type == TensorType.FLOAT32:
            return Prepared([x.shape], {"float": True, "scale": np.float32(ys), "zp": yzp})
        xs, xzp = ctx.per_tensor(x)
        m, s = checked_multiplier(xs / ys)
        return Prepared([x.shape], {"float": False, "x_zp": xzp, "zp": yzp, "m": m, "s": s})

    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        if p["float"]:
            with np.errstate(invalid="ignore", over="ignore"):
                q = round_half_away_f32(x.astype(np.float32) / p["scale"])
            q = np.nan_to_num(q, nan=0.0)
            return [np.clip(q + p["zp"], -128, 127).astype(np.int8)]
        out = multiply_by_quantized_multiplier(x.astype(np.int64) - p["x_zp"], p["m"], p["s"]) + p["zp"]
        return [np.clip(out, -128, 127).astype(np.int8)]
