"""RESHAPE: the same bytes under a new shape (TFLM `reshape_common.cc`)."""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.base import Prepared, PrepareContext
from tinyswap.kernels.copy_steps import ByteCopyKernel
from tinyswap.kernels.layout import constant_ints, same_quantization
from tinyswap.kernels.registry import register


@register
class Reshape(ByteCopyKernel):
    op_name = "RESHAPE"

    def prepare(self, ctx: PrepareContext) -> Prepared:
        ctx.expect_counts((1, 2))
        x, y = ctx.input(0), ctx.output()
        same_quantization(ctx, x, y)
        shape_input = ctx.optional_input(1)
        if shape_input is not None and len(shape_input.shape) == 1 and shape_input.size > 0:
            target = list(constant_ints(ctx, shape_input, "shape input"))
        elif ctx.options.get("new_shape"):
            target = list(ctx.options["new_shape"])
        else:
            target = list(y.shape)
        if target.count(-1) > 1:
            raise ctx.error(f"shape {target} has more than one -1")
        if any(d < -1 for d in target):
            raise ctx.error(f"shape {target} has a negative dimension")
        if -1 in target:
            known = int(np.prod([d for d in target if d != -1], dtype=np.int64))
            if known == 0 or x.size % known:
                raise ctx.error(f"cannot reshape {x.shape} into {target}")
            target[target.index(-1)] = x.size // known
        size = int(np.prod(target, dtype=np.int64))
        batch = x.shape[0] if x.shape else 1
        if size != x.size and batch > 1 and x.size == batch * size:
            # The converter bakes batch 1 into constant shapes: [1, 2] in person_detect, or a
            # dropped batch ([1, 16] -> [16]) before a broadcast ADD. When the caller resized
            # the batch, exactly one row's worth of target means the batch follows in front.
            target = [batch * target[0], *target[1:]] if target and target[0] == 1 else [batch, *target]
            size = x.size
        if size != x.size:
            raise ctx.error(f"cannot reshape {x.shape} ({x.size} elements) into {tuple(target)}")
        return Prepared([tuple(target)])

    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [inputs[0].reshape(prepared.output_shapes[0])]
