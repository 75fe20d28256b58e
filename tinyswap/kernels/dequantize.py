"""DEQUANTIZE: int8 -> float32, `(float)(double(scale) * (q - zero_point))` (TFLM `dequantize.h`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import FLOAT32, INT8, Kernel, Prepared, PrepareContext, Step
from tinyswap.kernels.elementwise import int8_table_step
from tinyswap.kernels.registry import register


@dataclass(frozen=True)
class DequantizeParams:
    scale: float  # the input's float32 scale, widened to double as TFLM does
    zero_point: int


@register
class Dequantize(Kernel[DequantizeParams]):
    op_name = "DEQUANTIZE"

    def prepare(self, ctx: PrepareContext) -> Prepared[DequantizeParams]:
        ctx.expect_counts(1)
        x, y = ctx.input(0), ctx.output()
        ctx.require_types(x, INT8)
        ctx.require_types(y, FLOAT32)
        scale, zp = ctx.per_tensor(x)
        return Prepared([x.shape], DequantizeParams(float(np.float32(scale)), zp))

    def eval(self, prepared: Prepared[DequantizeParams], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        return [(p.scale * (inputs[0].astype(np.float64) - p.zero_point)).astype(np.float32)]

    def bind(self, prepared: Prepared[DequantizeParams], inputs: list[np.ndarray | None],
             outputs: list[np.ndarray]) -> Step:
        """One gather from the 256 values `eval` gives (an int8 input has no others)."""
        return int8_table_step(self.eval, prepared, inputs[0], outputs[0])
