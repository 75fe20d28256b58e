"""CONV_2D, int8 with per-channel (or per-tensor) filters, and float32.

TFLM: `micro/kernels/conv_common.cc` (Prepare: per-channel multipliers, activation range) and
`kernels/internal/reference/integer_ops/conv.h` (ConvPerChannel). Computed as one im2col
matrix product in float64, exact for int8 operands (see `quantized.exact_int_matmul`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import Kernel, Prepared, PrepareContext, Step, claim_buffer_bytes, is_immutable
from tinyswap.kernels.conv_common import (
    MAX_PLAN_BUFFER_VALUES,
    PlannedInput,
    TapGather,
    Window,
    check_conv_params,
    compute_window,
    finish_output,
    output_stage_params,
    pad_spatial,
    window_patches,
)
from tinyswap.kernels.quantized import FloatActivation, OutputStage, exact_float_dtype
from tinyswap.kernels.parallel import map_batches
from tinyswap.kernels.pixel_major import pixel_major_step, short_scaled
from tinyswap.kernels.registry import register
from tinyswap.kernels.requantize_steps import (column_blocks, frozen_affine, frozen_searched,
                                               output_requantizer)


# A frozen step gathers its taps pixels last; past this many taps the eval path's im2col (taps
# channels last, the layout the input already has) is faster (measured at 64 rows: a 3x3
# 16-channel layer of 590k taps ran 1.6x slower gathered than through `eval`).
MAX_FROZEN_TAPS = 1 << 16
# The pixel-major steps (`pixel_major.py`) are taken on layers of any output size (measured at
# 64 rows on person_detect: 142 vs 151 ms with the frozen steps' usual output bound).
MAX_FROZEN_CONV_VALUES = 1 << 24


@dataclass(frozen=True)
class Conv2DParams:
    """`stage` is the int8 output stage or, for float32 models, the activation clamp."""

    window: Window
    out_channels: int
    pointwise: bool  # 1x1 filter, stride 1: the input rows are the im2col matrix already
    threads: int
    stage: OutputStage | FloatActivation


@register
class Conv2D(Kernel[Conv2DParams]):
    op_name = "CONV_2D"

    def prepare(self, ctx: PrepareContext) -> Prepared[Conv2DParams]:
        ctx.expect_counts((2, 3))
        x, f, y = ctx.input(0), ctx.input(1), ctx.output()
        bias = ctx.optional_input(2)
        if len(x.shape) != 4 or len(f.shape) != 4:
            raise ctx.error(f"input {x.shape} and filter {f.shape} must both be 4-D (NHWC, OHWI)")
        batch, in_h, in_w, in_c = x.shape
        out_c, kh, kw, f_in = f.shape
        if f_in != in_c:
            raise ctx.error(f"filter expects {f_in} input channels, input has {in_c} (grouped convolution is not supported)")
        if bias is not None and bias.size != out_c:
            raise ctx.error(f"bias has {bias.size} elements, expected {out_c}")
        win = compute_window(ctx, in_h, in_w, kh, kw)
        check_conv_params(ctx, win)
        out_shape = (batch, win.out_h, win.out_w, out_c)
        pointwise = (kh, kw, win.stride_h, win.stride_w) == (1, 1, 1, 1)
        stage = output_stage_params(ctx, x, f, y, bias, out_c, filter_axis=0)
        # int8: the largest product a bound step may run, the split scaled product's (ScaledProduct).
        matmul = (batch * win.out_h * win.out_w, kh * kw * in_c + 1, 2 * out_c) if isinstance(stage, OutputStage) \
            else (batch * win.out_h * win.out_w, kh * kw * in_c, out_c)
        return Prepared([out_shape], Conv2DParams(win, out_c, pointwise, ctx.num_threads, stage), matmul=matmul)

    def eval(self, prepared: Prepared[Conv2DParams], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        win = p.window
        out = map_batches(lambda rows: self._rows(p, x[rows], inputs), x.shape[0], p.threads,
                          values_per_row=win.out_h * win.out_w * p.out_channels)
        return [out.reshape(prepared.output_shapes[0])]

    def bind(self, prepared: Prepared[Conv2DParams], inputs: list[np.ndarray | None],
             outputs: list[np.ndarray]) -> Step:
        """int8: im2col into buffers kept for the plan, one matrix product with the live filter
        in an exact float type, bias, requantization with constants computed here."""
        p = prepared.params
        x, f = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        win, out_c = p.window, p.out_channels
        k = win.filter_h * win.filter_w * x.shape[3]
        n = x.shape[0] * win.out_h * win.out_w
        dtype = exact_float_dtype(k)
        if (isinstance(p.stage, OutputStage) and n * out_c <= MAX_FROZEN_CONV_VALUES and is_immutable(f)
                and (bias is None or is_immutable(bias))):
            frozen = self._frozen_step(p, x, f, bias, outputs[0], n, k, dtype)
            if frozen is not None:
                return frozen
        planned = None if isinstance(p.stage, FloatActivation) or n * k > MAX_PLAN_BUFFER_VALUES else (
            PlannedInput.of(x, win, dtype, p.stage.input_zero_point))
        if planned is None:
            return super().bind(prepared, inputs, outputs)
        if p.pointwise:
            windows, cols = None, planned.padded.reshape(n, k)
        else:
            windows = planned.windows
            buffer = np.empty(windows.shape, dtype)
            cols = buffer.reshape(n, k)
        weights = f.reshape(out_c, k)
        requantizer = output_requantizer(p.stage, k, n)
        out = outputs[0].reshape(n, out_c)

        def step() -> None:
            planned.fill()
            if windows is not None:
                np.copyto(buffer, windows)
            requantizer.apply_with_bias(cols @ weights.astype(dtype).T, bias, out)

        return step

    @staticmethod
    def _frozen_step(p: Conv2DParams, x: np.ndarray, f: np.ndarray, bias: np.ndarray | None, y: np.ndarray,
                     n: int, k: int, dtype: np.dtype) -> Step | None:
        """Constant filter and bias: the zero point and bias folded into the output stage. The
        pixel-major forms (`pixel_major.pixel_major_step`) where they can be built; else the
        filter converted once, the raw int8 taps (padding reads the input zero point) gathered
        pixels last or, for a pointwise convolution, the input rows themselves, transposed; one
        product into a channel-major accumulator; searched thresholds for a few values, else the
        affine form, written into the NHWC output through a transposed view."""
        stage = p.stage
        assert isinstance(stage, OutputStage)
        out_c = p.out_channels
        if not claim_buffer_bytes(out_c * k * dtype.itemsize):  # the converted filter, kept for the plan
            return None
        weights = np.ascontiguousarray(f.reshape(out_c, k), dtype=dtype)
        # (Long products take the exact product and the affine stage first: no scaled product
        # solved for them unless that fails, which keeps the bind's work down.)
        scaled = short_scaled(stage, f.reshape(out_c, k), bias)
        # The scaled product, split or not, beats the searched thresholds even on a few values
        # (their taps gathered pixels last cost more than RowTaps' copies: measured at batch 1 on
        # the Keras dilated and residual models' split layers, 10.6 vs 8.6 and 12.3 vs 9.7 us).
        searched = None if scaled is not None else frozen_searched(stage, f.reshape(out_c, k), bias, n)
        if searched is None:
            chosen = pixel_major_step(stage, f.reshape(out_c, k), bias, x, p.window, y.reshape(n, out_c), scaled)
            if chosen is not None:
                return chosen
        columns = x.reshape(n, k).T if p.pointwise else None
        gather = None if p.pointwise else TapGather.of(x, p.window, dtype, stage.input_zero_point, per_channel=False,
                                                        max_taps=MAX_FROZEN_TAPS)
        if gather is None and columns is None:
            return None
        if searched is not None:  # a few values: three passes on the pixel-major (transposed) product
            pixel_major = y.reshape(n, out_c)

            def searched_step() -> None:
                searched((weights @ (columns if gather is None else gather())).T, pixel_major)

            return searched_step
        affine = frozen_affine(stage, f.reshape(out_c, k), bias, dtype, n * out_c)
        if affine is None:
            return None
        affine = affine.along((out_c, 1))
        out = y.reshape(n, out_c).T
        blocks = [(block, out[:, block]) for block in column_blocks(n, out_c)]
        if columns is not None:

            def pointwise_step() -> None:
                for block, out_block in blocks:
                    affine.apply(weights @ columns[:, block], out_block)

            return pointwise_step

        def step() -> None:
            taps = gather()
            for block, out_block in blocks:
                affine.apply(weights @ taps[:, block], out_block)

        return step

    @staticmethod
    def _rows(p: Conv2DParams, x: np.ndarray, inputs: list[np.ndarray | None]) -> np.ndarray:
        f = inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        win = p.window
        out_c = p.out_channels
        is_float = isinstance(p.stage, FloatActivation)
        k = win.filter_h * win.filter_w * x.shape[3]
        dtype = np.dtype(np.float64) if is_float else exact_float_dtype(k)
        # Subtracting the zero point while padding makes the padding contribute exactly 0,
        # as the reference kernel's skipped out-of-image taps do.
        offset = 0 if is_float else p.stage.input_zero_point
        if p.pointwise:  # a 1x1 stride-1 convolution needs no im2col copy
            cols = pad_spatial(x, win, 0, dtype, offset).reshape(-1, k)
        else:
            cols = window_patches(x, win, dtype, offset).reshape(-1, k)
        acc = f.reshape(out_c, k).astype(dtype) @ cols.T  # [out_c, pixels]: channel-major
        return finish_output(acc, bias, k, p.stage, (x.shape[0], win.out_h, win.out_w, out_c))
