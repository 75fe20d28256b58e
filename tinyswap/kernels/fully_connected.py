"""FULLY_CONNECTED: int8 (per-tensor and per-channel weights) and float32.

TFLM: `micro/kernels/fully_connected_common.cc` (Prepare) and
`kernels/internal/reference/integer_ops/fully_connected.h` (Eval):
acc = sum_d w[c, d] * (x[b, d] - x_zp) + bias[c]; out = clamp(MBQM(acc, M_c, s_c) + y_zp).
"""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.base import Kernel, Prepared, PrepareContext, Profile
from tinyswap.kernels.quantized import (
    activation_range,
    channel_multipliers,
    exact_int_matmul,
    float_activation_range,
    requantize,
)
from tinyswap.kernels.registry import register
from tinyswap.schema import TensorType


@register
class FullyConnected(Kernel):
    op_name = "FULLY_CONNECTED"

    def prepare(self, ctx: PrepareContext) -> Prepared:
        ctx.expect_counts((2, 3))
        x, w, y = ctx.input(0), ctx.input(1), ctx.output()
        bias = ctx.optional_input(2)
        if ctx.op.options.get("weights_format", 0) != 0:
            raise ctx.error("shuffled weights format is not supported")
        if len(w.shape) != 2:
            raise ctx.error(f"weights must be 2-D [units, depth], got shape {w.shape}")
        units, depth = w.shape
        if depth == 0 or x.size % depth:
            raise ctx.error(f"input of {x.size} elements is not a whole number of rows of {depth}")
        if bias is not None and bias.size != units:
            raise ctx.error(f"bias has {bias.size} elements, expected {units}")
        batches = x.size // depth
        if ctx.op.options.get("keep_num_dims", False):
            if x.shape[-1] != depth:
                raise ctx.error(f"keep_num_dims needs the last input dimension {x.shape[-1]} == {depth}")
            out_shape = tuple(x.shape[:-1]) + (units,)
        else:
            out_shape = (batches, units)
        activation = ctx.option("fused_activation_function")
        params: dict = {"depth": depth, "units": units, "batches": batches}

        if x.type == TensorType.FLOAT32:
            ctx.require_types(w, TensorType.FLOAT32)
            ctx.require_types(y, TensorType.FLOAT32)
            if bias is not None:
                ctx.require_types(bias, TensorType.FLOAT32)
            params["float"] = True
            params["range"] = float_activation_range(activation)
            return Prepared([out_shape], params)

        ctx.require_types(x, TensorType.INT8)
        ctx.require_types(w, TensorType.INT8)
        ctx.require_types(y, TensorType.INT8)
        if bias is not None:
            ctx.require_types(bias, TensorType.INT32)
        x_scale, x_zp = ctx.per_tensor(x)
        y_scale, y_zp = ctx.per_tensor(y)
        wq = w.quantization
        if wq is None:
            raise ctx.error("int8 weights without quantization parameters")
        if np.any(wq.zero_point != 0):
            raise ctx.error("int8 weights must be symmetric (zero point 0)")
        if wq.per_channel and (wq.quantized_dimension != 0 or wq.scale.size != units):
            raise ctx.error(f"per-channel weights need {units} scales on axis 0")
        single = ctx.profile == Profile.LITERT
        multipliers, shifts = channel_multipliers(x_scale, wq.scale, y_scale, units, ctx.profile)
        params.update(
            float=False,
            x_zp=x_zp,
            y_zp=y_zp,
            multipliers=multipliers,
            shifts=shifts,
            single_rounding=single,
            range=activation_range(activation, y_scale, y_zp, y.type),
        )
        return Prepared([out_shape], params)

    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x, w = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        out_shape = prepared.output_shapes[0]
        rows = x.reshape(p["batches"], p["depth"])
        if p["float"]:
            acc = rows.astype(np.float64) @ w.astype(np.float64).T
            if bias is not None:
                acc = acc + bias
            lo, hi = p["range"]
            return [np.clip(acc.astype(np.float32), lo, hi).reshape(out_shape)]
        acc = exact_int_matmul(rows.astype(np.int64) - p["x_zp"], w.T)
        if bias is not None:
            acc += bias.astype(np.int64)
        out = requantize(acc, p["multipliers"], p["shifts"], p["single_rounding"]) + p["y_zp"]
        lo, hi = p["range"]
        return [np.clip(out, lo, hi).astype(np.int8).reshape(out_shape)]
