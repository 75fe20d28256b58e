"""CONCATENATION. TFLM copies bytes, so int8 inputs must share the output's scale and zero point
(`micro/kernels/concatenation.cc` checks it); we refuse a mismatch the same way."""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.base import Kernel, Prepared, PrepareContext
from tinyswap.kernels.layout import normalize_axis, same_quantization
from tinyswap.kernels.registry import register
from tinyswap.schema import Activation, TensorType


@register
class Concatenation(Kernel):
    op_name = "CONCATENATION"

    def prepare(self, ctx: PrepareContext) -> Prepared:
        if not ctx.inputs:
            raise ctx.error("needs at least one input")
        y = ctx.output()
        if ctx.op.options.get("fused_activation_function", Activation.NONE) != Activation.NONE:
            raise ctx.error("a fused activation on CONCATENATION is not supported (TFLM refuses it too)")
        ctx.require_types(y, TensorType.INT8, TensorType.FLOAT32, TensorType.INT32, TensorType.INT64,
                          TensorType.INT16, TensorType.UINT8, TensorType.BOOL)
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
        return Prepared([tuple(shape)], {"axis": axis}, folded=folded)

    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [np.concatenate(inputs, axis=prepared.params["axis"])]
