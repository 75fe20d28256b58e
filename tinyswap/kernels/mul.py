"""MUL, int8 (with broadcasting) and float32 (TFLM `mul_common.cc`, `integer_ops/mul.h`):
out = zp_out + MBQM((a - zp_a) * (b - zp_b), s_a * s_b / s_out)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.fixedpoint import multiply_by_quantized_multiplier
from tinyswap.kernels.base import Kernel, Prepared, PrepareContext, Step
from tinyswap.kernels.elementwise import float_binary_params, pair_lookup_step, prepare_binary
from tinyswap.kernels.quantized import FloatActivation, activation_range, checked_multiplier, pair_table
from tinyswap.kernels.registry import register


@dataclass(frozen=True)
class MulParams:
    input1_zero_point: int
    input2_zero_point: int
    output_zero_point: int
    multiplier: int  # of s_a * s_b / s_out
    shift: int
    act_min: int
    act_max: int


@register
class Mul(Kernel[MulParams | FloatActivation]):
    op_name = "MUL"

    def prepare(self, ctx: PrepareContext) -> Prepared[MulParams | FloatActivation]:
        a, b, y, shape, is_float = prepare_binary(ctx)
        if is_float:
            return Prepared([shape], float_binary_params(ctx))
        (s1, zp1), (s2, zp2), (so, zpo) = ctx.per_tensor(a), ctx.per_tensor(b), ctx.per_tensor(y)
        m, s = checked_multiplier(s1 * s2 / so)
        act_min, act_max = activation_range(ctx.activation(), so, zpo)
        return Prepared([shape], MulParams(zp1, zp2, zpo, m, s, act_min, act_max))

    def eval(self, prepared: Prepared[MulParams | FloatActivation],
             inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        if isinstance(p, FloatActivation):
            return [np.clip(inputs[0] * inputs[1], p.act_min, p.act_max).astype(np.float32)]
        return [multiply_int8(p, inputs[0], inputs[1])]

    def bind(self, prepared: Prepared[MulParams | FloatActivation], inputs: list[np.ndarray | None],
             outputs: list[np.ndarray]) -> Step:
        """int8: one gather from the op's pair table (`multiply_int8` of every input pair)."""
        p = prepared.params
        table = None if isinstance(p, FloatActivation) else pair_table(p, lambda a, b: multiply_int8(p, a, b))
        if table is None:
            return super().bind(prepared, inputs, outputs)
        return pair_lookup_step(table, inputs[0], inputs[1], outputs[0])


def multiply_int8(p: MulParams, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    prod = (a.astype(np.int64) - p.input1_zero_point) * (b.astype(np.int64) - p.input2_zero_point)
    out = multiply_by_quantized_multiplier(prod, p.multiplier, p.shift) + p.output_zero_point
    return np.clip(out, p.act_min, p.act_max).astype(np.int8)

