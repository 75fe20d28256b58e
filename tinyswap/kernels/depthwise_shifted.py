"""A depthwise convolution's taps as shifted views of one padded NHWC buffer.

TFLM: `kernels/internal/reference/integer_ops/depthwise_conv.h` (DepthwiseConvPerChannel):
output (b, y, x, c * m + k) sums, over the filter taps (i, j), filter[i, j, c * m + k] times
input (b, y * stride_h - pad_top + i * dilation_h, x * stride_w - pad_left + j * dilation_w, c),
skipping taps outside the image.

Here the input is copied once per invoke into a buffer padded as the window needs (the border
holds the raw input zero point, which the frozen output stage subtracts with the bias:
`requantize_steps.frozen_affine`), each input channel repeated `m` times so that output channel
c * m + k sits where its input does. In that buffer the tap (i, j) of every grid position is the
same buffer shifted by (i * dilation_h * Wp + j * dilation_w) * channels values, so all the taps
are one strided view [kh, kw, batch, rows, row] and one `einsum` with the filter tiled along a
row (the per-channel weights repeat every `channels` values) sums them: the inner loops run
over whole rows, contiguous, where a [pixels, channels] layout gives loops of a few channels and
a channel-major one a transposing copy in and out (measured: both 2-3x slower at 64 rows).

The sums are over grid positions, a few of which are not outputs (the columns past the last
output, and with a stride the positions between outputs): the requantization reads only the
outputs' view. Exact: every product and every partial sum is an integer below 2**24 in float32
(`quantized.exact_float_dtype`), so the order `einsum` sums in does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import claim_buffer_bytes
from tinyswap.kernels.conv_common import Window
from tinyswap.kernels.requantize_steps import AffineRequantizer

# The padded buffer and the accumulator hold at most this many values each (they are kept for
# the plan, within its buffer budget): 4 MB in float32, past the converted DS-CNN and MobileNet
# depthwise layers at 64 rows (100k-160k values); larger layers take the kernel's other paths.
MAX_SHIFTED_VALUES = 1 << 20

# Grid positions summed per output at most: with a stride or wide padding most grid positions
# are not outputs, and past this the gathered paths, which sum outputs only, do less work
# (a 3x3 stride-2 layer sums about 2.25 per output and is still 1.1-2x faster at 64 rows).
MAX_GRID_PER_OUTPUT = 3
# With stride_h > 1 the einsum's rows are single padded rows, wp * channels values: with a
# depth multiplier (each input copied m times) or fewer channels than this, measured up to
# 1.4x slower than the gathered paths at 64 rows, so those keep them.
MIN_STRIDED_CHANNELS = 8


@dataclass(frozen=True, eq=False)
class ShiftedTaps:
    """Calling it copies x into the padded buffer, sums the taps into `acc` and returns
    `outputs`, the sums at the output positions as the NHWC output's rows, [batch, out_h,
    out_w * channels]."""

    x: np.ndarray  # the NHWC input
    copies: tuple[np.ndarray, ...]  # per k < m: where input channel c goes for output channel c * m + k
    views: np.ndarray  # [kh, kw, batch, rows, row]: the taps, strided views of the padded buffer
    weights: np.ndarray  # [kh, kw, row]: the filter, tiled along a row
    acc: np.ndarray  # [batch, rows, row]
    outputs: np.ndarray  # the output positions of `acc`: a view of it, or a copy
    strided: np.ndarray | None  # with stride_w > 1 the strided view of `acc` copied into `outputs`
    repeats: int  # the per-channel constants repeat this often along `outputs`' last axis

    @classmethod
    def of(cls, x: np.ndarray, w: Window, m: int, f: np.ndarray, dtype: np.dtype,
           pad_value: int) -> "ShiftedTaps | None":
        """For NHWC `x`, a [1, kh, kw, in_c * m] filter `f` and `dtype` sums; None when the
        buffers would pass MAX_SHIFTED_VALUES or the plan's budget, the grid would have more
        than MAX_GRID_PER_OUTPUT positions per output, or a vertical stride meets a depth
        multiplier or fewer than MIN_STRIDED_CHANNELS channels."""
        b, h, wd, in_c = x.shape
        c = in_c * m
        hp, wp = h + w.pad_top + w.pad_bottom, wd + w.pad_left + w.pad_right
        image = hp * wp * c  # values per padded image
        # Stride 1 in height: the out_h grid rows are consecutive, one row of the einsum each
        # image (long inner loops); else one einsum row per output row, every stride_h-th.
        merged = w.stride_h == 1
        rows, row = (1, w.out_h * wp * c) if merged else (w.out_h, wp * c)
        outputs = b * w.out_h * w.out_w * c
        grid = b * w.out_h * wp * c
        if max(b * image, grid) > MAX_SHIFTED_VALUES or grid > MAX_GRID_PER_OUTPUT * outputs:
            return None
        if not merged and (m > 1 or c < MIN_STRIDED_CHANNELS):
            return None
        item = dtype.itemsize
        shape = (w.filter_h, w.filter_w, b, rows, row)
        strides = (w.dilation_h * wp * c, w.dilation_w * c, image, w.stride_h * wp * c, 1)
        # One past the largest value the views read: taps of the last grid columns run past
        # the last padded row by up to (kw - 1) * dilation_w pixels, a tail of the buffer.
        length = max(b * image, 1 + sum((n - 1) * s for n, s in zip(shape, strides)))
        if not claim_buffer_bytes((length + b * rows * row + outputs + w.filter_h * w.filter_w * row) * item):
            return None
        flat = np.full(length, pad_value, dtype)
        padded = flat[: b * image].reshape(b, hp, wp, in_c, m)
        interior = padded[:, w.pad_top: w.pad_top + h, w.pad_left: w.pad_left + wd]
        views = np.lib.stride_tricks.as_strided(flat, shape, tuple(s * item for s in strides), writeable=False)
        weights = np.tile(f.reshape(w.filter_h, w.filter_w, c).astype(dtype), (1, 1, row // c))
        acc = np.empty((b, rows, row), dtype)
        grid_view = acc.reshape(b, w.out_h, wp, c)[:, :, : (w.out_w - 1) * w.stride_w + 1: w.stride_w]
        # One copy per k: a single copy from x broadcast along k has inner loops of m values
        # (measured 6x slower at m = 2).
        copies = tuple(interior[..., k] for k in range(m))
        if w.stride_w == 1:  # whole output rows: the constants repeat along them
            return cls(x, copies, views, weights, acc, grid_view.reshape(b, w.out_h, w.out_w * c), None, w.out_w)
        # Every stride_w-th pixel: copied into whole rows first (the output stage's passes
        # over [..., channels] with a strided source have short inner loops; measured slower).
        compact = np.empty((b, w.out_h, w.out_w * c), dtype)
        return cls(x, copies, views, weights, acc, compact, grid_view, w.out_w)

    def tiled(self, affine: AffineRequantizer) -> AffineRequantizer:
        """`affine` (per output channel) with its constants repeated along `outputs`' last axis."""
        return AffineRequantizer(*(np.tile(v.reshape(-1), self.repeats) for v in (
            affine.scale, affine.offset, affine.offset_below, affine.sign_at)), affine.lo, affine.hi, affine.kinked)

    def __call__(self) -> np.ndarray:
        for into in self.copies:
            np.copyto(into, self.x, casting="unsafe")
        np.einsum("ijbhr,ijr->bhr", self.views, self.weights, out=self.acc)
        if self.strided is not None:
            np.copyto(self.outputs.reshape(self.strided.shape), self.strided)
        return self.outputs
