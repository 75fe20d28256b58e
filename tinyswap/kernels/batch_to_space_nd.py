"""BATCH_TO_SPACE_ND for 3-D and 4-D inputs: the inverse of SPACE_TO_BATCH_ND, then crops."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import FLOAT32, INT8, Kernel, Prepared, PrepareContext
from tinyswap.kernels.layout import same_quantization
from tinyswap.kernels.registry import register
from tinyswap.kernels.space_to_batch_nd import spatial_params


@dataclass(frozen=True)
class BatchToSpaceNDParams:
    block_shape: tuple[int, ...]  # one block size per spatial dimension
    crops: tuple[tuple[int, int], ...]  # (before, after) per spatial dimension


@register
class BatchToSpaceND(Kernel[BatchToSpaceNDParams]):
    op_name = "BATCH_TO_SPACE_ND"

    def prepare(self, ctx: PrepareContext) -> Prepared[BatchToSpaceNDParams]:
        ctx.expect_counts(3)
        x, y = ctx.input(0), ctx.output()
        ctx.require_types(x, INT8, FLOAT32)
        same_quantization(ctx, x, y)
        block, crops = spatial_params(ctx, len(x.shape), "crops")
        blocks = int(np.prod(block))
        if x.shape[0] % blocks:
            raise ctx.error(f"batch {x.shape[0]} is not divisible by the block size {blocks}")
        full = [d * b for d, b in zip(x.shape[1:-1], block)]
        cropped = [f - a - b for f, (a, b) in zip(full, crops)]
        if any(c < 0 for c in cropped):
            raise ctx.error(f"crops {crops} exceed the spatial shape {full}")
        shape = (x.shape[0] // blocks, *cropped, x.shape[-1])
        return Prepared([shape], BatchToSpaceNDParams(block, crops))

    def eval(self, prepared: Prepared[BatchToSpaceNDParams], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        block, crops = p.block_shape, p.crops
        c = x.shape[-1]
        if len(block) == 1:
            (bw,) = block
            b = x.shape[0] // bw
            full = x.reshape(bw, b, x.shape[1], c).transpose(1, 2, 0, 3).reshape(b, x.shape[1] * bw, c)
            (l, r), = crops
            return [np.ascontiguousarray(full[:, l:full.shape[1] - r])]
        bh, bw = block
        b = x.shape[0] // (bh * bw)
        h, w = x.shape[1], x.shape[2]
        full = x.reshape(bh, bw, b, h, w, c).transpose(2, 3, 0, 4, 1, 5).reshape(b, h * bh, w * bw, c)
        (t, bo), (l, r) = crops
        return [np.ascontiguousarray(full[:, t:full.shape[1] - bo, l:full.shape[2] - r])]
