"""GREATER (TFLM `comparisons.cc`): a boolean tensor, with broadcasting.

int8 inputs are compared after TFLM's rescaling, not as stored values: each input becomes
`MultiplyByQuantizedMultiplierSmallerThanOneExp((q - zero_point) * 2**8, multiplier(scale))`,
so inputs of different quantizations compare by their real values, and a small enough
difference (below about half a unit of 2**-8 / scale) compares as equal. int32 and float32
compare the stored values. The conditional adapter slots derive an IF's condition this way
(`gate > off`), which is why the kernel exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.fixedpoint import multiply_by_quantized_multiplier_smaller_than_one_exp, quantize_multiplier
from tinyswap.kernels.base import BOOL, FLOAT32, INT8, INT32, Kernel, Prepared, PrepareContext, Step, TensorSpec
from tinyswap.kernels.elementwise import broadcast_shape
from tinyswap.kernels.registry import register

_LEFT_SHIFT = 8  # TFLM's kLeftShift for int8 comparisons


@dataclass(frozen=True)
class InputScaling:
    """One int8 input's rescaling: offset (minus the zero point), multiplier and shift (<= 0)."""

    offset: int
    multiplier: int
    shift: int

    def apply(self, q: np.ndarray) -> np.ndarray:
        shifted = (q.astype(np.int64) + self.offset) * (1 << _LEFT_SHIFT)
        return multiply_by_quantized_multiplier_smaller_than_one_exp(shifted, self.multiplier, self.shift)


def _scaling(ctx: PrepareContext, spec: TensorSpec) -> InputScaling:
    scale, zero_point = ctx.per_tensor(spec)
    # TFLM's QuantizeMultiplierSmallerThanOneExp only admits scales in (0, 1) (a debug assert).
    if not 0.0 < float(np.float32(scale)) < 1.0:
        raise ctx.error(f"int8 comparison of {spec.name!r} needs a scale in (0, 1), got {scale}")
    multiplier, shift = quantize_multiplier(float(np.float32(scale)))
    return InputScaling(-zero_point, multiplier, shift)


@register
class Greater(Kernel[tuple[InputScaling, InputScaling] | None]):
    op_name = "GREATER"

    def prepare(self, ctx: PrepareContext) -> Prepared[tuple[InputScaling, InputScaling] | None]:
        ctx.expect_counts(2)
        a, b, y = ctx.input(0), ctx.input(1), ctx.output()
        ctx.require_types(a, INT8, INT32, FLOAT32)
        if b.dtype != a.dtype:
            raise ctx.error(f"input types differ: {a.type_name} and {b.type_name}")
        ctx.require_types(y, BOOL)
        shape = broadcast_shape(ctx, a, b)
        if a.dtype != INT8:
            return Prepared([shape], None)
        return Prepared([shape], (_scaling(ctx, a), _scaling(ctx, b)))

    def eval(self, prepared: Prepared[tuple[InputScaling, InputScaling] | None],
             inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        a, b = inputs[0], inputs[1]
        assert a is not None and b is not None
        if prepared.params is not None:
            a, b = prepared.params[0].apply(a), prepared.params[1].apply(b)
        return [np.broadcast_to(a > b, prepared.output_shapes[0]).copy()]

    def bind(self, prepared: Prepared[tuple[InputScaling, InputScaling] | None], inputs: list[np.ndarray | None],
             outputs: list[np.ndarray]) -> Step:
        """int8: each input's rescaling tabulated over its 256 values (by `InputScaling.apply`
        itself), indexed by the stored bit patterns; one comparison into the output."""
        if prepared.params is None:
            return super().bind(prepared, inputs, outputs)
        a, b = inputs[0], inputs[1]
        assert a is not None and b is not None
        values = np.arange(-128, 128, dtype=np.int8)
        by_bits = [np.roll(scaling.apply(values), -128) for scaling in prepared.params]  # bit pattern k -> value
        bits_a, bits_b = a.view(np.uint8), b.view(np.uint8)
        out = outputs[0]

        def step() -> None:
            np.greater(by_bits[0].take(bits_a), by_bits[1].take(bits_b), out=out)

        return step
