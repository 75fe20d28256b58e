"""Shared prepare for AVERAGE_POOL_2D and MAX_POOL_2D (TFLM `pooling_common.cc`).

Int8 pooling never rescales: TFLM requires the output to share the input's quantization, and
only clamps to the fused activation's range.
"""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.base import Prepared, PrepareContext
from tinyswap.kernels.conv_common import compute_window
from tinyswap.kernels.quantized import activation_range, float_activation_range
from tinyswap.schema import TensorType


def prepare_pool(ctx: PrepareContext) -> Prepared:
    ctx.expect_counts(1)
    x, y = ctx.input(0), ctx.output()
    if len(x.shape) != 4:
        raise ctx.error(f"input must be NHWC, got shape {x.shape}")
    batch, in_h, in_w, channels = x.shape
    fh, fw = int(ctx.option("filter_height")), int(ctx.option("filter_width"))
    win = compute_window(ctx, in_h, in_w, fh, fw, dilate=False)
    activation = ctx.option("fused_activation_function")
    params: dict = {"window": win, "in_hw": (in_h, in_w)}
    if x.type == TensorType.FLOAT32:
        ctx.require_types(y, TensorType.FLOAT32)
        params.update(float=True, range=float_activation_range(activation))
    else:
        ctx.require_types(x, TensorType.INT8)
        ctx.require_types(y, TensorType.INT8)
        x_scale, x_zp = ctx.per_tensor(x)
        y_scale, y_zp = ctx.per_tensor(y)
        if np.float32(x_scale) != np.float32(y_scale) or x_zp != y_zp:
            raise ctx.error(
                f"int8 pooling needs equal input and output quantization, got ({x_scale}, {x_zp}) "
                f"and ({y_scale}, {y_zp})"
            )
        params.update(float=False, range=activation_range(activation, y_scale, y_zp, y.type))
    return Prepared([(batch, win.out_h, win.out_w, channels)], params)
