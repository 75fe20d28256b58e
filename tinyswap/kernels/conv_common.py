"""Window arithmetic shared by CONV_2D, DEPTHWISE_CONV_2D and the pooling kernels (which
reduce over in-image taps themselves, `pooling.py`, and use only `compute_window` here).

TFLite `kernels/padding.h`: SAME gives `out = ceil(in / stride)` and pads
`total = max((out - 1) * stride + effective_filter - in, 0)`, `total // 2` before (the extra
one, if odd, after); VALID gives `out = (in - effective_filter) // stride + 1` and no padding.
Reference kernels skip out-of-image taps; we pad instead with a value that contributes nothing
(zero after subtracting the input zero point), which is the same sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import FLOAT32, INT8, INT32, Padding, PrepareContext, TensorSpec, claim_buffer_bytes
from tinyswap.kernels.quantized import (
    FloatActivation,
    OutputStage,
    add_bias_exactly,
    float_activation,
    output_stage,
    requantize_int8,
    requantize_int8_fast,
)


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


INT32_MAX = 2**31 - 1


def _out_and_pad(size: int, filt: int, stride: int, dilation: int, padding: Padding) -> tuple[int, int, int] | None:
    """(out, pad before, pad after), or None when a step of TFLM's int32 arithmetic
    (`padding.h`) would overflow on these values."""
    effective = (filt - 1) * dilation + 1
    if padding == Padding.SAME:
        numerator = size + stride - 1
    else:
        numerator = size - effective + stride
    out = numerator // stride
    raw_total = (out - 1) * stride + effective - size
    if max(effective, numerator, abs(raw_total), (out - 1) * stride) > INT32_MAX:
        return None
    total = max(raw_total, 0)
    return out, total // 2, total - total // 2


def compute_window(ctx: PrepareContext, in_h: int, in_w: int, filter_h: int, filter_w: int,
                   dilate: bool = True) -> Window:
    opts = ctx.options
    sh, sw = int(opts.get("stride_h", 1)), int(opts.get("stride_w", 1))
    dh = int(opts.get("dilation_h_factor", 1)) if dilate else 1
    dw = int(opts.get("dilation_w_factor", 1)) if dilate else 1
    if min(sh, sw, dh, dw) < 1:
        raise ctx.error(f"strides ({sh}, {sw}) and dilations ({dh}, {dw}) must be >= 1")
    if filter_h < 1 or filter_w < 1:
        raise ctx.error(f"filter {filter_h}x{filter_w} must be at least 1x1")
    padding = ctx.padding()
    rows = _out_and_pad(in_h, filter_h, sh, dh, padding)
    cols = _out_and_pad(in_w, filter_w, sw, dw, padding)
    if rows is None or cols is None or max(sh, sw, dh, dw) > INT32_MAX:
        raise ctx.error(
            f"strides ({sh}, {sw}) and dilations ({dh}, {dw}) with a {filter_h}x{filter_w} filter on a "
            f"{in_h}x{in_w} input overflow TFLM's int32 window arithmetic"
        )
    out_h, pt, pb = rows
    out_w, pl, pr = cols
    if out_h < 1 or out_w < 1:
        raise ctx.error(
            f"a {filter_h}x{filter_w} filter (dilation {dh}x{dw}) with {padding.name} padding "
            f"does not fit a {in_h}x{in_w} input"
        )
    return Window(filter_h, filter_w, sh, sw, dh, dw, out_h, out_w, pt, pb, pl, pr)


INT16_MAX = 2**15 - 1


def check_conv_params(ctx: PrepareContext, w: Window) -> None:
    """TFLM's reference convolutions hold strides, dilations and paddings in the int16 fields
    of `ConvParams`: a larger value is silently truncated there, so it is refused here."""
    values = {"stride_h": w.stride_h, "stride_w": w.stride_w, "dilation_h": w.dilation_h,
              "dilation_w": w.dilation_w, "pad_top": w.pad_top, "pad_left": w.pad_left}
    large = {name: v for name, v in values.items() if v > INT16_MAX}
    if large:
        raise ctx.error(f"{large} exceed the int16 fields of TFLM's ConvParams (at most {INT16_MAX})")


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


def _huge_padding(x_shape: tuple[int, ...], w: Window) -> bool:
    """Whether the padded copy would dwarf the image (a dilated or strided window far larger
    than the input): then the taps are gathered instead, with no padded copy."""
    _, h, wd, _ = x_shape
    padded = (h + w.pad_top + w.pad_bottom) * (wd + w.pad_left + w.pad_right)
    return padded > max(16 * h * wd, 1 << 16)


def _tap_indices(size: int, out: int, stride: int, pad: int, filt: int, dilation: int) -> np.ndarray:
    """[out, filt] input positions of each tap; `size` (one past the image) when outside it."""
    pos = np.arange(out, dtype=np.int64)[:, None] * stride - pad + np.arange(filt, dtype=np.int64)[None, :] * dilation
    return np.where((pos >= 0) & (pos < size), pos, size)


def window_patches(x: np.ndarray, w: Window, dtype: np.dtype, offset: float | int = 0) -> np.ndarray:
    """[batch, out_h, out_w, filter_h, filter_w, channels] taps of NHWC `x - offset` as
    `dtype`, zero outside the image: a view of a padded copy, or, when that copy would be
    huge, a gathered array no larger than an im2col matrix."""
    if not _huge_padding(x.shape, w):
        return patches(pad_spatial(x, w, 0, dtype, offset), w, padded=True)
    dtype = np.dtype(dtype)
    b, h, wd, c = x.shape
    ext = np.zeros((b, h + 1, wd + 1, c), dtype=dtype)  # row h and column wd: the zero outside
    np.subtract(x, dtype.type(offset), out=ext[:, :h, :wd, :], casting="unsafe")
    rows = _tap_indices(h, w.out_h, w.stride_h, w.pad_top, w.filter_h, w.dilation_h)
    cols = _tap_indices(wd, w.out_w, w.stride_w, w.pad_left, w.filter_w, w.dilation_w)
    return ext[:, rows[:, None, :, None], cols[None, :, None, :], :]


def check_filter_quantization(ctx: PrepareContext, spec: TensorSpec, channels: int, axis: int) -> None:
    q = spec.quantization
    if q is None:
        raise ctx.error(f"int8 filter {spec.name!r} has no quantization parameters")
    if np.any(q.zero_point != 0):
        raise ctx.error(f"int8 filter {spec.name!r} must be symmetric (zero point 0)")
    if q.per_channel and (q.quantized_dimension != axis or q.scale.size != channels):
        raise ctx.error(
            f"filter {spec.name!r}: {q.scale.size} scales on axis {q.quantized_dimension}, "
            f"expected {channels} on axis {axis}"
        )


def output_stage_params(ctx: PrepareContext, x: TensorSpec, f: TensorSpec, y: TensorSpec,
                        bias: TensorSpec | None, out_c: int, filter_axis: int) -> OutputStage | FloatActivation:
    """Types, per-channel multipliers and activation range of a convolution's output stage
    (TFLM `PopulateConvolutionQuantizationParams`). Both CONV_2D and DEPTHWISE_CONV_2D round
    twice in TFLM and in LiteRT's BUILTIN_REF (measured)."""
    activation = ctx.activation()
    if x.dtype == FLOAT32:
        for spec in (f, y) + ((bias,) if bias is not None else ()):
            ctx.require_types(spec, FLOAT32)
        return float_activation(activation)
    for spec in (x, f, y):
        ctx.require_types(spec, INT8)
    if bias is not None:
        ctx.require_types(bias, INT32)
    check_filter_quantization(ctx, f, out_c, filter_axis)
    x_scale, x_zp = ctx.per_tensor(x)
    y_scale, y_zp = ctx.per_tensor(y)
    return output_stage(x_scale, x_zp, f.quantization.scale, y_scale, y_zp, out_c, activation, ctx.profile)


