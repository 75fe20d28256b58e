"""A depthwise convolution's taps as shifted views of one padded NHWC buffer.

TFLM: `kernels/internal/reference/integer_ops/depthwise_conv.h` (DepthwiseConvPerChannel):
output (b, y, x, c * m + k) sums, over the filter taps (i, j), filter[i, j, c * m + k] times
input (b, y * stride_h - pad_top + i * dilation_h, x * stride_w - pad_left + j * dilation_w, c),
skipping taps outside the image.

Here the input is copied into a buffer padded as the window needs (the border holds the raw
input zero point, which the frozen output stage subtracts with the bias:
`requantize_steps.frozen_affine`), each input channel repeated m times so that output channel
c * m + k sits where its input does. In that buffer the tap (i, j) of every grid position is the
buffer shifted by (i * dilation_h * Wp + j * dilation_w) * channels values, so all the taps are
one strided view [kh, kw, images, rows, row] and one `einsum` with the filter tiled along a row
(the per-channel weights repeat every `channels` values) sums them: its inner loops run over
whole padded rows, contiguous, where a [pixels, channels] layout gives loops of a few channels
and a channel-major one a transposing copy in and out (measured: both 2-3x slower at 64 rows).

The sums are over grid positions, some of which are not outputs (the padded columns, and with a
stride the positions between outputs): the output stage reads only the outputs. Exact: every
product and every partial sum is an integer below 2**24 in float32 (`quantized.exact_float_dtype`;
float64 for longer sums), so the order `einsum` sums in does not matter.

The batch runs in chunks of whole images (`Chunk`), so the buffers kept for the plan stay
bounded whatever the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from tinyswap.kernels.base import claim_buffer_bytes
from tinyswap.kernels.conv_common import Window
from tinyswap.kernels.requantize_steps import AFFINE_BLOCK_VALUES, AffineRequantizer

# One padded image holds at most this many values (larger ones take the kernel's other paths).
MAX_IMAGE_VALUES = 1 << 20
# Grid values (sums) per chunk of images: the padded chunk, its sums and the strided outputs'
# copy are kept for the plan, about 3 x 256 KB in float32, so that all of person_detect's
# depthwise layers at 64 rows fit the plan's budget. Measured at 64 rows on DS-CNN, MobileNet
# and person_detect layers: within 5% of chunks twice as large, 2-7% faster than half as large.
CHUNK_VALUES = 1 << 16
# An einsum row (a run of contiguous sums) holds up to this many values: with stride_h 1 that
# many consecutive padded rows when they divide out_h (longer inner loops; the filter is tiled
# along a row, so the tile stays small).
MAX_ROW_VALUES = 1 << 12
# Grid positions summed per output at most: with a stride or wide padding most grid positions
# are not outputs, and past this the gathered paths, which sum outputs only, do less work
# (a 3x3 stride-2 layer sums about 2.25 per output and is still 1.1-2x faster at 64 rows).
MAX_GRID_PER_OUTPUT = 3
# With stride_h > 1 an einsum row is a single padded row, wp * channels values: with a depth
# multiplier (each input copied m times) or fewer channels than this, measured up to 1.4x
# slower than the gathered paths at 64 rows, so those keep them.
MIN_STRIDED_CHANNELS = 8
# With a depth multiplier and fewer input channels than this the gathered paths stay faster
# (one input channel is an im2col matrix product there; measured 0.7-0.9x here at 64 rows with
# one or two input channels and m = 2 to 8, 1.2-1.3x with four or eight and m = 2 or 3).
MIN_MULTIPLIED_CHANNELS = 4


@dataclass(frozen=True)
class Layout:
    """Where the taps lie for a window over NHWC inputs of `x_shape` with depth multiplier m."""

    window: Window
    x_shape: tuple[int, int, int, int]
    multiplier: int
    images: int  # per chunk
    rows: int  # einsum rows per image
    row: int  # values per einsum row: `group` padded rows of wp * channels

    @property
    def channels(self) -> int:
        return self.x_shape[3] * self.multiplier

    @property
    def padded_shape(self) -> tuple[int, int]:
        w = self.window
        return self.x_shape[1] + w.pad_top + w.pad_bottom, self.x_shape[2] + w.pad_left + w.pad_right

    def strides(self) -> tuple[int, ...]:
        """In values, of the tap view [kh, kw, images, rows, row] over the padded buffer."""
        w, c = self.window, self.channels
        hp, wp = self.padded_shape
        return w.dilation_h * wp * c, w.dilation_w * c, hp * wp * c, w.stride_h * wp * c * (self.row // (wp * c)), 1

    @classmethod
    def of(cls, x_shape: tuple[int, int, int, int], w: Window, m: int) -> "Layout | None":
        """None where the shifted taps do not pay or would not fit (see the module constants)."""
        b, h, wd, in_c = x_shape
        c = in_c * m
        hp, wp = h + w.pad_top + w.pad_bottom, wd + w.pad_left + w.pad_right
        grid = w.out_h * wp * c  # sums per image
        if max(hp * wp * c, grid) > MAX_IMAGE_VALUES or grid > MAX_GRID_PER_OUTPUT * w.out_h * w.out_w * c:
            return None
        if (w.stride_h > 1 and (m > 1 or c < MIN_STRIDED_CHANNELS)) or (m > 1 and in_c < MIN_MULTIPLIED_CHANNELS):
            return None
        group = 1
        if w.stride_h == 1:  # consecutive grid rows: as many per einsum row as fit and divide out_h
            fit = min(w.out_h, MAX_ROW_VALUES // (wp * c))
            group = max([g for g in range(1, fit + 1) if w.out_h % g == 0], default=1)
        images = max(1, min(b, CHUNK_VALUES // grid))
        return cls(w, x_shape, m, images, w.out_h // group, group * wp * c)


@dataclass(frozen=True, eq=False)
class Chunk:
    """One chunk of images: its input, its output rows and the views of the kept buffers that
    it uses (the last chunk of a batch may be shorter)."""

    x: np.ndarray  # [images, h, w, in_c] of the input
    copies: tuple[np.ndarray, ...]  # per k < m: where input channel c goes for output channel c * m + k
    views: np.ndarray  # [kh, kw, images, rows, row]: the taps
    acc: np.ndarray  # [images, rows, row]
    strided: tuple[np.ndarray, np.ndarray] | None  # with stride_w > 1: acc's output positions, and where they go
    blocks: tuple[tuple[np.ndarray, np.ndarray], ...]  # (sums, output rows) in output-stage blocks


@dataclass(frozen=True, eq=False)
class ShiftedTaps:
    """A bound depthwise convolution by shifted taps: calling it runs one invoke."""

    chunks: tuple[Chunk, ...]
    weights: np.ndarray  # [kh, kw, row]: the filter, tiled along a row
    affine: AffineRequantizer  # constants tiled along the output rows

    @classmethod
    def of(cls, layout: Layout, x: np.ndarray, y: np.ndarray, f: np.ndarray, dtype: np.dtype, pad_value: int,
           affine: AffineRequantizer) -> "ShiftedTaps | None":
        """For NHWC `x` into NHWC `y`, a [1, kh, kw, in_c * m] filter `f`, `dtype` sums and the
        frozen output stage `affine` (per output channel); None when the plan's buffer budget
        cannot hold the buffers."""
        w, m, c = layout.window, layout.multiplier, layout.channels
        b, h, wd, in_c = x.shape
        hp, wp = layout.padded_shape
        image, images = hp * wp * c, layout.images
        item = dtype.itemsize
        shape = (w.filter_h, w.filter_w, images, layout.rows, layout.row)
        strides = layout.strides()
        # One past the largest value the views read: taps of the last grid columns run past
        # the last padded row by up to (kw - 1) * dilation_w pixels, into a tail of the buffer.
        length = max(images * image, 1 + sum((n - 1) * s for n, s in zip(shape, strides)))
        row_values = w.out_w * c  # an output row of the NHWC output
        compact = images * w.out_h * row_values if w.stride_w > 1 else 0
        if not claim_buffer_bytes((length + images * layout.rows * layout.row + compact
                                   + w.filter_h * w.filter_w * layout.row) * item):
            return None
        flat = np.full(length, pad_value, dtype)
        padded = flat[: images * image].reshape(images, hp, wp, in_c, m)
        interior = padded[:, w.pad_top: w.pad_top + h, w.pad_left: w.pad_left + wd]
        views = np.lib.stride_tricks.as_strided(flat, shape, tuple(s * item for s in strides), writeable=False)
        acc = np.empty(shape[2:], dtype)
        grid = acc.reshape(images, w.out_h, wp, c)[:, :, : (w.out_w - 1) * w.stride_w + 1: w.stride_w]
        # With stride_w 1 the output positions are whole rows of the sums; else every
        # stride_w-th pixel, copied into whole rows first (the output stage's passes over a
        # strided [..., channels] view have inner loops of a few channels: measured slower).
        sums = np.empty((images, w.out_h, row_values), dtype) if w.stride_w > 1 else grid.reshape(
            images, w.out_h, row_values)
        out = y.reshape(b, w.out_h, row_values)
        # The output stage in blocks of whole images of about AFFINE_BLOCK_VALUES values: its
        # temporaries then stay in cache (and below the allocator's fresh-pages threshold;
        # measured 3x faster than one pass over a batch of 64 on DS-CNN).
        width = max(1, AFFINE_BLOCK_VALUES // (w.out_h * row_values))
        chunks = []
        for start in range(0, b, images):
            n = min(images, b - start)
            chunks.append(Chunk(
                x[start: start + n], tuple(interior[:n, ..., k] for k in range(m)), views[:, :, :n], acc[:n],
                (grid[:n], sums[:n].reshape(grid[:n].shape)) if w.stride_w > 1 else None,
                tuple((sums[i: min(i + width, n)], out[start + i: start + min(i + width, n)])
                      for i in range(0, n, width))))
        weights = np.tile(f.reshape(w.filter_h, w.filter_w, c).astype(dtype), (1, 1, layout.row // c))
        # The per-channel constants repeat along an output row, as the channels do.
        tiled = replace(affine, **{name: np.tile(getattr(affine, name).reshape(-1), w.out_w)
                                   for name in ("scale", "offset", "offset_below", "sign_at")})
        return cls(tuple(chunks), weights, tiled)

    def __call__(self) -> None:
        for chunk in self.chunks:
            # One copy per k: a single copy from x broadcast along k has inner loops of m values
            # (measured 6x slower at m = 2).
            for into in chunk.copies:
                np.copyto(into, chunk.x, casting="unsafe")
            np.einsum("ijbhr,ijr->bhr", chunk.views, self.weights, out=chunk.acc)
            if chunk.strided is not None:
                source, into = chunk.strided
                np.copyto(into, source)
            for sums, out in chunk.blocks:
                self.affine.apply(sums, out)
