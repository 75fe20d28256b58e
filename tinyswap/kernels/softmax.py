"""SOFTMAX: int8 -> int8 (output scale 1/256, zero point -128, as TFLM requires) and float32.

TFLM: `micro/kernels/softmax_common.cc` (PreprocessSoftmaxScaling with 5 integer bits,
CalculateInputRadius) and `kernels/internal/reference/softmax.h`: differences to the row max
are rescaled into Q5.26, exponentiated with gemmlowp's fixed-point `exp_on_negative_values`,
summed in Q12.19, inverted with `GetReciprocal`, and the products rounded into int8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tinyswap.fixedpoint import (
    exp_on_negative_values,
    get_reciprocal,
    multiply_by_quantized_multiplier_greater_than_one,
    multiply_by_quantized_multiplier_single_rounding,
    quantize_multiplier_greater_than_one,
    rescale,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from tinyswap.kernels.base import FLOAT32, INT8, Kernel, Prepared, PrepareContext, Profile
from tinyswap.kernels.registry import register

SCALED_DIFF_INTEGER_BITS = 5
ACCUMULATION_INTEGER_BITS = 12


def softmax_input_scaling(beta: float, input_scale: float, single_rounding: bool) -> tuple[int, int, int]:
    """(multiplier, left_shift, diff_min) as TFLite's PreprocessSoftmaxScaling / CalculateInputRadius."""
    max_real = float((1 << 30) - 1) if single_rounding else float((1 << 31) - 1)
    real = min(beta * input_scale * (1 << (31 - SCALED_DIFF_INTEGER_BITS)), max_real)
    multiplier, left_shift = quantize_multiplier_greater_than_one(real)
    radius = math.floor(
        ((1 << SCALED_DIFF_INTEGER_BITS) - 1) * (1 << (31 - SCALED_DIFF_INTEGER_BITS)) / (1 << left_shift)
    )
    return multiplier, left_shift, -radius


@dataclass(frozen=True)
class SoftmaxParams:
    """int8 SOFTMAX (TFLM `SoftmaxParams`): differences to the row max at or above `diff_min`
    are rescaled into Q5.26 by (multiplier, left_shift); the rest contribute nothing."""

    multiplier: int
    left_shift: int
    diff_min: int
    single_rounding: bool  # LiteRT rescales the differences with one rounding


@dataclass(frozen=True)
class FloatSoftmaxParams:
    beta: float


@register
class Softmax(Kernel[SoftmaxParams | FloatSoftmaxParams]):
    op_name = "SOFTMAX"

    def prepare(self, ctx: PrepareContext) -> Prepared[SoftmaxParams | FloatSoftmaxParams]:
        ctx.expect_counts(1)
        x, y = ctx.input(0), ctx.output()
        if not x.shape:
            raise ctx.error("input must have at least one dimension")
        beta = float(ctx.option("beta"))
        if not math.isfinite(beta) or beta <= 0:
            raise ctx.error(f"beta {beta} must be a positive number")
        if x.dtype == FLOAT32:
            ctx.require_types(y, FLOAT32)
            return Prepared([x.shape], FloatSoftmaxParams(beta))
        ctx.require_types(x, INT8)
        ctx.require_types(y, INT8)
        x_scale, _ = ctx.per_tensor(x)
        y_scale, y_zp = ctx.per_tensor(y)
        if y_zp != -128 or np.float32(y_scale) != np.float32(1.0 / 256):
            raise ctx.error(f"int8 output needs scale 1/256 and zero point -128 (TFLM), got {y_scale} and {y_zp}")
        # beta and the input scale are float32 in the file; TFLM widens both to double.
        single = ctx.profile == Profile.LITERT
        multiplier, left_shift, diff_min = softmax_input_scaling(
            float(np.float32(beta)), float(np.float32(x_scale)), single
        )
        return Prepared([x.shape], SoftmaxParams(multiplier, left_shift, diff_min, single))

    def eval(self, prepared: Prepared[SoftmaxParams | FloatSoftmaxParams],
             inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        if isinstance(p, FloatSoftmaxParams):
            x32 = x.astype(np.float32)
            e = np.exp((x32 - x32.max(axis=-1, keepdims=True)) * np.float32(p.beta))
            return [(e / e.sum(axis=-1, keepdims=True, dtype=np.float32)).astype(np.float32)]
        diff = x.astype(np.int64) - x.max(axis=-1, keepdims=True).astype(np.int64)
        inside = diff >= p.diff_min
        if p.single_rounding:
            rescaled = multiply_by_quantized_multiplier_single_rounding(diff, p.multiplier, p.left_shift)
        else:
            rescaled = multiply_by_quantized_multiplier_greater_than_one(diff, p.multiplier, p.left_shift)
        exps = exp_on_negative_values(np.where(inside, rescaled, 0), SCALED_DIFF_INTEGER_BITS)
        exps = np.where(inside, exps, 0)
        sum_of_exps = rescale(exps, 0, ACCUMULATION_INTEGER_BITS).sum(axis=-1, keepdims=True)
        shifted_scale, num_bits_over_unit = get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS)
        exponent = num_bits_over_unit + 31 - 8
        unsat = rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted_scale, exps), exponent)
        out = np.clip(unsat - 128, -128, 127)
        return [np.where(inside, out, -128).astype(np.int8)]

