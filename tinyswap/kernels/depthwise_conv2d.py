"""DEPTHWISE_CONV_2D, int8 per-channel (or per-tensor) with a depth multiplier, and float32.

TFLM: `micro/kernels/depthwise_conv_common.cc` and
`kernels/internal/reference/integer_ops/depthwise_conv.h` (DepthwiseConvPerChannel): output
channel `c * multiplier + m` reads input channel `c`. Filter layout [1, kh, kw, in * multiplier].
Computed per input channel as a batched float64 matrix product, exact for int8 operands; with
a constant filter, mostly as shifted views of one padded input summed by one einsum
(`depthwise_shifted`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import Kernel, Prepared, PrepareContext, Step, claim_buffer_bytes, is_immutable
from tinyswap.kernels.conv_common import (
    MAX_FROZEN_VALUES,
    MAX_PLAN_BUFFER_VALUES,
    PlannedInput,
    TapGather,
    Window,
    check_conv_params,
    compute_window,
    finish_output,
    output_stage_params,
    window_patches,
)
from tinyswap.kernels.depthwise_shifted import Layout, ShiftedTaps
from tinyswap.kernels.quantized import FloatActivation, OutputStage, exact_float_dtype
from tinyswap.kernels.parallel import map_batches
from tinyswap.kernels.pixel_major import pixel_major_step, short_scaled
from tinyswap.kernels.registry import register
from tinyswap.kernels.requantize_steps import column_blocks, frozen_affine, output_requantizer


@dataclass(frozen=True)
class DepthwiseConv2DParams:
    """Output channel `c * depth_multiplier + m` reads input channel `c`; `stage` is the int8
    output stage or, for float32 models, the activation clamp."""

    window: Window
    in_channels: int
    depth_multiplier: int
    threads: int
    stage: OutputStage | FloatActivation


# Without a depth multiplier the plan step's one broadcast product and one sum over the taps
# beat `eval`'s per-tap loop (whose inner loops run over the few channels only) up to about
# this many taps: measured at batch 64, about 2x on MobileNet- and DS-CNN-style layers of 8 to
# 16 channels. With a multiplier, `eval`'s batched matrix product wins above the common limit.
MAX_PLAN_TAPS_WITHOUT_MULTIPLIER = 1 << 17


# Input channels at most for the dense form of a depthwise convolution (`_dense_step`), which
# does in_c times the depthwise work in one BLAS product (measured on the Keras depthwise
# model's stride-2, multiplier-2 layer of 4 channels, which the shifted taps do not take:
# batch 1 9.5 vs 15.6 us, 64 rows 140 vs 165 us through the gathered taps).
MAX_DENSE_CHANNELS = 4


@register
class DepthwiseConv2D(Kernel[DepthwiseConv2DParams]):
    op_name = "DEPTHWISE_CONV_2D"

    def prepare(self, ctx: PrepareContext) -> Prepared[DepthwiseConv2DParams]:
        ctx.expect_counts((2, 3))
        x, f, y = ctx.input(0), ctx.input(1), ctx.output()
        bias = ctx.optional_input(2)
        if len(x.shape) != 4 or len(f.shape) != 4 or f.shape[0] != 1:
            raise ctx.error(f"input {x.shape} must be NHWC and filter {f.shape} [1, kh, kw, channels]")
        batch, in_h, in_w, in_c = x.shape
        _, kh, kw, out_c = f.shape
        multiplier = int(ctx.option("depth_multiplier"))
        if in_c == 0 or out_c % in_c:
            raise ctx.error(f"filter has {out_c} channels, not a multiple of the {in_c} input channels")
        if multiplier != out_c // in_c:
            # TFLM derives the multiplier from the shapes too; a disagreeing option is a bad file.
            raise ctx.error(f"depth_multiplier {multiplier} but filter/input channels give {out_c // in_c}")
        if bias is not None and bias.size != out_c:
            raise ctx.error(f"bias has {bias.size} elements, expected {out_c}")
        win = compute_window(ctx, in_h, in_w, kh, kw)
        check_conv_params(ctx, win)
        out_shape = (batch, win.out_h, win.out_w, out_c)
        stage = output_stage_params(ctx, x, f, y, bias, out_c, filter_axis=3)
        # Its matrix products, per input channel: [pixels, taps] x [taps, multiplier].
        return Prepared([out_shape], DepthwiseConv2DParams(win, in_c, multiplier, ctx.num_threads, stage),
                        matmul=(batch * win.out_h * win.out_w, kh * kw, out_c // in_c))

    def eval(self, prepared: Prepared[DepthwiseConv2DParams], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        win = p.window
        out = map_batches(lambda rows: self._rows(p, x[rows], inputs), x.shape[0], p.threads,
                          values_per_row=win.out_h * win.out_w * p.in_channels * p.depth_multiplier)
        return [out.reshape(prepared.output_shapes[0])]

    def bind(self, prepared: Prepared[DepthwiseConv2DParams], inputs: list[np.ndarray | None],
             outputs: list[np.ndarray]) -> Step:
        """int8 with a constant filter and bias: the shifted taps (`_shifted_step`) where they
        pay (`depthwise_shifted.Layout.of`), else the gathered ones (`_frozen_step`) up to
        MAX_FROZEN_VALUES outputs. Otherwise the taps copied into a buffer kept for the plan,
        one broadcast product with the live filter [taps, channels, multiplier] and one sum
        over the taps, in float32 while the sums are exact there (`exact_float_dtype`), then
        bias and requantization. Every depth multiplier takes this path; the output channel
        order c * m + k falls out of the [pixels, channels, multiplier] layout."""
        p = prepared.params
        x, f = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        win, in_c, m = p.window, p.in_channels, p.depth_multiplier
        taps = win.filter_h * win.filter_w
        n = x.shape[0] * win.out_h * win.out_w
        dtype = exact_float_dtype(taps)
        if isinstance(p.stage, OutputStage) and is_immutable(f) and (bias is None or is_immutable(bias)):
            # The shifted taps have size limits of their own (`depthwise_shifted`): unlike the
            # gathered taps they stay faster than `eval` on large layers (measured on
            # person_detect at 64 rows).
            frozen = self._shifted_step(p, x, f, bias, outputs[0], dtype)
            # One input channel: the gathered taps first where they apply (a batch-1 layer
            # of person_detect: 113 vs 131 us dense), the dense form past them (64 rows: 7.0
            # vs 9.9 ms through `eval`).
            if frozen is None and 1 < in_c <= MAX_DENSE_CHANNELS:
                frozen = self._dense_step(p, x, f, bias, outputs[0])
            if frozen is None and n * in_c * m <= MAX_FROZEN_VALUES:
                frozen = self._frozen_step(p, x, f, bias, outputs[0], n, taps, dtype)
            if frozen is None and in_c == 1:
                frozen = self._dense_step(p, x, f, bias, outputs[0])
            if frozen is not None:
                return frozen
        max_taps = MAX_PLAN_BUFFER_VALUES if m > 1 else MAX_PLAN_TAPS_WITHOUT_MULTIPLIER
        planned = None if isinstance(p.stage, FloatActivation) or n * taps * in_c * m > max_taps else (
            PlannedInput.of(x, win, dtype, p.stage.input_zero_point, max_taps=max_taps))
        if planned is None:
            return super().bind(prepared, inputs, outputs)
        windows = planned.windows
        buffer = np.empty(windows.shape, dtype)
        # m == 1 drops the multiplier axis: NumPy would make a size-1 axis the innermost loop.
        tap_shape = (n, taps, in_c, 1) if m > 1 else (n, taps, in_c)
        weight_shape = (taps, in_c, m) if m > 1 else (taps, in_c)
        tap_rows = buffer.reshape(tap_shape)
        weights = f.reshape(weight_shape)
        product = np.empty((n, taps, in_c, m) if m > 1 else (n, taps, in_c), dtype)
        acc = np.empty((n, in_c, m) if m > 1 else (n, in_c), dtype)
        acc_rows = acc.reshape(n, in_c * m)
        requantizer = output_requantizer(p.stage, taps, n)
        out = outputs[0].reshape(n, in_c * m)

        def step() -> None:
            planned.fill()
            np.copyto(buffer, windows)
            np.multiply(tap_rows, weights.astype(dtype), out=product)
            np.sum(product, axis=1, out=acc)
            requantizer.apply_with_bias(acc_rows, bias, out)

        return step

    @staticmethod
    def _dense_step(p: DepthwiseConv2DParams, x: np.ndarray, f: np.ndarray, bias: np.ndarray | None,
                    y: np.ndarray) -> Step | None:
        """Constant filter and bias, few input channels: the filter laid out as a dense
        convolution's ([c * m + k, taps, input channel], zero off input channel c) and run by
        CONV_2D's pixel-major steps (`pixel_major.pixel_major_step`): one BLAS product over
        every tap of every channel, in_c times the depthwise work, which on a few channels
        costs less than the gathered paths' per-channel products (measured at 64 rows: see
        MAX_DENSE_CHANNELS)."""
        stage = p.stage
        assert isinstance(stage, OutputStage)
        win, in_c, m = p.window, p.in_channels, p.depth_multiplier
        taps = win.filter_h * win.filter_w
        by_channel = f.reshape(taps, in_c, m)  # output channel c * m + k
        dense = np.zeros((in_c, m, taps, in_c), np.int8)
        for c in range(in_c):
            dense[c, :, :, c] = by_channel[:, c, :].T
        n = x.shape[0] * win.out_h * win.out_w
        weights = dense.reshape(in_c * m, taps * in_c)
        scaled = short_scaled(stage, weights, bias)
        return pixel_major_step(stage, weights, bias, x, win, y.reshape(n, in_c * m), scaled)

    @staticmethod
    def _shifted_step(p: DepthwiseConv2DParams, x: np.ndarray, f: np.ndarray, bias: np.ndarray | None,
                      y: np.ndarray, dtype: np.dtype) -> Step | None:
        """Constant filter and bias, by shifted taps (`depthwise_shifted`): x copied into an NHWC
        buffer padded with the raw input zero point (folded, with the bias, into the affine
        output stage as in `_frozen_step`), every tap one strided view of it, all taps summed
        by one `einsum` with the filter tiled along the rows, and the output stage reading only
        the grid positions that are outputs. None where it does not apply (`Layout.of`)."""
        stage = p.stage
        assert isinstance(stage, OutputStage)
        win, m = p.window, p.depth_multiplier
        layout = Layout.of(x.shape, win, m)
        if layout is None:
            return None
        by_output = f.reshape(win.filter_h * win.filter_w, layout.channels).T  # [output channel c * m + k, taps]
        affine = frozen_affine(stage, by_output, bias, dtype, y.size)
        taps = None if affine is None else ShiftedTaps.of(layout, x, y, f, dtype, stage.input_zero_point, affine)
        if taps is None:
            return None

        def step() -> None:
            taps()

        return step

    @staticmethod
    def _frozen_step(p: DepthwiseConv2DParams, x: np.ndarray, f: np.ndarray, bias: np.ndarray | None,
                     y: np.ndarray, n: int, taps: int, dtype: np.dtype) -> Step | None:
        """Constant filter and bias: each input channel's raw int8 taps (padding reads the
        input zero point) gathered pixels last, that channel's [multiplier, taps] filter block
        times them as one batched matrix product, and the zero point and bias folded into the
        affine output stage, written into the NHWC output through a transposed view."""
        stage = p.stage
        assert isinstance(stage, OutputStage)
        in_c, m = p.in_channels, p.depth_multiplier
        if not claim_buffer_bytes(taps * in_c * m * dtype.itemsize):  # the converted filter, kept for the plan
            return None
        by_output = f.reshape(taps, in_c * m).T  # [output channel c * m + k, taps]
        affine = frozen_affine(stage, by_output, bias, dtype, n * in_c * m)
        gather = None if affine is None else TapGather.of(x, p.window, dtype, stage.input_zero_point,
                                                          per_channel=True)
        if gather is None:
            return None
        affine = affine.along((in_c, m, 1))
        weights = np.ascontiguousarray(by_output.reshape(in_c, m, taps), dtype=dtype)  # [in_c, m, taps]
        out = y.reshape(n, in_c, m).transpose(1, 2, 0)  # [in_c, m, pixels], a view of the NHWC output

        blocks = [(block, out[:, :, block]) for block in column_blocks(n, in_c * m)]

        def step() -> None:
            taps = gather()
            for block, out_block in blocks:
                affine.apply(np.matmul(weights, taps[:, :, block]), out_block)

        return step

    @staticmethod
    def _rows(p: DepthwiseConv2DParams, x: np.ndarray, inputs: list[np.ndarray | None]) -> np.ndarray:
        f = inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        win, in_c, m = p.window, p.in_channels, p.depth_multiplier
        is_float = isinstance(p.stage, FloatActivation)
        x_zp = 0 if is_float else p.stage.input_zero_point
        taps = win.filter_h * win.filter_w
        dtype = np.dtype(np.float64) if is_float else exact_float_dtype(taps)
        # Subtracting the zero point while padding makes the padding contribute exactly 0,
        # as the reference kernel's skipped out-of-image taps do.
        b = x.shape[0]
        n = b * win.out_h * win.out_w
        if in_c == 1:
            # One input channel: an ordinary convolution, best done as one im2col product.
            cols = window_patches(x, win, dtype, x_zp).reshape(n, taps)
            acc = f.reshape(taps, m).astype(dtype).T @ cols.T  # [m, pixels]
        elif m > 1 and not is_float:
            # A depth multiplier: per input channel, its taps times its [taps, m] filter block,
            # as one batched matrix product (the per-tap loop below would make the short
            # multiplier axis NumPy's inner loop; measured 3x slower at batch 64). Exact: the
            # sums are integers below 2**24 in float32 (`exact_float_dtype`), in any order.
            by_channel = np.moveaxis(window_patches(x, win, dtype, x_zp), 5, 0).reshape(in_c, n, taps)
            weights = np.moveaxis(f.reshape(taps, in_c, m).astype(dtype), 1, 0)  # [in_c, taps, m]
            # [in_c, n, m] -> channel-major [in_c * m, n]: output channel c * m + k, as TFLite orders them.
            acc = np.matmul(by_channel, weights).transpose(0, 2, 1).reshape(in_c * m, n)
        else:
            # One multiply into a reused buffer and one add per filter tap, NHWC so that the
            # channel axis is the contiguous inner loop. Integer models multiply in int16 (every
            # product |x - zp| * |w| <= 255 * 128 fits) and sum in int32: half the bytes of
            # float32 per product, measured 40% faster.
            win_view = window_patches(x, win, dtype if is_float else np.dtype(np.int16), x_zp)
            weights = f.reshape(taps, in_c, m).astype(win_view.dtype)  # win_view: [b, oh, ow, kh, kw, in_c]
            if m == 1:  # drop the size-1 axis: NumPy would make it the innermost loop
                weights = weights[:, :, 0]
            shape = (b, win.out_h, win.out_w, in_c) + ((m,) if m > 1 else ())
            acc = np.empty(shape, dtype=np.float64 if is_float else np.int32)
            product = np.empty(shape, dtype=win_view.dtype)
            for t in range(taps):
                tap = win_view[:, :, :, t // win.filter_w, t % win.filter_w, :]
                np.multiply(tap[..., None] if m > 1 else tap, weights[t], out=product)
                if t == 0:
                    acc[...] = product  # the first tap initialises the sum: no zero fill
                else:
                    acc += product
            # Channel-major, C order (the requantizer indexes it flat), output channel c * m + k
            # as TFLite orders them; one pass transposes and converts (exact: |sum| < 2**24
            # when dtype is float32).
            acc = acc.reshape(n, in_c * m).T.astype(np.float64 if is_float else dtype, order="C")
        return finish_output(acc, bias, taps, p.stage, (b, win.out_h, win.out_w, in_c * m))
