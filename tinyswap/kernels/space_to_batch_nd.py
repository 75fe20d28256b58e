"""SPACE_TO_BATCH_ND for 3-D [b, w, c] and 4-D [b, h, w, c] inputs (TFLM supports these).

Output batch index `(shift_h * block_w + shift_w) * in_batch + b`. The pad value: TFLM's
reference kernel pads with `params.output_offset`, which `micro/kernels/space_to_batch_nd.cc`
never sets: it is uninitialised arena memory (measured: 0 in a fresh process, 32 after
another model ran). The TFLM profile pads with 0, what a zero-initialised (.bss) arena gives on
a device; LiteRT sets it to
the output zero point. The converter emits this op around dilated convolutions, where the
difference reaches the output: the profiles follow their runtimes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import FLOAT32, INT8, Kernel, Prepared, PrepareContext, Profile
from tinyswap.kernels.layout import constant_ints, same_quantization
from tinyswap.kernels.registry import register


@dataclass(frozen=True)
class SpaceToBatchNDParams:
    block_shape: tuple[int, ...]  # one block size per spatial dimension
    paddings: tuple[tuple[int, int], ...]  # (before, after) per spatial dimension
    pad_value: int | float


def spatial_params(ctx: PrepareContext, rank: int, what: str) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    if rank not in (3, 4):
        raise ctx.error(f"input must be 3-D or 4-D, got rank {rank}")
    spatial = rank - 2
    block = constant_ints(ctx, ctx.input(1), "block_shape")
    amounts = constant_ints(ctx, ctx.input(2), what)
    if len(block) != spatial or any(b < 1 for b in block):
        raise ctx.error(f"block_shape {block} must hold {spatial} positive values")
    if len(amounts) != 2 * spatial or any(v < 0 for v in amounts):
        raise ctx.error(f"{what} {amounts} must hold {spatial} non-negative (before, after) pairs")
    return block, tuple((amounts[2 * i], amounts[2 * i + 1]) for i in range(spatial))


@register
class SpaceToBatchND(Kernel[SpaceToBatchNDParams]):
    op_name = "SPACE_TO_BATCH_ND"

    def prepare(self, ctx: PrepareContext) -> Prepared[SpaceToBatchNDParams]:
        ctx.expect_counts(3)
        x, y = ctx.input(0), ctx.output()
        ctx.require_types(x, INT8, FLOAT32)
        same_quantization(ctx, x, y)
        block, pads = spatial_params(ctx, len(x.shape), "paddings")
        padded = [d + a + b for d, (a, b) in zip(x.shape[1:-1], pads)]
        if any(p % b for p, b in zip(padded, block)):
            raise ctx.error(f"padded spatial shape {padded} is not divisible by block_shape {block}")
        value = 0
        if x.dtype == INT8 and ctx.profile == Profile.LITERT:
            value = ctx.per_tensor(y)[1]
        shape = (x.shape[0] * int(np.prod(block)), *[p // b for p, b in zip(padded, block)], x.shape[-1])
        return Prepared([shape], SpaceToBatchNDParams(block, pads, value))

    def eval(self, prepared: Prepared[SpaceToBatchNDParams], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        block = p.block_shape
        padded = np.pad(x, ((0, 0), *p.paddings, (0, 0)), constant_values=p.pad_value)
        b, c = x.shape[0], x.shape[-1]
        if len(block) == 1:
            (bw,) = block
            w = padded.shape[1] // bw
            out = padded.reshape(b, w, bw, c).transpose(2, 0, 1, 3)
        else:
            bh, bw = block
            h, w = padded.shape[1] // bh, padded.shape[2] // bw
            out = padded.reshape(b, h, bh, w, bw, c).transpose(2, 4, 0, 1, 3, 5)
        return [np.ascontiguousarray(out).reshape(prepared.output_shapes[0])]
