"""SHAPE: the input's shape as an int32 (or int64) vector, known at prepare time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import INT32, INT64, Kernel, Prepared, PrepareContext, Step, frozen_array
from tinyswap.kernels.registry import register


@dataclass(frozen=True, eq=False)
class ShapeParams:
    value: np.ndarray  # the input's shape in the output's integer type (read-only)


@register
class Shape(Kernel[ShapeParams]):
    op_name = "SHAPE"

    def prepare(self, ctx: PrepareContext) -> Prepared[ShapeParams]:
        ctx.expect_counts(1)
        x, y = ctx.input(0), ctx.output()
        ctx.require_types(y, INT32, INT64)
        value = frozen_array(np.array(x.shape, dtype=y.dtype))
        return Prepared([value.shape], ShapeParams(value), folded=[value])

    def eval(self, prepared: Prepared[ShapeParams], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [prepared.params.value]

    def bind(self, prepared: Prepared[ShapeParams], inputs: list[np.ndarray | None], outputs: list[np.ndarray]) -> Step:
        """The shape (known since prepare) copied into the output view."""
        value, out = prepared.params.value, outputs[0]
        return lambda: np.copyto(out, value)
