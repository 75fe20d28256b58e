"""Shared prepare for AVERAGE_POOL_2D and MAX_POOL_2D (TFLM `pooling_common.cc`).

Int8 pooling never rescales: TFLM requires the output to share the input's quantization, and
only clamps to the fused activation's range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import FLOAT32, INT8, PrepareContext
from tinyswap.kernels.conv_common import Window, compute_window
from tinyswap.kernels.quantized import activation_range, float_activation_range


@dataclass(frozen=True)
class Pool2DParams:
    """The pooling window over an [in_height, in_width] image and the activation clamp (in the
    input's own quantization for int8, real values for float32)."""

    window: Window
    in_height: int
    in_width: int
    is_float: bool
    act_min: int | float
    act_max: int | float


def prepare_pool(ctx: PrepareContext) -> tuple[tuple[int, ...], Pool2DParams]:
    """(output shape, parameters) after the checks both pooling ops share."""
    ctx.expect_counts(1)
    x, y = ctx.input(0), ctx.output()
    if len(x.shape) != 4:
        raise ctx.error(f"input must be NHWC, got shape {x.shape}")
    batch, in_h, in_w, channels = x.shape
    fh, fw = int(ctx.option("filter_height")), int(ctx.option("filter_width"))
    win = compute_window(ctx, in_h, in_w, fh, fw, dilate=False)
    activation = ctx.activation()
    if x.dtype == FLOAT32:
        ctx.require_types(y, FLOAT32)
        lo, hi = float_activation_range(activation)
    else:
        ctx.require_types(x, INT8)
        ctx.require_types(y, INT8)
        x_scale, x_zp = ctx.per_tensor(x)
        y_scale, y_zp = ctx.per_tensor(y)
        if np.float32(x_scale) != np.float32(y_scale) or x_zp != y_zp:
            raise ctx.error(
                f"int8 pooling needs equal input and output quantization, got ({x_scale}, {x_zp}) "
                f"and ({y_scale}, {y_zp})"
            )
        lo, hi = activation_range(activation, y_scale, y_zp)
    params = Pool2DParams(win, in_h, in_w, x.dtype == FLOAT32, lo, hi)
    return (batch, win.out_h, win.out_w, channels), params
