"""MAXIMUM and MINIMUM, int8 and float32, with broadcasting (TFLM `maximum_minimum.cc`).

TFLite Micro compares the stored values (`el1 > el2 ? el1 : el2` for MAXIMUM, `<` for MINIMUM)
without requantizing, so an int8 result only means something when both inputs and the output
share one scale and zero point, as the converter emits them; other quantizations are refused.
The float32 comparison keeps TFLM's order: a NaN in input 1 yields input 2's value.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from tinyswap.kernels.base import FLOAT32, INT8, Kernel, Prepared, PrepareContext
from tinyswap.kernels.elementwise import broadcast_shape
from tinyswap.kernels.layout import same_quantization
from tinyswap.kernels.registry import register


class _Extremum(Kernel):
    greater: ClassVar[bool]

    def prepare(self, ctx: PrepareContext) -> Prepared:
        ctx.expect_counts(2)
        a, b, y = ctx.input(0), ctx.input(1), ctx.output()
        ctx.require_types(a, FLOAT32, INT8)
        same_quantization(ctx, a, b)
        same_quantization(ctx, a, y)
        return Prepared([broadcast_shape(ctx, a, b)])

    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        a, b = inputs[0], inputs[1]
        assert a is not None and b is not None
        pick_a = a > b if self.greater else a < b
        out = np.where(pick_a, a, b).astype(a.dtype, copy=False)
        return [np.broadcast_to(out, prepared.output_shapes[0]).copy()]


@register
class Maximum(_Extremum):
    op_name = "MAXIMUM"
    greater = True


@register
class Minimum(_Extremum):
    op_name = "MINIMUM"
    greater = False
