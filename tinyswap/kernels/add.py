"""ADD, int8 (with broadcasting) and float32.

TFLM `micro/kernels/add_common.cc` (Prepare, in double precision) and
`reference/integer_ops/add.h`: each input, less its zero point, is shifted left by 20 and
scaled to twice the larger input scale; the sum is scaled to the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.fixedpoint import multiply_by_quantized_multiplier
from tinyswap.kernels.base import Kernel, Prepared, PrepareContext, Step
from tinyswap.kernels.elementwise import float_binary_params, pair_lookup_step, prepare_binary
from tinyswap.kernels.quantized import FloatActivation, activation_range, checked_multiplier, pair_table
from tinyswap.kernels.registry import register

LEFT_SHIFT = 20  # int8; TFLM uses 15 for int16


@dataclass(frozen=True)
class AddParams:
    """int8 ADD and SUB (TFLM `ArithmeticParams`): each input less its zero point, shifted left
    by LEFT_SHIFT, rescaled by its (multiplier, shift); the sum or difference rescaled by the
    output's, plus the output zero point, clamped."""

    input1_zero_point: int
    input2_zero_point: int
    output_zero_point: int
    input1_multiplier: int
    input1_shift: int
    input2_multiplier: int
    input2_shift: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


def smaller_than_one(ctx: PrepareContext, real: float, what: str) -> tuple[int, int]:
    """TFLite `QuantizeMultiplierSmallerThanOneExp`: the result must be a right shift."""
    multiplier, shift = checked_multiplier(real)
    if shift > 0:
        raise ctx.error(f"{what} multiplier {real:.6g} is not below one; the scales are unusable")
    return multiplier, shift


def additive_multipliers(ctx: PrepareContext, s1: float, s2: float, s_out: float) -> tuple[tuple[int, int], ...]:
    """((m1, shift1), (m2, shift2), (m_out, shift_out)) of ADD and SUB, computed in double
    precision from the float32 scales."""
    twice = 2.0 * max(s1, s2)
    reals = (s1 / twice, s2 / twice, twice / ((1 << LEFT_SHIFT) * s_out))
    return tuple(smaller_than_one(ctx, r, w) for r, w in zip(reals, ("input 1", "input 2", "output")))


def additive_eval(p: AddParams, a: np.ndarray, b: np.ndarray, sign: int) -> np.ndarray:
    a1 = multiply_by_quantized_multiplier((a.astype(np.int64) - p.input1_zero_point) << LEFT_SHIFT,
                                          p.input1_multiplier, p.input1_shift)
    b1 = multiply_by_quantized_multiplier((b.astype(np.int64) - p.input2_zero_point) << LEFT_SHIFT,
                                          p.input2_multiplier, p.input2_shift)
    out = multiply_by_quantized_multiplier(a1 + sign * b1, p.output_multiplier, p.output_shift) + p.output_zero_point
    return np.clip(out, p.act_min, p.act_max).astype(np.int8)


@register
class Add(Kernel[AddParams | FloatActivation]):
    op_name = "ADD"
    sign = +1

    def prepare(self, ctx: PrepareContext) -> Prepared[AddParams | FloatActivation]:
        a, b, y, shape, is_float = prepare_binary(ctx)
        if is_float:
            return Prepared([shape], float_binary_params(ctx))
        (s1, zp1), (s2, zp2), (so, zpo) = ctx.per_tensor(a), ctx.per_tensor(b), ctx.per_tensor(y)
        (m1, sh1), (m2, sh2), (mo, sho) = additive_multipliers(ctx, s1, s2, so)
        act_min, act_max = activation_range(ctx.activation(), so, zpo)
        return Prepared([shape], AddParams(zp1, zp2, zpo, m1, sh1, m2, sh2, mo, sho, act_min, act_max))

    def eval(self, prepared: Prepared[AddParams | FloatActivation],
             inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        if isinstance(p, FloatActivation):
            result = inputs[0] + inputs[1] if self.sign > 0 else inputs[0] - inputs[1]
            return [np.clip(result, p.act_min, p.act_max).astype(np.float32)]
        return [additive_eval(p, inputs[0], inputs[1], self.sign)]

    def bind(self, prepared: Prepared[AddParams | FloatActivation], inputs: list[np.ndarray | None],
             outputs: list[np.ndarray]) -> Step:
        """int8: one gather from the op's pair table (`additive_eval` of every input pair)."""
        p = prepared.params
        sign = self.sign
        table = None if isinstance(p, FloatActivation) else pair_table(
            (p, sign), lambda a, b: additive_eval(p, a, b, sign))
        if table is None:
            return super().bind(prepared, inputs, outputs)
        return pair_lookup_step(table, inputs[0], inputs[1], outputs[0])
