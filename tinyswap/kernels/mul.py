"""MUL, int8 (with broadcasting) and float32 (TFLM `mul_common.cc`, `integer_ops/mul.h`):
out = zp_out + MBQM((a - zp_a) * (b - zp_b), s_a * s_b / s_out)."""

from __future__ import annotations

import numpy as np

from tinyswap.fixedpoint import multiply_by_quantized_multiplier
from tinyswap.kernels.base import Kernel, Prepared, PrepareContext
from tinyswap.kernels.elementwise import float_binary_params, prepare_binary
from tinyswap.kernels.quantized import activation_range, checked_multiplier
from tinyswap.kernels.registry import register


@register
class Mul(Kernel):
    op_name = "MUL"

    def prepare(self, ctx: PrepareContext) -> Prepared:
        a, b, y, shape, is_float = prepare_binary(ctx)
        if is_float:
            return Prepared([shape], float_binary_params(ctx))
        (s1, zp1), (s2, zp2), (so, zpo) = ctx.per_tensor(a), ctx.per_tensor(b), ctx.per_tensor(y)
        m, s = checked_multiplier(s1 * s2 / so)
        return Prepared([shape], {
            "float": False, "zp1": zp1, "zp2": zp2, "zp_out": zpo, "m": m, "s": s,
            "range": activation_range(ctx.option("fused_activation_function"), so, zpo, y.type),
        })

    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        lo, hi = p["range"]
        if p["float"]:
            return [np.clip(inputs[0] * inputs[1], lo, hi).astype(np.float32)]
        prod = (inputs[0].astype(np.int64) - p["zp1"]) * (inputs[1].astype(np.int64) - p["zp2"])
        out = multiply_by_quantized_multiplier(prod, p["m"], p["s"]) + p["zp_out"]
        return [np.clip(out, lo, hi).astype(np.int8)]
