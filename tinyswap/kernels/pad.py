"""PAD: constant int32 paddings [rank, 2]; int8 pads with the output zero point (TFLM `pad.cc`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import FLOAT32, INT8, INT32, Kernel, Prepared, PrepareContext
from tinyswap.kernels.layout import constant_ints, same_quantization
from tinyswap.kernels.registry import register

INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class PadParams:
    paddings: tuple[tuple[int, int], ...]  # (before, after) per dimension
    value: int | float  # what the padded positions hold


def prepare_pad(ctx: PrepareContext, counts: tuple[int, ...]) -> Prepared[PadParams]:
    ctx.expect_counts(counts)
    x, y = ctx.input(0), ctx.output()
    ctx.require_types(x, INT8, FLOAT32, INT32)
    same_quantization(ctx, x, y)
    rank = len(x.shape)
    values = constant_ints(ctx, ctx.input(1), "paddings")
    if len(values) != 2 * rank or any(v < 0 for v in values):
        raise ctx.error(f"paddings {values} must be {rank} non-negative (before, after) pairs")
    pairs = tuple((values[2 * i], values[2 * i + 1]) for i in range(rank))
    shape = tuple(d + a + b for d, (a, b) in zip(x.shape, pairs))
    if any(v > INT32_MAX for v in values + shape):
        raise ctx.error(f"paddings {values} give output shape {shape}, beyond TFLM's int32 dimensions")
    if x.dtype == INT8:
        pad_value: int | float = ctx.per_tensor(y)[1]
    else:
        pad_value = 0
    if len(ctx.inputs) == 3 and ctx.inputs[2] is not None:
        const = ctx.input(2)
        if const.type_name != x.type_name or const.size != 1 or const.constant is None:
            raise ctx.error("constant_values must be one constant value of the input's type")
        pad_value = const.constant.reshape(-1)[0].item()
    return Prepared([shape], PadParams(pairs, pad_value))


@register
class Pad(Kernel[PadParams]):
    op_name = "PAD"

    def prepare(self, ctx: PrepareContext) -> Prepared[PadParams]:
        return prepare_pad(ctx, (2,))

    def eval(self, prepared: Prepared[PadParams], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        return [np.pad(inputs[0], p.paddings, constant_values=p.value)]
