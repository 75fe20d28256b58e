"""RELU: int8 rescales (TFLM `activations_common.cc`: multiplier from the float32 quotient
input_scale / output_scale, clamp at the output's zero) and float32."""

from __future__ import annotations

import numpy as np

from tinyswap.fixedpoint import multiply_by_quantized_multiplier
from tinyswap.kernels.base import Kernel, Prepared, PrepareContext
from tinyswap.kernels.quantized import checked_multiplier, round_half_away_f32
from tinyswap.kernels.registry import register
from tinyswap.schema import TensorType


@register
class Relu(Kernel):
    op_name = "RELU"

    def prepare(self, ctx: PrepareContext) -> Prepared:
        ctx.expect_counts(1)
        x, y = ctx.input(0), ctx.output()
        if x.type == TensorType.FLOAT32:
            ctx.require_types(y, TensorType.FLOAT32)
            return Prepared([x.shape], {"float": True})
        ctx.require_types(x, TensorType.INT8)
        ctx.require_types(y, TensorType.INT8)
        (xs, xzp), (ys, yzp) = ctx.per_tensor(x), ctx.per_tensor(y)
        m, s = checked_multiplier(float(np.float32(xs) / np.float32(ys)))
        lo = max(-128, yzp + int(round_half_away_f32(np.float32(0.0) / np.float32(ys))))
        return Prepared([x.shape], {"float": False, "x_zp": xzp, "y_zp": yzp, "m": m, "s": s, "range": (lo, 127)})

    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        if p["float"]:
            return [np.maximum(x, np.float32(0))]
        out = multiply_by_quantized_multiplier(x.astype(np.int64) - p["x_zp"], p["m"], p["s"]) + p["y_zp"]
        lo, hi = p["range"]
        return [np.clip(out, lo, hi).astype(np.int8)]