def finish_output(acc: np.ndarray, bias: np.ndarray | None, terms: int, stage: OutputStage | FloatActivation,
                  out_shape: tuple[int, ...]) -> np.ndarray:
    """Bias, requantization (or float activation) of a channel-major [channels, pixels]
    accumulator of `terms`-product sums, returned NHWC."""
    lo, hi = stage.act_min, stage.act_max
    if isinstance(stage, FloatActivation):
        if bias is not None:
            acc = acc + bias.astype(np.float64)[:, None]
        return np.clip(acc.T.astype(np.float32), lo, hi).reshape(out_shape)
    acc = add_bias_exactly(acc, bias, terms)
    multipliers, shifts = stage.multiplier_array(), stage.shift_array()
    out = requantize_int8_fast(acc, multipliers, shifts, stage.output_zero_point, lo, hi)
    if out is None:
        out = requantize_int8(acc, multipliers, shifts, stage.output_zero_point, lo, hi, False)
    return out.T.reshape(out_shape)


# A bound convolution step keeps its padded input and tap buffers for the whole plan; above this
# many values per buffer the kernel's batch-sliced `eval` is used instead: its channel-major
# requantization and per-tap loop (int16 products) are faster on large tensors (measured: a
# batch-64 MobileNet-style depthwise layer about 5x).
MAX_PLAN_BUFFER_VALUES = 1 << 15


