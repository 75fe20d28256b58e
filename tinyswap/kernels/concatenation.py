"""CONCATENATION. TFLM copies bytes, so int8 inputs must share the output's scale and zero point
(`micro/kernels/concatenation.cc` checks it); we refuse a mismatch the same way."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import (
    BOOL,
    FLOAT32,
    INT8,
    INT16,
    INT32,
    INT64,
    UINT8,
    FusedActivation,
    Kernel,
    Prepared,
    PrepareContext,
    Step,
)
from tinyswap.kernels.copy_steps import concatenation_step
from tinyswap.kernels.layout import normalize_axis, same_quantization
from tinyswap.kernels.registry import register


# TFLM `concatenation.cc` (kMaxInputNum) refuses more inputs than this in Prepare.
MAX_INPUTS = 10


@dataclass(frozen=True)
class ConcatenationParams:
    axis: int  # normalised to [0, rank)


@register
class Concatenation(Kernel[ConcatenationParams]):
    op_name = "CONCATENATION"

    def prepare(self, ctx: PrepareContext) -> Prepared[ConcatenationParams]:
        if not ctx.inputs:
            raise ctx.error("needs at least one input")
        if len(ctx.inputs) > MAX_INPUTS:
            raise ctx.error(f"has {len(ctx.inputs)} inputs; TFLM concatenates at most {MAX_INPUTS}")
        y = ctx.output()
        if ctx.options.get("fused_activation_function", FusedActivation.NONE) != FusedActivation.NONE:
            raise ctx.error("a fused activation on CONCATENATION is not supported (TFLM refuses it too)")
        ctx.require_types(y, INT8, FLOAT32, INT32, INT64, INT16, UINT8, BOOL)
        specs = [ctx.input(i) for i in range(len(ctx.inputs))]
        rank = len(specs[0].shape)
        axis = normalize_axis(ctx, ctx.option("axis"), rank)
        for i, s in enumerate(specs):
            same_quantization(ctx, s, y)
            if len(s.shape) != rank or any(
                d != d0 for a, (d, d0) in enumerate(zip(s.shape, specs[0].shape)) if a != axis
            ):
                raise ctx.error(f"input {i} shape {s.shape} does not fit input 0 shape {specs[0].shape} on axis {axis}")
        shape = list(specs[0].shape)
        shape[axis] = sum(s.shape[axis] for s in specs)
        folded = None
        if all(s.constant is not None for s in specs):
            folded = [np.concatenate([np.asarray(s.constant) for s in specs], axis=axis)]
        return Prepared([tuple(shape)], ConcatenationParams(axis), folded=folded)

    def eval(self, prepared: Prepared[ConcatenationParams], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [np.concatenate(inputs, axis=prepared.params.axis)]

    def bind(self, prepared: Prepared[ConcatenationParams], inputs: list[np.ndarray | None],
             outputs: list[np.ndarray]) -> Step:
        """Each input copied into its slab of the output view."""
        return concatenation_step(inputs, outputs[0], prepared.params.axis)  # type: ignore[arg-type]
