"""Shared prepare for the binary arithmetic ops (ADD, SUB, MUL: types, broadcasting, ranges) and
the one-input activations (RELU, RELU6, LOGISTIC, TANH, LEAKY_RELU, HARD_SWISH: types and
quantization)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from tinyswap.kernels.base import (
    FLOAT32,
    INT8,
    Kernel,
    P,
    Prepared,
    PrepareContext,
    Step,
    TensorSpec,
    claim_buffer_bytes,
)
from tinyswap.kernels.copy_steps import fixed_view
from tinyswap.kernels.quantized import FloatActivation, Int8Lookup, Int8PairLookup, float_activation

MAX_BROADCAST_RANK = 6  # TFLM's Broadcast*6DSlow kernels


def broadcast_shape(ctx: PrepareContext, a: TensorSpec, b: TensorSpec) -> tuple[int, ...]:
    if max(len(a.shape), len(b.shape)) > MAX_BROADCAST_RANK:
        raise ctx.error(f"rank above {MAX_BROADCAST_RANK} is not supported ({a.shape}, {b.shape})")
    try:
        return tuple(int(d) for d in np.broadcast_shapes(a.shape, b.shape))
    except ValueError:
        raise ctx.error(f"shapes {a.shape} and {b.shape} do not broadcast") from None


def prepare_binary(ctx: PrepareContext) -> tuple[TensorSpec, TensorSpec, TensorSpec, tuple[int, ...], bool]:
    """(input1, input2, output, output shape, is_float) after the checks every binary op shares."""
    ctx.expect_counts(2)
    a, b, y = ctx.input(0), ctx.input(1), ctx.output()
    shape = broadcast_shape(ctx, a, b)
    if a.dtype == FLOAT32:
        for spec in (b, y):
            ctx.require_types(spec, FLOAT32)
        return a, b, y, shape, True
    for spec in (a, b, y):
        ctx.require_types(spec, INT8)
    return a, b, y, shape, False


def pair_lookup_step(lookup: Int8PairLookup, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> Step:
    """The plan step of an int8 binary op tabulated by `lookup` (ADD, SUB, MUL): both inputs'
    bit patterns copied (broadcast) into one two-byte-per-output buffer fixed here, whose
    little-endian uint16 view is the table index (a's bits high, b's low), then one gather.
    Two plain byte copies instead of the shift and or into an intp index, which both cast.
    With a one-value operand (a scalar constant, a [1, 1, 1, 1] one) the step reads that value
    at each invoke and gathers the other operand's bits from its row of the table: one pass."""
    single = _single_operand_step(lookup, a, b, out)
    if single is not None:
        return single
    if not claim_buffer_bytes(2 * out.size):
        return lookup.step(a, b, out)
    pairs = np.empty((*out.shape, 2), np.uint8)
    low, high = pairs[..., 0], pairs[..., 1]
    index = pairs.view("<u2")[..., 0]
    table = np.frombuffer(lookup.table, np.int8)
    a_bits, b_bits = a.view(np.uint8), b.view(np.uint8)

    def step() -> None:
        np.copyto(high, a_bits)
        np.copyto(low, b_bits)
        np.take(table, index, out=out, mode="clip")  # every uint16 is an index; "raise" would buffer

    return step


def _single_operand_step(lookup: Int8PairLookup, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> Step | None:
    """`out` = table row of the one-value operand, gathered at the other operand's bits; None
    unless exactly one operand has one value (and the other fills `out`)."""
    if (a.size == 1) == (b.size == 1) or not claim_buffer_bytes(65536):
        return None
    table = np.frombuffer(lookup.table, np.int8).reshape(256, 256)  # [a bits, b bits]
    if b.size == 1:
        single, other, rows = b, a, np.ascontiguousarray(table.T)
    else:
        single, other, rows = a, b, table
    destination = fixed_view(out, other.shape)
    if destination is None:
        return None
    value_bits, other_bits = single.view(np.uint8).reshape(1), other.view(np.uint8)
    return lambda: np.take(rows[value_bits[0]], other_bits, out=destination, mode="clip")


def float_binary_params(ctx: PrepareContext) -> FloatActivation:
    """A float32 binary op's parameters: the fused activation's clamp, nothing else."""
    return float_activation(ctx.activation())


@dataclass(frozen=True)
class UnaryInt8:
    """An int8 one-input activation's per-tensor quantization."""

    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int


def prepare_unary(ctx: PrepareContext) -> UnaryInt8 | None:
    """The checks every one-input activation shares: one input and one output, both float32
    (None: nothing to quantize) or both int8 (their per-tensor quantization)."""
    ctx.expect_counts(1)
    x, y = ctx.input(0), ctx.output()
    if x.dtype == FLOAT32:
        ctx.require_types(y, FLOAT32)
        return None
    ctx.require_types(x, INT8)
    ctx.require_types(y, INT8)  # TFLM: TF_LITE_ENSURE_TYPES_EQ(input->type, output->type)
    (xs, xzp), (ys, yzp) = ctx.per_tensor(x), ctx.per_tensor(y)
    return UnaryInt8(xs, xzp, ys, yzp)


class TabulatedUnaryKernel(Kernel[P]):
    """A one-input activation whose int8 parameters carry its prepare-time table (`lookup`):
    bound as one gather into the output view. Float32 models keep the kernel's `eval`."""

    def bind(self, prepared: Prepared[P], inputs: list[np.ndarray | None], outputs: list[np.ndarray]) -> Step:
        lookup = getattr(prepared.params, "lookup", None)
        if not isinstance(lookup, Int8Lookup) or inputs[0].dtype != INT8:
            return super().bind(prepared, inputs, outputs)
        return bit_pattern_lookup_step(lookup.by_bit_pattern(), inputs[0], outputs[0])


def int8_table_step(evaluate: Callable[[Any, list[np.ndarray | None]], Sequence[np.ndarray]], prepared: Any,
                    x: np.ndarray, out: np.ndarray) -> Step:
    """The step of an elementwise op with one int8 input (QUANTIZE int8 -> int8, DEQUANTIZE):
    its own `eval` run once on all 256 int8 values, then one gather per invoke. The same
    function at every input, so the same bits."""
    values = np.arange(-128, 128, dtype=np.int8)
    table = np.asarray(evaluate(prepared, [values])[0]).astype(out.dtype).reshape(256)
    by_bit_pattern = np.concatenate([table[128:], table[:128]])  # index: the input's uint8 bits
    return bit_pattern_lookup_step(by_bit_pattern, x, out)


def bit_pattern_lookup_step(by_bit_pattern: np.ndarray, x: np.ndarray, out: np.ndarray) -> Step:
    """`out` = the 256-entry table at each int8 input's uint8 bit pattern: one gather. Every
    pattern is an index, so the gather's "clip" mode changes nothing (its "raise" would buffer)."""
    index = x.view(np.uint8)
    return lambda: np.take(by_bit_pattern, index, out=out, mode="clip")
