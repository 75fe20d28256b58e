"""Window arithmetic shared by CONV_2D, DEPTHWISE_CONV_2D and the pooling kernels.

TFLite `kernels/padding.h`: SAME gives `out = ceil(in / stride)` and pads
`total = max((out - 1) * stride + effective_filter - in, 0)`, `total // 2` before (the extra
one, if odd, after); VALID gives `out = (in - effective_filter) // stride + 1` and no padding.
Reference kernels skip out-of-image taps; we pad instead with a value that contributes nothing
(zero after subtracting the input zero point), which is the same sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import PrepareContext
from tinyswap.schema import Padding


@dataclass(frozen=True)
class Window:
    filter_h: int
    filter_w: int
    stride_h: int
    stride_w: int
    dilation_h: int
    dilation_w: int
    out_h: int
    out_w: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int


def _out_and_pad(size: int, filt: int, stride: int, dilation: int, padding: Padding) -> tuple[int, int, int]:
    effective = (filt - 1) * dilation + 1
    if padding == Padding.SAME:
        out = (size + stride - 1) // stride
    else:
        out = (size - effective + stride) // stride
    total = max((out - 1) * stride + effective - size, 0)
    return out, total // 2, total - total // 2


def compute_window(ctx: PrepareContext, in_h: int, in_w: int, filter_h: int, filter_w: int,
                   dilate: bool = True) -> Window:
    opts = ctx.op.options
    sh, sw = int(opts.get("stride_h", 1)), int(opts.get("stride_w", 1))
    dh = int(opts.get("dilation_h_factor", 1)) if dilate else 1
    dw = int(opts.get("dilation_w_factor", 1)) if dilate else 1
    if min(sh, sw, dh, dw) < 1:
        raise ctx.error(f"strides ({sh}, {sw}) and dilations ({dh}, {dw}) must be >= 1")
    if filter_h < 1 or filter_w < 1:
        raise ctx.error(f"filter {filter_h}x{filter_w} must be at least 1x1")
    padding = ctx.option("padding")
    out_h, pt, pb = _out_and_pad(in_h, filter_h, sh, dh, padding)
    out_w, pl, pr = _out_and_pad(in_w, filter_w, sw, dw, padding)
    if out_h < 1 or out_w < 1:
        raise ctx.error(
            f"a {filter_h}x{filter_w} filter (dilation {dh}x{dw}) with {padding.name} padding "
            f"does not fit a {in_h}x{in_w} input"
        )
    return Window(filter_h, filter_w, sh, sw, dh, dw, out_h, out_w, pt, pb, pl, pr)


def pad_spatial(x: np.ndarray, w: Window, pad_value: float | int = 0, dtype: np.dtype | None = None,
                 offset: float | int = 0) -> np.ndarray:
    """NHWC `x - offset` as `dtype`, padded for the window: one pass into a filled buffer
    (np.pad and a separate subtraction would each make another full copy)."""
    dtype = np.dtype(dtype or x.dtype)
    b, h, wd, c = x.shape
    out = np.full((b, h + w.pad_top + w.pad_bottom, wd + w.pad_left + w.pad_right, c), pad_value, dtype=dtype)
    np.subtract(x, dtype.type(offset), out=out[:, w.pad_top : w.pad_top + h, w.pad_left : w.pad_left + wd, :],
                casting="unsafe")
    return out


def patches(x: np.ndarray, w: Window, pad_value: float | int = 0, padded: bool = False) -> np.ndarray:
    """[batch, out_h, out_w, filter_h, filter_w, channels] view of NHWC `x` (padded copy),
    or of an `x` that `pad_spatial` already padded."""
    if not padded and (w.pad_top or w.pad_bottom or w.pad_left or w.pad_right):
        x = pad_spatial(x, w, pad_value)
    eff_h = (w.filter_h - 1) * w.dilation_h + 1
    eff_w = (w.filter_w - 1) * w.dilation_w + 1
    win = np.lib.stride_tricks.sliding_window_view(x, (eff_h, eff_w), axis=(1, 2))
    win = win[:, : (w.out_h - 1) * w.stride_h + 1 : w.stride_h, : (w.out_w - 1) * w.stride_w + 1 : w.stride_w,
              :, :: w.dilation_h, :: w.dilation_w]
    return np.moveaxis(win, 3, -1)


def in_bounds_counts(in_h: int, in_w: int, w: Window) -> np.ndarray:
    """[out_h, out_w] number of filter taps inside the image (for AVERAGE_POOL_2D)."""
    ones = np.ones((1, in_h, in_w, 1), dtype=np.int64)
    return patches(ones, w, 0).sum(axis=(3, 4, 5))[0]
