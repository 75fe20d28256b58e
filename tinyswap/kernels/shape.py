"""SHAPE: the input's shape as an int32 (or int64) vector, known at prepare time."""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.base import Kernel, Prepared, PrepareContext
from tinyswap.kernels.registry import register
from tinyswap.schema import TensorType


@register
class Shape(Kernel):
    op_name = "SHAPE"

    def prepare(self, ctx: PrepareContext) -> Prepared:
        ctx.expect_counts(1)
        x, y = ctx.input(0), ctx.output()
        ctx.require_types(y, TensorType.INT32, TensorType.INT64)
        value = np.array(x.shape, dtype=y.dtype)
        return Prepared([value.shape], {"value": value}, folded=[value])

    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [prepared.params["value"]]
