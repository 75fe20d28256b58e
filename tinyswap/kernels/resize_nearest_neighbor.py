"""RESIZE_NEAREST_NEIGHBOR, int8, int16 and float32 NHWC (TFLM `resize_nearest_neighbor.cc`,
reference `GetNearestNeighbor`).

Each output row (and column) reads input index
`min(round_or_floor((o + offset) * scale), in - 1)`, clamped at 0 with half-pixel centres, where
`scale = (in - 1) / (out - 1)` with `align_corners` (and out > 1), else `in / out`, and
`offset = 0.5` with `half_pixel_centers`. The reference computes in float32 (`static_cast<float>`
and `TfLiteRound`, which rounds halves away from zero), so the indices are computed in float32
here too. The size input must be a constant int32 [2] (TFLM refuses dynamic sizes); bytes are
copied, so input and output share their quantization.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import FLOAT32, INT8, INT16, INT32, Kernel, Prepared, PrepareContext, Step
from tinyswap.kernels.copy_steps import rows_gather_step
from tinyswap.kernels.layout import constant_ints, same_quantization
from tinyswap.kernels.registry import register


@dataclass(frozen=True)
class ResizeParams:
    rows: np.ndarray  # int64 input row of every output row
    cols: np.ndarray  # int64 input column of every output column


def nearest_indices(in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool) -> np.ndarray:
    """The input index each of `out_size` outputs reads, in TFLM's float32 arithmetic."""
    f32 = np.float32
    if align_corners and out_size > 1:
        scale = f32(in_size - 1) / f32(out_size - 1)
    else:
        scale = f32(in_size) / f32(out_size)
    offset = f32(0.5) if half_pixel_centers else f32(0.0)
    value = (np.arange(out_size, dtype=f32) + offset) * scale  # float32 throughout
    if align_corners:
        whole = np.floor(value)
        index = whole + (value - whole >= f32(0.5))  # round half away from zero (value >= 0)
    else:
        index = np.floor(value)
    index = np.minimum(index.astype(np.int64), in_size - 1)
    if half_pixel_centers:
        index = np.maximum(index, 0)
    return index


@register
class ResizeNearestNeighbor(Kernel):
    op_name = "RESIZE_NEAREST_NEIGHBOR"

    def prepare(self, ctx: PrepareContext) -> Prepared[ResizeParams]:
        ctx.expect_counts(2)
        x, size, y = ctx.input(0), ctx.input(1), ctx.output()
        ctx.require_types(x, FLOAT32, INT8, INT16)
        ctx.require_types(size, INT32)
        same_quantization(ctx, x, y)
        if len(x.shape) != 4:
            raise ctx.error(f"input must be 4-D NHWC, got shape {x.shape}")
        if size.shape != (2,):
            raise ctx.error(f"size must be an int32 [2] (height, width), got shape {size.shape}")
        height, width = constant_ints(ctx, size, "size")
        if height < 1 or width < 1:
            raise ctx.error(f"size ({height}, {width}) must be positive")
        align = bool(ctx.options.get("align_corners", False))
        half = bool(ctx.options.get("half_pixel_centers", False))
        params = ResizeParams(nearest_indices(x.shape[1], height, align, half),
                              nearest_indices(x.shape[2], width, align, half))
        return Prepared([(x.shape[0], height, width, x.shape[3])], params)

    def eval(self, prepared: Prepared[ResizeParams], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        assert x is not None
        p = prepared.params
        return [np.ascontiguousarray(x[:, p.rows][:, :, p.cols])]

    def bind(self, prepared: Prepared[ResizeParams], inputs: list[np.ndarray | None],
             outputs: list[np.ndarray]) -> Step:
        """One gather along the pixel axis: output pixel (r, c) reads input pixel (rows[r], cols[c])."""
        x, p = inputs[0], prepared.params
        step = None if x is None else rows_gather_step(x, p.rows[:, None] * x.shape[2] + p.cols[None, :], outputs[0])
        return super().bind(prepared, inputs, outputs) if step is None else step
