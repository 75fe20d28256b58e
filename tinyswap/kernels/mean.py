"""MEAN over constant axes, int8 and float32 (TFLM `reduce_common.cc`, `reference/reduce.h`).

Int8: the int32 sum less n * zero point is scaled by input_scale / output_scale / n, where
the division by n is folded into the multiplier exactly as QuantizedMeanOrSum does it:
shift = min(floor(log2 n), 32, 31 + output_shift), M' = (M << shift) / n (truncating),
shift' = output_shift - shift.
"""

from __future__ import annotations

import numpy as np

from tinyswap.fixedpoint import multiply_by_quantized_multiplier
from tinyswap.kernels.base import Kernel, Prepared, PrepareContext
from tinyswap.kernels.layout import constant_ints, normalize_axis
from tinyswap.kernels.quantized import checked_multiplier
from tinyswap.kernels.registry import register
from tinyswap.schema import TensorType


@register
class Mean(Kernel):
    op_name = "MEAN"

    def prepare(self, ctx: PrepareContext) -> Prepared:
        ctx.expect_counts(2)
        x, y = ctx.input(0), ctx.output()
        rank = len(x.shape)
        axes = tuple(sorted({normalize_axis(ctx, a, rank) for a in constant_ints(ctx, ctx.input(1), "axis input")}))
        keep = bool(ctx.op.options.get("keep_dims", False))
        shape = tuple(1 if a in axes else d for a, d in enumerate(x.shape)) if keep else tuple(
            d for a, d in enumerate(x.shape) if a not in axes)
        n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
        if n == 0:
            raise ctx.error("averaging over an empty axis")
        params: dict = {"axes": axes, "keep": keep, "n": n}
        if x.type == TensorType.FLOAT32:
            ctx.require_types(y, TensorType.FLOAT32)
            params["float"] = True
            return Prepared([shape], params)
        ctx.require_types(x, TensorType.INT8)
        ctx.require_types(y, TensorType.INT8)
        (xs, xzp), (ys, yzp) = ctx.per_tensor(x), ctx.per_tensor(y)
        m, s = checked_multiplier(xs / ys)
        k = min(n.bit_length() - 1, 32, 31 + s)
        m_n = int((m << k) // n) if k >= 0 else int((m >> -k) // n)
        params.update(float=False, x_zp=xzp, y_zp=yzp, m=m_n, s=s - k)
        return Prepared([shape], params)

    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        out_shape = prepared.output_shapes[0]
        if p["float"]:
            total = x.sum(axis=p["axes"], dtype=np.float32, keepdims=p["keep"])
            return [(total / np.float32(p["n"])).astype(np.float32).reshape(out_shape)]
        total = x.astype(np.int64).sum(axis=p["axes"], keepdims=p["keep"]) - p["x_zp"] * p["n"]
        out = multiply_by_quantized_multiplier(total, p["m"], p["s"]) + p["y_zp"]
        return [np.clip(out, -128, 127).astype(np.int8).reshape(out_shape)]
