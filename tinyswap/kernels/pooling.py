"""Shared prepare and window reductions for AVERAGE_POOL_2D and MAX_POOL_2D (TFLM
`pooling_common.cc`, reference `pooling.h`).

Int8 pooling never rescales: TFLM requires the output to share the input's quantization, and
only clamps to the fused activation's range.

Like the reference kernels, only in-image taps are read: each output row (column) covers one
contiguous range of input rows (columns), clipped to the image, so nothing is padded and the
work depends on the image, not on the filter size. Prepare refuses windows whose padding
TFLM's int arithmetic cannot hold, and windows whose evaluation would exceed `MAX_POOL_WORK`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinyswap.kernels.base import FLOAT32, INT8, PrepareContext
from tinyswap.kernels.conv_common import PlannedInput, Window, compute_window, patches
from tinyswap.kernels.quantized import activation_range, float_activation_range

# Element reads one pooling evaluation may make (about a second of NumPy work); a window that
# needs more is refused at prepare rather than left to run for minutes.
MAX_POOL_WORK = 1 << 27
_INT32_MAX = 2**31 - 1


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


# Taps per window up to which a plan step reduces tap by tap (one pass per tap, over views fixed
# at bind); NumPy's reduction over a strided six-dimensional window view is several times slower.
MAX_TAP_PASSES = 16


@dataclass(frozen=True, eq=False)
class WindowTaps:
    """An int8 NHWC input's pooling windows as one [batch, out_h, out_w, channels] view per tap,
    fixed at bind: views of the input itself when the window has no padding, else of a bordered
    copy (`fill` refreshes its interior on each invoke)."""

    taps: tuple[np.ndarray, ...]
    fill: "Callable[[], None] | None"

    @classmethod
    def of(cls, x: np.ndarray, w: Window, pad_value: int) -> "WindowTaps | None":
        """None past MAX_TAP_PASSES taps, or when the bordered copy is refused (`PlannedInput`)."""
        if x.dtype != INT8 or w.filter_h * w.filter_w > MAX_TAP_PASSES:
            return None
        if not (w.pad_top or w.pad_bottom or w.pad_left or w.pad_right):
            windows, fill = patches(x, w, padded=True), None
        else:
            planned = PlannedInput.of(x, w, INT8, 0, pad_value=pad_value)
            if planned is None:
                return None
            windows, fill = planned.windows, planned.fill
        return cls(tuple(windows[:, :, :, dy, dx, :] for dy in range(w.filter_h) for dx in range(w.filter_w)), fill)


def tap_ranges(size: int, out: int, stride: int, pad_before: int, filt: int) -> tuple[np.ndarray, np.ndarray]:
    """[out] first and one-past-last in-image input index of each output's window on one axis."""
    origin = np.arange(out, dtype=np.int64) * stride - pad_before
    return np.clip(origin, 0, size), np.clip(origin + filt, 0, size)


def window_ranges(p: Pool2DParams) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row starts, row stops, column starts, column stops) of every output's in-image taps."""
    w = p.window
    y0, y1 = tap_ranges(p.in_height, w.out_h, w.stride_h, w.pad_top, w.filter_h)
    x0, x1 = tap_ranges(p.in_width, w.out_w, w.stride_w, w.pad_left, w.filter_w)
    return y0, y1, x0, x1


def tap_counts(p: Pool2DParams) -> np.ndarray:
    """[out_h, out_w] number of in-image taps of each output (the AVERAGE_POOL_2D divisor)."""
    y0, y1, x0, x1 = window_ranges(p)
    return np.outer(y1 - y0, x1 - x0)


def reduce_max(x: np.ndarray, p: Pool2DParams) -> np.ndarray:
    """NHWC max over each output's in-image taps, separably: rows, then columns."""
    y0, y1, x0, x1 = window_ranges(p)
    rows = _max_along(x, y0, y1, axis=1)
    return _max_along(rows, x0, x1, axis=2)


def _max_along(x: np.ndarray, start: np.ndarray, stop: np.ndarray, axis: int) -> np.ndarray:
    # Step d reads index start + d, or (past the range) the range's last index again, which
    # never changes a max; ranges are never empty (prepare checks), so stop - 1 >= start.
    span = int((stop - start).max())
    out = np.take(x, start, axis=axis)
    for d in range(1, span):
        np.maximum(out, np.take(x, np.minimum(start + d, stop - 1), axis=axis), out=out)
    return out


