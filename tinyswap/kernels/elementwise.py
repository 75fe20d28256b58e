"""Shared prepare for the binary arithmetic ops (ADD, SUB, MUL): types, broadcasting, ranges."""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.base import FLOAT32, INT8, PrepareContext, TensorSpec
from tinyswap.kernels.quantized import FloatActivation, float_activation

MAX_BROADCAST_RANK = 6  # TFLM's Broadcast*6DSlow kernels


def broadcast_shape(ctx: PrepareContext, a: TensorSpec, b: TensorSpec) -> tuple[int, ...]:
    if max(len(a.shape), len(b.shape)) > MAX_BROADCAST_RANK:
        raise ctx.error(f"rank above {MAX_BROADCAST_RANK} is not supported ({a.shape}, {b.shape})")
    try:
        return tuple(int(d) for d in np.broadcast_shapes(a.shape, b.shape))
    except ValueError:
        raise ctx.error(f"shapes {a.shape} and {b.shape} do not broadcast") from None


def prepare_binary(ctx: PrepareContext) -> tuple[TensorSpec, TensorSpec, TensorSpec, tuple[int, ...], bool]:
    """(input1, input2, output, output shape, is_float) after the checks every binary op shares."""
    ctx.expect_counts(2)
    a, b, y = ctx.input(0), ctx.input(1), ctx.output()
    shape = broadcast_shape(ctx, a, b)
    if a.dtype == FLOAT32:
        for spec in (b, y):
            ctx.require_types(spec, FLOAT32)
        return a, b, y, shape, True
    for spec in (a, b, y):
        ctx.require_types(spec, INT8)
    return a, b, y, shape, False


def float_binary_params(ctx: PrepareContext) -> FloatActivation:
    """A float32 binary op's parameters: the fused activation's clamp, nothing else."""
    return float_activation(ctx.activation())
