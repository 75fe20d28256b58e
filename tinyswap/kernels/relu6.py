"""RELU6. int8 in TFLM (`activations_common.cc` Relu6Prepare) clamps to [zp, q(6)] in the
*input's* quantization and never rescales; LiteRT's reference kernel rescales to the output's.
Both agree when input and output share quantization, which is what converters emit."""

from __future__ import annotations

import numpy as np

from tinyswap.fixedpoint import multiply_by_quantized_multiplier
from tinyswap.kernels.base import Kernel, Prepared, PrepareContext, Profile
from tinyswap.kernels.quantized import checked_multiplier, round_half_away_f32
from tinyswap.kernels.registry import register
from tinyswap.schema import TensorType


def quantize_value_f32(value: float, scale: float, zero_point: int) -> int:
    """TFLM `FloatToQuantizedType`: round(value / scale) in float32 + zero point, clamped to int8."""
    q = int(round_half_away_f32(np.float32(value) / np.float32(scale))) + zero_point
    return min(127, max(-128, q))


@register
class Relu6(Kernel):
    op_name = "RELU6"

    def prepare(self, ctx: PrepareContext) -> Prepared:
        ctx.expect_counts(1)
        x, y = ctx.input(0), ctx.output()
        if x.type == TensorType.FLOAT32:
            ctx.require_types(y, TensorType.FLOAT32)
            return Prepared([x.shape], {"float": True})
        ctx.require_types(x, TensorType.INT8)
        ctx.require_types(y, TensorType.INT8)
        (xs, xzp), (ys, yzp) = ctx.per_tensor(x), ctx.per_tensor(y)
        same = np.float32(xs) == np.float32(ys) and xzp == yzp
        if ctx.profile == Profile.TFLM or same:
            return Prepared([x.shape], {"float": False, "rescale": False,
                                        "range": (xzp, quantize_value_f32(6.0, xs, xzp))})
        m, s = checked_multiplier(float(np.float32(xs) / np.float32(ys)))
        return Prepared([x.shape], {"float": False, "rescale": True, "x_zp": xzp, "y_zp": yzp, "m": m, "s": s,
                                    "range": (max(-128, yzp), quantize_value_f32(6.0, ys, yzp))})

    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        if p["float"]:
            return [np.clip(x, np.float32(0), np.float32(6))]
        lo, hi = p["range"]
        if not p["rescale"]:
            return [np.clip(x, lo, hi).astype(np.int8)]
        out = multiply_by_quantized_multiplier(x.astype(np.int64) - p["x_zp"], p["m"], p["s"]) + p["y_zp"]
        return [np.clip(out, lo, hi).astype(np.int8)]
