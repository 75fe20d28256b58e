"""DEQUANTIZE: int8 -> float32, `(float)(double(scale) * (q - zero_point))` (TFLM `dequantize.h`)."""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.base import Kernel, Prepared, PrepareContext
from tinyswap.kernels.registry import register
from tinyswap.schema import TensorType


@register
class Dequantize(Kernel):
    op_name = "DEQUANTIZE"

    def prepare(self, ctx: PrepareContext) -> Prepared:
        ctx.expect_counts(1)
        x, y = ctx.input(0), ctx.output()
        ctx.require_types(x, TensorType.INT8)
        ctx.require_types(y, TensorType.FLOAT32)
        scale, zp = ctx.per_tensor(x)
        return Prepared([x.shape], {"scale": float(np.float32(scale)), "zp": zp})

    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        return [(p["scale"] * (inputs[0].astype(np.float64) - p["zp"])).astype(np.float32)]
