"""TRANSPOSE: int8, int16 and float32 tensors of rank 1 to 5 permuted by a constant `perm`
(TFLM `transpose.cc`; it moves bytes, so input and output share their quantization)."""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.base import FLOAT32, INT8, INT16, Kernel, Prepared, PrepareContext
from tinyswap.kernels.layout import constant_ints, same_quantization
from tinyswap.kernels.registry import register

MAX_TRANSPOSE_RANK = 5  # the tflite_micro wheel: "Transpose op only supports 1D-5D input arrays"


@register
class Transpose(Kernel):
    op_name = "TRANSPOSE"

    def prepare(self, ctx: PrepareContext) -> Prepared[tuple[int, ...]]:
        ctx.expect_counts(2)
        x, y = ctx.input(0), ctx.output()
        ctx.require_types(x, FLOAT32, INT8, INT16)
        same_quantization(ctx, x, y)
        perm = constant_ints(ctx, ctx.input(1), "perm")
        rank = len(x.shape)
        if not 1 <= rank <= MAX_TRANSPOSE_RANK:
            raise ctx.error(f"input rank {rank} is outside 1..{MAX_TRANSPOSE_RANK}")
        if sorted(perm) != list(range(rank)):
            raise ctx.error(f"perm {list(perm)} is not a permutation of the {rank} input dimensions")
        return Prepared([tuple(x.shape[p] for p in perm)], perm)

    def eval(self, prepared: Prepared[tuple[int, ...]], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        assert x is not None
        return [np.ascontiguousarray(np.transpose(x, prepared.params))]
