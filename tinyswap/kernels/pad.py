"""PAD: constant int32 paddings [rank, 2]; int8 pads with the output zero point (TFLM `pad.cc`)."""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.base import Kernel, Prepared, PrepareContext
from tinyswap.kernels.layout import constant_ints, same_quantization
from tinyswap.kernels.registry import register
from tinyswap.schema import TensorType


def prepare_pad(ctx: PrepareContext, counts: tuple[int, ...]) -> Prepared:
    ctx.expect_counts(counts)
    x, y = ctx.input(0), ctx.output()
    ctx.require_types(x, TensorType.INT8, TensorType.FLOAT32, TensorType.INT32)
    same_quantization(ctx, x, y)
    rank = len(x.shape)
    values = constant_ints(ctx, ctx.input(1), "paddings")
    if len(values) != 2 * rank or any(v < 0 for v in values):
        raise ctx.error(f"paddings {values} must be {rank} non-negative (before, after) pairs")
    pairs = tuple((values[2 * i], values[2 * i + 1]) for i in range(rank))
    if x.type == TensorType.INT8:
        pad_value: int | float = ctx.per_tensor(y)[1]
    else:
        pad_value = 0
    if len(ctx.inputs) == 3 and ctx.inputs[2] is not None:
        const = ctx.input(2)
        if const.type != x.type or const.size != 1 or const.constant is None:
            raise ctx.error("constant_values must be one constant value of the input's type")
        pad_value = const.constant.reshape(-1)[0].item()
    shape = tuple(d + a + b for d, (a, b) in zip(x.shape, pairs))
    return Prepared([shape], {"pairs": pairs, "value": pad_value})


@register
class Pad(Kernel):
    op_name = "PAD"

    def prepare(self, ctx: PrepareContext) -> Prepared:
        return prepare_pad(ctx, (2,))

    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        return [np.pad(inputs[0], p["pairs"], constant_values=p["value"])]