@dataclass(frozen=True, eq=False)
class PlannedInput:
    """A convolution's input as a plan step sees it: a zero-bordered buffer whose interior gets
    `x - input_zero_point` on each invoke (so out-of-image taps contribute exactly 0, as the
    reference kernel's skipped taps do), and the window view over it."""

    x: np.ndarray
    padded: np.ndarray
    interior: np.ndarray
    windows: np.ndarray  # [batch, out_h, out_w, filter_h, filter_w, channels], a view of `padded`
    zero_point: np.generic

    @classmethod
    def of(cls, x: np.ndarray, w: Window, dtype: np.dtype, zero_point: int,
           pad_value: int = 0, max_taps: int = MAX_PLAN_BUFFER_VALUES) -> "PlannedInput | None":
        """None when the padded copy would dwarf the image or exceed `max_taps` taps (the
        kernel's `eval` handles those). `pad_value` fills the border (pooling pads so that the
        border never wins)."""
        b, h, wd, c = x.shape
        taps = b * w.out_h * w.out_w * w.filter_h * w.filter_w * c
        padded_values = b * (h + w.pad_top + w.pad_bottom) * (wd + w.pad_left + w.pad_right) * c
        if _huge_padding(x.shape, w) or taps > max_taps:
            return None
        # The padded input, a tap copy and a product buffer (depthwise) at most: claimed up front.
        if not claim_buffer_bytes((padded_values + 2 * taps) * np.dtype(dtype).itemsize):
            return None
        padded = np.full((b, h + w.pad_top + w.pad_bottom, wd + w.pad_left + w.pad_right, c), pad_value, dtype=dtype)
        interior = padded[:, w.pad_top: w.pad_top + h, w.pad_left: w.pad_left + wd, :]
        return cls(x, padded, interior, patches(padded, w, padded=True), dtype.type(zero_point))

    def fill(self) -> None:
        np.subtract(self.x, self.zero_point, out=self.interior, casting="unsafe")


# Frozen convolution steps (constant filters, `base.is_immutable`) are taken for at most this
# many output values per invoke: past it the eval paths' float32 requantization and im2col in the
# input's own layout are faster (measured at 64 rows on person_detect: a pointwise layer of 2.4M
# outputs 24.5 vs 16.8 ms, a depthwise layer of 295k outputs 4.3 vs 1.8 ms; below it, as on the
# DS-CNN and MobileNet-style models at 64 rows, the frozen steps are 1.5-1.8x faster).
MAX_FROZEN_VALUES = 1 << 17

# A frozen convolution step's tap buffer holds at most this many values (kept for the plan,
# with the padded input, within the plan's buffer budget); larger inputs take the kernel's other
# paths.
MAX_GATHERED_TAPS = 1 << 20


@dataclass(frozen=True, eq=False)
class TapGather:
    """A window's raw taps of NHWC `x`, pixels along the last (contiguous) axis, by two copies
    per invoke: x into the interior of a padded buffer whose border holds `pad_value` (what
    every out-of-image tap reads), then the window view over it into the tap buffer, either
    [kh * kw * channels, pixels] (the transposed im2col matrix of a convolution) or, with
    `per_channel`, [channels, kh * kw, pixels] (a depthwise convolution's per-channel taps).
    Pixels last: the products that follow give channel-major accumulators whose per-channel
    constants are one value along each long row, which NumPy vectorises far better than a
    short last axis of channels. No index arrays: the copies are strided views."""

    x: np.ndarray
    interior: np.ndarray
    windows: np.ndarray  # [batch, out_h, out_w, kh, kw, channels], a view of the padded buffer
    into: np.ndarray  # the tap buffer, viewed with the windows' axes
    taps: np.ndarray  # the tap buffer in the caller's layout

    @classmethod
    def of(cls, x: np.ndarray, w: Window, dtype: np.dtype, pad_value: int, per_channel: bool,
           max_taps: int = MAX_GATHERED_TAPS) -> "TapGather | None":
        """None when the taps would exceed `max_taps`, the padded copy would dwarf the image, or
        the plan's buffer budget is spent."""
        b, h, wd, c = x.shape
        pixels = b * w.out_h * w.out_w
        kernel = w.filter_h * w.filter_w
        padded_shape = (b, h + w.pad_top + w.pad_bottom, wd + w.pad_left + w.pad_right, c)
        values = pixels * kernel * c + int(np.prod(padded_shape))
        if pixels * kernel * c > max_taps or _huge_padding(x.shape, w) or not claim_buffer_bytes(
                values * np.dtype(dtype).itemsize):
            return None
        padded = np.full(padded_shape, pad_value, dtype=dtype)
        interior = padded[:, w.pad_top: w.pad_top + h, w.pad_left: w.pad_left + wd, :]
        windows = patches(padded, w, padded=True)
        if per_channel:  # buffer [c, kh, kw, b, oh, ow]
            buffer = np.empty((c, w.filter_h, w.filter_w, b, w.out_h, w.out_w), dtype)
            into = buffer.transpose(3, 4, 5, 1, 2, 0)
            taps = buffer.reshape(c, kernel, pixels)
        else:  # buffer [kh, kw, c, b, oh, ow]
            buffer = np.empty((w.filter_h, w.filter_w, c, b, w.out_h, w.out_w), dtype)
            into = buffer.transpose(3, 4, 5, 0, 1, 2)
            taps = buffer.reshape(kernel * c, pixels)
        return cls(x, interior, windows, into, taps)

    def __call__(self) -> np.ndarray:
        np.copyto(self.interior, self.x, casting="unsafe")
        np.copyto(self.into, self.windows)
        return self.taps


