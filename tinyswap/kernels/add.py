"""ADD, int8 (with broadcasting) and float32.

TFLM `micro/kernels/add_common.cc` (Prepare, in double precision) and
`reference/integer_ops/add.h`: each input, less its zero point, is shifted left by 20 and
scaled to twice the larger input scale; the sum is scaled to the output.
"""

from __future__ import annotations

import numpy as np

from tinyswap.fixedpoint import multiply_by_quantized_multiplier
from tinyswap.kernels.base import Kernel, Prepared, PrepareContext
from tinyswap.kernels.elementwise import float_binary_params, prepare_binary
from tinyswap.kernels.quantized import activation_range, checked_multiplier
from tinyswap.kernels.registry import register

LEFT_SHIFT = 20  # int8; TFLM uses 15 for int16


def smaller_than_one(ctx: PrepareContext, real: float, what: str) -> tuple[int, int]:
    """TFLite `QuantizeMultiplierSmallerThanOneExp`: the result must be a right shift."""
    multiplier, shift = checked_multiplier(real)
    if shift > 0:
        raise ctx.error(f"{what} multiplier {real:.6g} is not below one; the scales are unusable")
    return multiplier, shift


def additive_params(ctx: PrepareContext, s1: float, s2: float, s_out: float) -> dict:
    """Multipliers of ADD and SUB, computed in double precision from the float32 scales."""
    twice = 2.0 * max(s1, s2)
    reals = (s1 / twice, s2 / twice, twice / ((1 << LEFT_SHIFT) * s_out))
    (m1, sh1), (m2, sh2), (mo, sho) = (
        smaller_than_one(ctx, r, w) for r, w in zip(reals, ("input 1", "input 2", "output"))
    )
    return {"m1": m1, "s1": sh1, "m2": m2, "s2": sh2, "mo": mo, "so": sho}


def additive_eval(p: dict, a: np.ndarray, b: np.ndarray, sign: int) -> np.ndarray:
    a1 = multiply_by_quantized_multiplier((a.astype(np.int64) - p["zp1"]) << LEFT_SHIFT, p["m1"], p["s1"])
    b1 = multiply_by_quantized_multiplier((b.astype(np.int64) - p["zp2"]) << LEFT_SHIFT, p["m2"], p["s2"])
    out = multiply_by_quantized_multiplier(a1 + sign * b1, p["mo"], p["so"]) + p["zp_out"]
    lo, hi = p["range"]
    return np.clip(out, lo, hi).astype(np.int8)


@register
class Add(Kernel):
    op_name = "ADD"
    sign = +1

    def prepare(self, ctx: PrepareContext) -> Prepared:
        a, b, y, shape, is_float = prepare_binary(ctx)
        if is_float:
            return Prepared([shape], float_binary_params(ctx))
        (s1, zp1), (s2, zp2), (so, zpo) = ctx.per_tensor(a), ctx.per_tensor(b), ctx.per_tensor(y)
        params = additive_params(ctx, s1, s2, so)
        params.update(float=False, zp1=zp1, zp2=zp2, zp_out=zpo,
                      range=activation_range(ctx.option("fused_activation_function"), so, zpo, y.type))
        return Prepared([shape], params)

    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        if p["float"]:
            lo, hi = p["range"]
            result = inputs[0] + inputs[1] if self.sign > 0 else inputs[0] - inputs[1]
            return [np.clip(result, lo, hi).astype(np.float32)]
        return [additive_eval(p, inputs[0], inputs[1], self.sign)]