def sum_int(x: np.ndarray, p: Pool2DParams) -> np.ndarray:
    """NHWC exact int64 sums over each output's in-image taps, from prefix sums."""
    y0, y1, x0, x1 = window_ranges(p)
    b, h, w, c = x.shape
    prefix = np.zeros((b, h + 1, w, c), dtype=np.int64)
    np.cumsum(x, axis=1, dtype=np.int64, out=prefix[:, 1:])
    rows = prefix[:, y1] - prefix[:, y0]  # [b, out_h, w, c]
    prefix = np.zeros((b, rows.shape[1], w + 1, c), dtype=np.int64)
    np.cumsum(rows, axis=2, out=prefix[:, :, 1:])
    return prefix[:, :, x1] - prefix[:, :, x0]


def sum_float_in_order(x: np.ndarray, p: Pool2DParams) -> np.ndarray:
    """NHWC float32 sums over each output's in-image taps, added one tap at a time in TFLM's
    order (rows outer, columns inner) so the rounding is the reference kernel's."""
    y0, y1, x0, x1 = window_ranges(p)
    b, _, _, c = x.shape
    total = np.zeros((b, len(y0), len(x0), c), dtype=np.float32)
    for dy in range(int((y1 - y0).max())):
        row_ok = (y0 + dy) < y1
        rows = np.take(x, np.minimum(y0 + dy, y1 - 1), axis=1)  # [b, out_h, w, c]
        for dx in range(int((x1 - x0).max())):
            col_ok = (x0 + dx) < x1
            tap = np.take(rows, np.minimum(x0 + dx, x1 - 1), axis=2)
            ok = (row_ok[:, None] & col_ok[None, :])[None, :, :, None]
            np.add(total, tap, out=total, where=ok)
    return total


def pool_work(p: Pool2DParams, batch: int, channels: int, taps_in_order: bool) -> int:
    """Element reads of one evaluation: separable reductions, or tap by tap for float sums."""
    y0, y1, x0, x1 = window_ranges(p)
    span_h, span_w = int((y1 - y0).max()), int((x1 - x0).max())
    out_h, out_w = len(y0), len(x0)
    if taps_in_order:
        return batch * channels * out_h * out_w * span_h * span_w
    return batch * channels * (out_h * span_h * p.in_width + out_h * out_w * span_w
                               + p.in_height * p.in_width)


def prepare_pool(ctx: PrepareContext, taps_in_order: bool = False) -> tuple[tuple[int, ...], Pool2DParams]:
    """(output shape, parameters) after the checks both pooling ops share. `taps_in_order`:
    the evaluation adds float taps one by one (AVERAGE_POOL_2D float), for the work bound."""
    ctx.expect_counts(1)
    x, y = ctx.input(0), ctx.output()
    if len(x.shape) != 4:
        raise ctx.error(f"input must be NHWC, got shape {x.shape}")
    batch, in_h, in_w, channels = x.shape
    fh, fw = int(ctx.option("filter_height")), int(ctx.option("filter_width"))
    win = compute_window(ctx, in_h, in_w, fh, fw, dilate=False)
    # TFLM keeps the window arithmetic in C int: (out - 1) * stride + filter must fit.
    for axis, out, stride, filt in (("height", win.out_h, win.stride_h, fh), ("width", win.out_w, win.stride_w, fw)):
        if (out - 1) * stride + filt > _INT32_MAX:
            raise ctx.error(
                f"filter {axis} {filt} with stride {stride} over {out} outputs overflows TFLM's "
                "32-bit padding arithmetic"
            )
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
    if tap_counts(params).min() == 0:
        raise ctx.error("an output position has no input tap (TFLM fails on it)")
    work = pool_work(params, batch, channels, taps_in_order and x.dtype == FLOAT32)
    if work > MAX_POOL_WORK:
        raise ctx.error(
            f"a {fh}x{fw} window (stride {win.stride_h}x{win.stride_w}) over a {in_h}x{in_w}x{channels} "
            f"input needs {work} element reads, over the bound of {MAX_POOL_WORK}"
        )
    return (batch, win.out_h, win.out_w, channels), params