# RowTaps gathers this many tap values at a time at most (a chunk of whole images; at least one
# image), so that a convolution's plan buffers stay small whatever the batch: at 64 rows all
# but one of person_detect's convolutions then fit the plan's buffer budget (with the whole
# batch's tap matrix, five ran `eval`). Speed measured the same from 2**14 to whole batches
# (64 rows: residual, dilated and stacked convolutions, DS-CNN, ResNet-8, person_detect).
ROW_TAPS_CHUNK_VALUES = 1 << 15


@dataclass(frozen=True, eq=False)
class RowTaps:
    """A window's raw taps of NHWC `x` as the rows of an im2col matrix [pixels, kh * kw * c + 1]
    whose last column holds 1 (the input of a `ScaledProduct`'s offset row), pixel-major so
    that the product is the NHWC output's layout, gathered a chunk of whole images at a time
    (`gather(i)`). Two copies per chunk: its images into the interior of a float buffer whose
    border holds `pad_value` (what every out-of-image tap reads), then the window view over
    it, channels innermost on both sides."""

    copies: tuple[tuple[tuple[np.ndarray, np.ndarray], ...], ...]  # per chunk: (target, source), in order
    rows: tuple[np.ndarray, ...]  # per chunk: its tap matrix
    pixels: tuple[slice, ...]  # per chunk: its rows of the whole [pixels, ...] output

    @classmethod
    def of(cls, x: np.ndarray, w: Window, dtype: np.dtype, pad_value: int,
           max_taps: int = MAX_GATHERED_TAPS, ones: bool = True,
           chunk_values: int = ROW_TAPS_CHUNK_VALUES) -> "RowTaps | None":
        """None when a chunk's taps would exceed `max_taps`, the padded copy would dwarf the
        image, or the plan's buffer budget is spent. `ones=False`: the plain im2col matrix, no
        last column."""
        b, h, wd, c = x.shape
        per_image = w.out_h * w.out_w
        k = w.filter_h * w.filter_w * c
        width = k + 1 if ones else k
        images = max(1, min(b, chunk_values // max(per_image * width, 1)))
        padded_shape = (images, h + w.pad_top + w.pad_bottom, wd + w.pad_left + w.pad_right, c)
        values = images * per_image * width + int(np.prod(padded_shape))
        if images * per_image * k > max_taps or _huge_padding(x.shape, w) or not claim_buffer_bytes(
                values * np.dtype(dtype).itemsize):
            return None
        rows = np.ones((images * per_image, width), dtype)
        into = rows[:, :k].reshape(images, w.out_h, w.out_w, w.filter_h, w.filter_w, c)
        # Always through a float copy of x (padded or not): the window copy is then a plain
        # strided copy, where casting int8 on the way runs NumPy's buffered, far slower loop
        # (measured 2-3x on a batch-64 layer).
        padded = np.full(padded_shape, pad_value, dtype=dtype)
        interior = padded[:, w.pad_top: w.pad_top + h, w.pad_left: w.pad_left + wd, :]
        windows = patches(padded, w, padded=True)
        copies, chunk_rows, pixels = [], [], []
        for start in range(0, b, images):
            n = min(images, b - start)
            copies.append(((interior[:n], x[start: start + n]), (into[:n], windows[:n])))
            chunk_rows.append(rows[: n * per_image])
            pixels.append(slice(start * per_image, (start + n) * per_image))
        return cls(tuple(copies), tuple(chunk_rows), tuple(pixels))

    def gather(self, chunk: int) -> np.ndarray:
        """Chunk `chunk`'s tap matrix, filled from the input."""
        for target, source in self.copies[chunk]:
            np.copyto(target, source, casting="unsafe")
        return self.rows[chunk]
