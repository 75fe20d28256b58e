"""Helpers shared by the layout-only operators (RESHAPE, SQUEEZE, EXPAND_DIMS, ...)."""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.base import PrepareContext, TensorSpec


def same_quantization(ctx: PrepareContext, a: TensorSpec, b: TensorSpec) -> None:
    """Layout ops copy bytes: input and output must share type, scale and zero point."""
    if a.type_name != b.type_name:
        raise ctx.error(f"input type {a.type_name} differs from output type {b.type_name}")
    qa, qb = a.quantization, b.quantization
    if qa is not None and qb is not None and (
        not np.array_equal(qa.scale, qb.scale) or not np.array_equal(qa.zero_point, qb.zero_point)
    ):
        raise ctx.error("input and output quantization differ; a layout op cannot requantize")


def constant_ints(ctx: PrepareContext, spec: TensorSpec, what: str) -> tuple[int, ...]:
    """The values of a constant int32/int64 tensor (shapes, axes, paddings), or a clear error."""
    if spec.constant is None:
        raise ctx.error(
            f"{what} (tensor {spec.index}, {spec.name!r}) must be constant or computable at prepare "
            "time; data-dependent shapes are not supported"
        )
    if spec.constant.dtype.kind not in "iu":
        raise ctx.error(f"{what} must be an integer tensor, got {spec.constant.dtype}")
    return tuple(int(v) for v in np.asarray(spec.constant).reshape(-1))


def normalize_axis(ctx: PrepareContext, axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise ctx.error(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank
