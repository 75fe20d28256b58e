"""EXPAND_DIMS: insert a size-1 dimension (the converter's Conv1D -> CONV_2D bridge)."""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.base import Prepared, PrepareContext
from tinyswap.kernels.copy_steps import ByteCopyKernel
from tinyswap.kernels.layout import constant_ints, normalize_axis, same_quantization
from tinyswap.kernels.registry import register


@register
class ExpandDims(ByteCopyKernel):
    op_name = "EXPAND_DIMS"

    def prepare(self, ctx: PrepareContext) -> Prepared:
        ctx.expect_counts(2)
        x, y = ctx.input(0), ctx.output()
        same_quantization(ctx, x, y)
        axis_values = constant_ints(ctx, ctx.input(1), "axis input")
        if len(axis_values) != 1:
            raise ctx.error(f"axis input must hold one value, got {axis_values}")
        axis = normalize_axis(ctx, axis_values[0], len(x.shape) + 1)
        shape = list(x.shape)
        shape.insert(axis, 1)
        return Prepared([tuple(shape)])

    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [inputs[0].reshape(prepared.output_shapes[0])]
