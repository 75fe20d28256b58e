"""FULLY_CONNECTED: int8 (per-tensor and per-channel weights) and float32.

TFLM: `micro/kernels/fully_connected_common.cc` (Prepare) and
`kernels/internal/reference/integer_ops/fully_connected.h` (Eval):
acc = sum_d w[c, d] * (x[b, d] - x_zp) + bias[c]; out = clamp(MBQM(acc, M_c, s_c) + y_zp).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import (FLOAT32, INT8, INT32, Kernel, Prepared, PrepareContext, Profile, Step,
                                   claim_buffer_bytes, is_immutable)
from tinyswap.kernels.quantized import (
    FloatActivation,
    OutputStage,
    exact_float_dtype,
    exact_int_matmul,
    float_activation,
    output_stage,
    requantize,
)
from tinyswap.kernels.registry import register
from tinyswap.kernels.requantize_steps import (ScaledProduct, column_blocks, frozen_affine, frozen_scaled,
                                               frozen_searched, output_requantizer)


@dataclass(frozen=True)
class FullyConnectedParams:
    """[batches, depth] rows times [units, depth] weights; `stage` is int8 requantization or,
    for float32 models, the activation clamp."""

    batches: int
    depth: int
    units: int
    stage: OutputStage | FloatActivation


@register
class FullyConnected(Kernel[FullyConnectedParams]):
    op_name = "FULLY_CONNECTED"

    def prepare(self, ctx: PrepareContext) -> Prepared[FullyConnectedParams]:
        ctx.expect_counts((2, 3))
        x, w, y = ctx.input(0), ctx.input(1), ctx.output()
        bias = ctx.optional_input(2)
        if ctx.options.get("weights_format", 0) != 0:
            raise ctx.error("shuffled weights format is not supported")
        if len(w.shape) != 2:
            raise ctx.error(f"weights must be 2-D [units, depth], got shape {w.shape}")
        units, depth = w.shape
        if depth == 0 or x.size % depth:
            raise ctx.error(f"input of {x.size} elements is not a whole number of rows of {depth}")
        if bias is not None and bias.size != units:
            raise ctx.error(f"bias has {bias.size} elements, expected {units}")
        batches = x.size // depth
        if ctx.options.get("keep_num_dims", False):
            if x.shape[-1] != depth:
                raise ctx.error(f"keep_num_dims needs the last input dimension {x.shape[-1]} == {depth}")
            out_shape = tuple(x.shape[:-1]) + (units,)
        else:
            out_shape = (batches, units)
        activation = ctx.activation()

        if x.dtype == FLOAT32:
            ctx.require_types(w, FLOAT32)
            ctx.require_types(y, FLOAT32)
            if bias is not None:
                ctx.require_types(bias, FLOAT32)
            return Prepared([out_shape], FullyConnectedParams(batches, depth, units, float_activation(activation)),
                            matmul=(batches, depth, units))

        ctx.require_types(x, INT8)
        ctx.require_types(w, INT8)
        ctx.require_types(y, INT8)
        if bias is not None:
            ctx.require_types(bias, INT32)
        x_scale, x_zp = ctx.per_tensor(x)
        y_scale, y_zp = ctx.per_tensor(y)
        wq = w.quantization
        if wq is None:
            raise ctx.error("int8 weights without quantization parameters")
        if np.any(wq.zero_point != 0):
            raise ctx.error("int8 weights must be symmetric (zero point 0)")
        if wq.per_channel and (wq.quantized_dimension != 0 or wq.scale.size != units):
            raise ctx.error(f"per-channel weights need {units} scales on axis 0")
        stage = output_stage(x_scale, x_zp, wq.scale, y_scale, y_zp, units, activation, ctx.profile,
                             single_rounding=ctx.profile == Profile.LITERT)
        # The largest product a bound step may run: the split scaled product's (ScaledProduct).
        return Prepared([out_shape], FullyConnectedParams(batches, depth, units, stage),
                        matmul=(batches, depth + 1, 2 * units))

    def eval(self, prepared: Prepared[FullyConnectedParams], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        stage = p.stage
        x, w = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        out_shape = prepared.output_shapes[0]
        rows = x.reshape(p.batches, p.depth)
        if isinstance(stage, FloatActivation):
            acc = rows.astype(np.float64) @ w.astype(np.float64).T
            if bias is not None:
                acc = acc + bias
            return [np.clip(acc.astype(np.float32), stage.act_min, stage.act_max).reshape(out_shape)]
        acc = exact_int_matmul(rows.astype(np.int64) - stage.input_zero_point, w.T)
        if bias is not None:
            acc += bias.astype(np.int64)
        out = requantize(acc, stage.multiplier_array(), stage.shift_array(), stage.single_rounding)
        out = out + stage.output_zero_point
        return [np.clip(out, stage.act_min, stage.act_max).astype(np.int8).reshape(out_shape)]

    def bind(self, prepared: Prepared[FullyConnectedParams], inputs: list[np.ndarray | None],
             outputs: list[np.ndarray]) -> Step:
        """int8: the rows less the zero point, times the live weights in an exact float type
        (`exact_float_dtype`), the bias, and the requantization with its constants computed here."""
        p = prepared.params
        stage = p.stage
        if isinstance(stage, FloatActivation):
            return super().bind(prepared, inputs, outputs)
        x, w = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        rows = x.reshape(p.batches, p.depth)
        out = outputs[0].reshape(p.batches, p.units)
        dtype = exact_float_dtype(p.depth)
        if is_immutable(w) and (bias is None or is_immutable(bias)):
            frozen = self._frozen_step(stage, rows, w, bias, out, dtype)
            if frozen is not None:
                return frozen
        zero_point = dtype.type(stage.input_zero_point)
        requantizer = output_requantizer(stage, p.depth, p.batches)

        def step() -> None:
            requantizer.apply_with_bias(np.subtract(rows, zero_point, dtype=dtype) @ w.astype(dtype).T, bias, out)

        return step

    @staticmethod
    def _frozen_step(stage: OutputStage, rows: np.ndarray, w: np.ndarray, bias: np.ndarray | None,
                     out: np.ndarray, dtype: np.dtype) -> Step | None:
        """Constant weights and bias: converted once, bias and input zero point folded into the
        output stage. By the scaled product (`ScaledProduct`) where one line fits (measured
        faster than the searched thresholds even at batch 1: 9.2 vs 13.0 us on a 16x16 layer);
        else, for a few values, rows times weights and the searched thresholds (the split
        scaled product costs a pass more); else the split scaled product; else weights times
        the transposed rows into a channel-major accumulator and the affine output stage,
        written through a transposed view."""
        scaled = frozen_scaled(stage, w, bias)
        if scaled is not None and not scaled.split:
            return _scaled_step(scaled, rows, out)
        if not claim_buffer_bytes(w.size * dtype.itemsize):  # the converted weights, kept for the plan
            return None
        finish = frozen_searched(stage, w, bias, rows.shape[0])
        if finish is not None:
            weights = np.ascontiguousarray(w.T, dtype=dtype)

            def searched_step() -> None:
                finish(rows @ weights, out)

            return searched_step
        if scaled is not None:
            return _scaled_step(scaled, rows, out)
        affine = frozen_affine(stage, w, bias, dtype, rows.shape[0] * len(w))
        if affine is None:
            return None
        affine = affine.along((len(w), 1))
        weights = np.ascontiguousarray(w, dtype=dtype)
        blocks = [(rows.T[:, block], out.T[:, block]) for block in column_blocks(rows.shape[0], len(w))]

        def step() -> None:
            for columns, out_columns in blocks:
                affine.apply(weights @ columns, out_columns)

        return step


def _scaled_step(scaled: ScaledProduct, rows: np.ndarray, out: np.ndarray) -> Step | None:
    """The rows copied (as floats) beside a column of ones, then `ScaledProduct.apply`, in
    blocks of rows that stay in cache; None when the plan's buffer budget is spent."""
    batches, depth = rows.shape
    dtype = scaled.weights.dtype
    blocks = scaled.blocks(batches)
    if not claim_buffer_bytes((batches * (depth + 1) + blocks[0][1].size + scaled.weights.size) * dtype.itemsize):
        return None
    extended = np.ones((batches, depth + 1), dtype)
    blocks = [(rows[block], extended[block], extended[block, :depth], z, out[block]) for block, z in blocks]
    apply, copy = scaled.apply, np.copyto
    if len(blocks) == 1:  # (most layers: no loop)
        ((source, block_rows, inputs, z, out_rows),) = blocks

        def one_block_step() -> None:
            copy(inputs, source, casting="unsafe")
            apply(block_rows, z, out_rows)

        return one_block_step

    def step() -> None:
        for source, block_rows, inputs, z, out_rows in blocks:
            copy(inputs, source, casting="unsafe")
            apply(block_rows, z, out_rows)

    return step
