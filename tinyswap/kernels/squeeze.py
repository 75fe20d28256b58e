"""SQUEEZE: drop size-1 dimensions (all of them, or those listed in `squeeze_dims`)."""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.base import Prepared, PrepareContext
from tinyswap.kernels.copy_steps import ByteCopyKernel
from tinyswap.kernels.layout import normalize_axis, same_quantization
from tinyswap.kernels.registry import register


@register
class Squeeze(ByteCopyKernel):
    op_name = "SQUEEZE"

    def prepare(self, ctx: PrepareContext) -> Prepared:
        ctx.expect_counts(1)
        x, y = ctx.input(0), ctx.output()
        same_quantization(ctx, x, y)
        dims = ctx.options.get("squeeze_dims") or ()
        rank = len(x.shape)
        if dims:
            axes = {normalize_axis(ctx, d, rank, "squeeze dimension") for d in dims}
            for a in axes:
                if x.shape[a] != 1:
                    raise ctx.error(f"cannot squeeze dimension {a} of size {x.shape[a]}")
        else:
            axes = {a for a, d in enumerate(x.shape) if d == 1}
        return Prepared([tuple(d for a, d in enumerate(x.shape) if a not in axes)])

    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [inputs[0].reshape(prepared.output_shapes[0])]
