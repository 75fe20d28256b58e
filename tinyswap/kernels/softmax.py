"""SOFTMAX: int8 -> int8 (output scale 1/256, zero point -128, as TFLM requires) and float32.

TFLM: `micro/kernels/softmax_common.cc` (PreprocessSoftmaxScaling with 5 integer bits,
CalculateInputRadius) and `kernels/internal/reference/softmax.h`: differences to the row max
are rescaled into Q5.26, exponentiated with gemmlowp's fixed-point `exp_on_negative_values`,
summed in Q12.19, inverted with `GetReciprocal`, and the products rounded into int8. Bound
steps of rows up to 511 values replace GetReciprocal by one float division per row, with a
bracket that proves the result or hands the value to the integer arithmetic (see BRACKET).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinyswap.errors import InterpreterError
from tinyswap.fixedpoint import (
    INT32_MAX,
    exp_on_negative_values,
    get_reciprocal,
    multiply_by_quantized_multiplier_greater_than_one,
    multiply_by_quantized_multiplier_single_rounding,
    quantize_multiplier_greater_than_one,
    rescale,
)
from tinyswap.kernels.base import (
    FLOAT32,
    INT8,
    Kernel,
    Prepared,
    PrepareContext,
    Profile,
    Step,
    claim_buffer_bytes,
)
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


# Up to this many values (a batch-1 classifier head) a bound step computes them on Python
# numbers (`_softmax_int8_python`): measured faster than `_BracketedSoftmax`' two dozen NumPy
# calls below about 20 values (1 x 10: 4.7 vs 7 us; 1 x 16: 6.4 vs 7.4 us; 2 x 10: 8.7 vs 7.4 us).
PYTHON_MAX_VALUES = 16
# Up to this many rows `_PlannedSoftmax` computes each row's reciprocal on Python ints: some
# thirty NumPy calls on one-element arrays cost more.
FEW_ROWS = 8

# TFLM defines the output of a row only while its Q12.19 sum is below 2**28: past that
# GetReciprocal's num_bits_over_unit exceeds 8 and RoundingDivideByPOT's exponent
# (num_bits_over_unit + 31 - 8) exceeds 31, which the tflite_micro wheel (and LiteRT's
# reference kernel) check and abort on, and which is an out-of-range shift in a build without
# the check. The int32 sum itself wrapping at 2**31 changes nothing before that: GetReciprocal
# reads it as a uint32. Every term is at most 2**19 (exp(0) saturates Q0.31 and rescales to one
# in Q12.19), so rows of up to this many values always stay below 2**28; longer rows may not,
# and an invoke whose row reaches it fails here as it does in TFLM (`refuse_undefined_sums`).
DEFINED_MAX_COLUMNS = (1 << 28) // (1 << 19) - 1
UNDEFINED_SUM = 1 << 28


def refuse_undefined_sums(sums: np.ndarray) -> None:
    """A typed error where a row's Q12.19 sum reaches 2**28: TFLM has no output there (the
    wheel aborts the process), so no value is returned as if it had one."""
    if sums.size and int(sums.max()) >= UNDEFINED_SUM:
        raise InterpreterError(
            f"SOFTMAX: a row's fixed-point sum of exponentials reaches 2**28 (more than {DEFINED_MAX_COLUMNS} values "
            "at or near the row's maximum); TFLite Micro aborts on this input (its rounding shift would pass 31 "
            "bits), so it has no defined output")
# Rows of up to this many values (longer than DEFINED_MAX_COLUMNS) run `_PlannedSoftmax`: their
# sums reach at most 4096 * 2**19 = 2**31, which its reciprocals (`get_reciprocal` on ints,
# `_RowReciprocals`) take as GetReciprocal takes the wrapped int32 sum: as a uint32 (the tests
# pin 2**31 and the outputs at this width). Longer rows run `eval`.
PLANNED_MAX_COLUMNS = 4096

# Elements per block of the int8 evaluation: the int64 intermediates of one block stay within
# a few megabytes however large the tensor (a hostile model's is tens of megabytes).
BLOCK_ELEMENTS = 1 << 18


@dataclass(frozen=True)
class SoftmaxParams:
    """int8 SOFTMAX (TFLM `SoftmaxParams`): differences to the row max at or above `diff_min`
    are rescaled into Q5.26 by (multiplier, left_shift); the rest contribute nothing.

    An int8 difference to the row max is one of 256 values (0, -1, ..., -255), so prepare
    tabulates, per difference, its Q0.31 exponential (`exp_table`, 0 below `diff_min`) and
    that value rescaled into the Q12.19 accumulator (`sum_table`): the same fixed-point
    functions, evaluated once per possible input instead of once per element. Index = -diff.
    Stored as int64 bytes so the record stays immutable and compares by value."""

    multiplier: int
    left_shift: int
    diff_min: int
    single_rounding: bool  # LiteRT rescales the differences with one rounding
    exp_table: bytes = b""
    sum_table: bytes = b""

    def tabulated(self) -> "SoftmaxParams":
        diff = -np.arange(256, dtype=np.int64)
        inside = diff >= self.diff_min
        if self.single_rounding:
            rescaled = multiply_by_quantized_multiplier_single_rounding(diff, self.multiplier, self.left_shift)
        else:
            rescaled = multiply_by_quantized_multiplier_greater_than_one(diff, self.multiplier, self.left_shift)
        exps = np.where(inside, exp_on_negative_values(np.where(inside, rescaled, 0), SCALED_DIFF_INTEGER_BITS), 0)
        sums = rescale(exps, 0, ACCUMULATION_INTEGER_BITS)
        return SoftmaxParams(self.multiplier, self.left_shift, self.diff_min, self.single_rounding,
                             exps.astype(np.int64).tobytes(), np.asarray(sums, np.int64).tobytes())


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
        return Prepared([x.shape], SoftmaxParams(multiplier, left_shift, diff_min, single).tabulated())

    def eval(self, prepared: Prepared[SoftmaxParams | FloatSoftmaxParams],
             inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        if isinstance(p, FloatSoftmaxParams):
            x32 = x.astype(np.float32)
            e = np.exp((x32 - x32.max(axis=-1, keepdims=True)) * np.float32(p.beta))
            return [(e / e.sum(axis=-1, keepdims=True, dtype=np.float32)).astype(np.float32)]
        return [_softmax_int8(p, x)]

    def bind(self, prepared: Prepared[SoftmaxParams | FloatSoftmaxParams], inputs: list[np.ndarray | None],
             outputs: list[np.ndarray]) -> Step:
        """int8 rows of up to DEFINED_MAX_COLUMNS values: up to PYTHON_MAX_VALUES values (a
        batch-1 classifier head) on Python numbers, else up to BRACKETED_MAX_VALUES values as
        `_BracketedSoftmax`' passes. Longer rows and larger tensors up to BLOCK_ELEMENTS values:
        `_PlannedSoftmax`' exact integer passes. Larger tensors (or past the plan's buffer
        budget) run `eval`, block by block."""
        p = prepared.params
        x = inputs[0]
        cols = x.shape[-1] if x.ndim else 0
        rows = x.size // cols if cols else 0
        if isinstance(p, FloatSoftmaxParams) or rows == 0 or cols > PLANNED_MAX_COLUMNS:
            return super().bind(prepared, inputs, outputs)
        x2, out2 = x.reshape(rows, cols), outputs[0].reshape(rows, cols)
        bracketed = cols <= DEFINED_MAX_COLUMNS and x.size <= BRACKETED_MAX_VALUES and out2.flags.c_contiguous
        if bracketed and x.size <= PYTHON_MAX_VALUES:
            tables, out_bytes = _python_tables(p), memoryview(out2.reshape(-1).view(np.uint8))
            return lambda: out_bytes.__setitem__(_ALL, _softmax_int8_python(x2.tolist(), *tables))
        planned = _BracketedSoftmax.of(p, x2, out2) if bracketed else _PlannedSoftmax.of(p, x2, out2)
        return super().bind(prepared, inputs, outputs) if planned is None else planned.step


# The bracketed paths (`_BracketedSoftmax`, `_softmax_int8_python`) replace GetReciprocal's
# Newton-Raphson steps by one float division. For a row sum x in [2**19, 2**28) (Q12.19; see
# DEFINED_MAX_COLUMNS) with bit length b, TFLM's output for a Q0.31 exponential e is
#     out + 128 = min(q, 255),  q = floor((s * e + 2**30 + 2**(k - 1)) / 2**k),  k = b + 34
# (`_scaled_outputs`' SRDHM and RoundingDivideByPOT(., b + 3) as one floor), where s is
# GetReciprocal's Q0.31 result. Its half denominator is d = x << (31 - b), and over every d that
# such sums give (all multiples of 8 in [2**30, 2**31)) the tests establish |s - 2**61 / d| <=
# RECIPROCAL_ERROR_MAX. Since 2**61 / d / 2**k = 1 / (16 x), q = floor(e / (16 x) + 1/2 + err)
# with |err| <= 8 * 2**31 / 2**54 + 2**30 / 2**54 < 0.54 * 2**-19 (e < 2**31, k >= 54); float64
# rounding of e * (1 / (16 x)) + 1/2 (a value below 257) adds under 2**-43. So with
# t = e * fl(1 / (16 x)), floor(t + 1/2 - BRACKET) <= q <= floor(t + 1/2 + BRACKET), and where
# the two bounds agree (all but about one value in 2**18) they are q. Values whose bounds differ
# (on the Python path: their rows) are computed exactly (GetReciprocal on integers).
RECIPROCAL_ERROR_MAX = 8
BRACKET = 2.0**-19
# q <= floor(((2**31 - 1)**2 + 2**30 + 2**53) / 2**54) = 256 (a row of one dominant value).
Q_MAX = 256
# The uint8 byte of the int8 output q - 128 (q in 0..255) is q with its top bit flipped.
SIGN_BIT = 0x80
# The Q12.19 one: the term of the row's maximum (exp(0) saturated to 2**31 - 1, rescaled).
Q12_19_ONE = 1 << 19


def _sixteen_x_table(p: SoftmaxParams) -> np.ndarray:
    """16 * `sum_table` as float64: a row's sum of it is 16 x exactly (integers below 2**53)."""
    sums = np.frombuffer(p.sum_table, np.int64)
    assert sums[0] == Q12_19_ONE and sums.max() == Q12_19_ONE  # every row sum is at least 2**19
    return sums.astype(np.float64) * 16


def _python_tables(p: SoftmaxParams) -> tuple[list[float], list[float], list[int], list[int], list[int]]:
    """`_softmax_int8_python`'s tables as Python lists: the exponentials as floats, 16 times the
    Q12.19 terms, the output byte of each q (clamped: 255 and 256 give the same), and the
    integer tables for the exact path."""
    exps = np.frombuffer(p.exp_table, np.int64)
    codes = [min(q, 255) ^ SIGN_BIT for q in range(Q_MAX + 1)]
    return (exps.astype(np.float64).tolist(), _sixteen_x_table(p).tolist(), codes, exps.tolist(),
            np.frombuffer(p.sum_table, np.int64).tolist())


def _softmax_int8_python(rows: list[list[int]], exp_floats: list[float], sixteen_x: list[float],
                         codes: list[int], exp_table: list[int], sum_table: list[int]) -> bytes:
    """The int8 softmax of a few values as the output's bytes: per row the bracketed form
    (see BRACKET), or where its bounds differ `_exact_codes`."""
    result = bytearray()
    high_offset, low_offset = 0.5 + BRACKET, 0.5 - BRACKET
    for row in rows:
        top = max(row)
        index = [top - v for v in row]
        inverse = 1.0 / sum([sixteen_x[i] for i in index])
        scaled = [exp_floats[i] * inverse for i in index]
        high = [codes[int(t + high_offset)] for t in scaled]  # t >= 0: int() is floor
        if high == [codes[int(t + low_offset)] for t in scaled]:  # (codes clamp: 255 and 256 agree)
            result += bytes(high)
        else:
            result += bytes(_exact_codes(sum([sum_table[i] for i in index]), [exp_table[i] for i in index]))
    return bytes(result)


def _exact_codes(total: int, exps: list[int]) -> list[int]:
    """The output bytes for the Q0.31 exponentials `exps` of a row whose Q12.19 sum is `total`
    (below 2**28), with TFLM's integer reciprocal and `_scaled_outputs`' arithmetic, its two
    shifts folded into one: with a = s * e + 2**30, floor((floor(a / 2**31) + 2**(x - 1)) / 2**x)
    is floor((a + 2**(x + 30)) / 2**(x + 31)), and min(w - 128, 127) is min(w, 255) - 128."""
    shifted_scale, num_bits_over_unit = get_reciprocal(total, ACCUMULATION_INTEGER_BITS)
    exponent = num_bits_over_unit + 31 - 8
    rounding, shift = (1 << 30) + (1 << (exponent + 30)), exponent + 31
    return [min((shifted_scale * e + rounding) >> shift, 255) ^ SIGN_BIT for e in exps]


class _BracketedSoftmax:
    """The int8 softmax of a fixed [rows, cols] view (cols <= DEFINED_MAX_COLUMNS) in the
    bracketed form (see BRACKET): per value h = e * fl(1 / (16 x)) + 1/2 + BRACKET - 128, whose
    floor is the output wherever h - floor(h) >= 2 * BRACKET (then no integer lies in the
    bracket [h - 2 * BRACKET, h] that holds the exact value). Values whose bracket may hold one
    (about one value in 2**18) are computed again with TFLM's integer reciprocal.

    Rows of up to SPREAD_MAX_COLUMNS values are held column by column ([cols, rows]): the row
    max and sum reduce over the leading axis, a vector pass per column, instead of a short pass
    per row (measured 1.3 vs 2.6 us at 64 x 10), and per-row values meet the per-value passes
    spread to every value by indexing with each value's row number, over flat arrays (NumPy
    costs a microsecond more per call on a 2-D or broadcast operand than on a flat one at these
    sizes). Longer rows run over [rows, cols] with [rows, 1] columns broadcast."""

    def __init__(self, p: SoftmaxParams, x: np.ndarray, out: np.ndarray) -> None:
        rows, cols = x.shape
        self.params, self.out = p, out
        self.exps = np.frombuffer(p.exp_table, np.int64).astype(np.float64)
        self.sixteen_x = _sixteen_x_table(p)
        self.transposed = cols <= SPREAD_MAX_COLUMNS
        if self.transposed:
            self.x, self.target, self.axis = x.T, out.T, 0
            row_of = np.tile(np.arange(rows, dtype=np.intp), cols)  # each value's row
            self.spread: Callable[[np.ndarray], np.ndarray] = lambda v: v[row_of]
            layout: tuple[int, ...] = (rows * cols,)
        else:
            self.x, self.target, self.axis = x, out, 1
            self.spread = lambda v: v[:, None]
            layout = x.shape
        self.wide = np.empty(self.x.shape, np.intp)  # x as table indices take them: intp
        self.index = np.empty(self.x.shape, np.intp)  # the difference to the row max, 0..255
        self.floor = np.empty(self.x.shape, np.float64)
        self.values, self.indices, self.floors = (a.reshape(layout) for a in (self.wide, self.index, self.floor))
        self.top = np.empty(rows, np.intp)
        self.sums = np.empty(rows, np.float64)  # 16 x per row
        self.inverse = np.empty(rows, np.float64)
        self.out_bytes = out.view(np.uint8)
        self.exp_list = np.frombuffer(p.exp_table, np.int64).tolist()  # for `_exact_values`
        self.high_offset = np.array(0.5 + BRACKET - 128)  # the output's zero point folded in
        self.two_brackets = 2 * BRACKET

    @classmethod
    def of(cls, p: SoftmaxParams, x: np.ndarray, out: np.ndarray) -> "_BracketedSoftmax | None":
        """None past BLOCK_ELEMENTS values or the plan's buffer budget (`eval` runs those): per
        value 32 bytes of buffers here (with the row numbers) and 32 of the step's temporaries
        (two table lookups, two spread rows), per row 24, and the tables."""
        claim = x.size * 64 + x.shape[0] * 24 + _TABLE_BYTES
        if x.size > BLOCK_ELEMENTS or not claim_buffer_bytes(claim):
            return None
        return cls(p, x, out)

    def step(self) -> None:
        index, floor, spread = self.indices, self.floors, self.spread
        np.copyto(self.wide, self.x)
        np.maximum.reduce(self.wide, self.axis, None, self.top)
        np.subtract(spread(self.top), self.values, index)
        np.add.reduce(self.sixteen_x[self.index], self.axis, None, self.sums)  # exact: integers below 2**53
        np.divide(_ONE, self.sums, self.inverse)
        h = self.exps[index]
        np.multiply(h, spread(self.inverse), h)
        np.add(h, self.high_offset, h)
        # From 128 on (a row's dominant value) the output is 127 whichever integer the bracket
        # holds: clamped into [127.5, 128), no such value is doubtful.
        np.minimum(h, _CLAMPED_HIGH, out=h)
        np.floor(h, floor)
        np.copyto(self.target, self.floor, casting="unsafe")
        np.subtract(h, floor, h)  # where below 2 * BRACKET, the bracket may hold an integer
        if np.minimum.reduce(h, None) < self.two_brackets:
            self._exact_values(h.reshape(-1))

    def _exact_values(self, fractions: np.ndarray) -> None:
        """The values whose bracket may hold an integer, again with TFLM's integer reciprocal."""
        rows, cols = self.out.shape
        flat_index = self.index.reshape(-1)
        for i in np.flatnonzero(fractions < self.two_brackets).tolist():
            row, col = (i % rows, i // rows) if self.transposed else divmod(i, cols)
            total = int(self.sums[row]) // 16
            self.out_bytes[row, col] = _exact_codes(total, [self.exp_list[flat_index[i]]])[0]


# Up to this many values `_BracketedSoftmax`; past it `_PlannedSoftmax`' integer passes, which
# allocate nothing per step, were measured as fast or faster (us, bracketed vs planned: 3200 x 10
# 297 vs 481, 128 x 511 300 vs 315, 6400 x 10 1097 vs 925, on a loaded machine).
BRACKETED_MAX_VALUES = 1 << 15
# Rows of up to this many values run as flat column-by-column passes, longer ones broadcast:
# measured the faster either side (us, flat vs broadcast: 64 x 10 21 vs 24, 1000 x 10 105 vs 126,
# 64 x 16 27 vs 29, 64 x 24 even, 64 x 32 36 vs 35, 9 x 200 40 vs 28, on a loaded machine).
SPREAD_MAX_COLUMNS = 16
# `_BracketedSoftmax`' tables: two float64 tables of 256 and a list of 256 Python ints, rounded up.
_TABLE_BYTES = 16 << 10
_ONE = np.array(1.0)
_ALL = slice(None)
_CLAMPED_HIGH = np.array(127.5)


class _PlannedSoftmax:
    """The int8 softmax of a fixed [rows, cols] view as whole-tensor passes over buffers made
    at bind: a pass per step of TFLM's arithmetic, not a pass per row, with no allocation.

    Per element: the difference to the row max (a table index), the Q12.19 term from
    `sum_table`, later the Q0.31 exponential from `exp_table` and `_scaled_outputs`'
    arithmetic with its per-row constants. Per row: the sum and its reciprocal, on Python
    ints for up to FEW_ROWS rows, else as `_RowReciprocals`' passes over the rows."""

    def __init__(self, p: SoftmaxParams, x: np.ndarray, out: np.ndarray) -> None:
        rows, cols = x.shape
        self.x, self.out = x, out
        self.exp_table = np.frombuffer(p.exp_table, np.int64)
        self.sum_table = np.frombuffer(p.sum_table, np.int64)
        self.top = np.empty((rows, 1), np.int8)
        self.index = np.empty((rows, cols), np.intp)
        self.terms = np.empty((rows, cols), np.int64)
        self.sums = np.empty(rows, np.int64)
        self.scale = np.empty((rows, 1), np.int64)  # the reciprocal, Q0.31
        self.bias = np.empty((rows, 1), np.int64)  # 2**(exponent - 1) - 128 * 2**exponent
        self.exponent = np.empty((rows, 1), np.int64)
        self.reciprocals = None if rows <= FEW_ROWS else _RowReciprocals(rows)
        self.check_sums = cols > DEFINED_MAX_COLUMNS

    @classmethod
    def of(cls, p: SoftmaxParams, x: np.ndarray, out: np.ndarray) -> "_PlannedSoftmax | None":
        """None past BLOCK_ELEMENTS values or the plan's buffer budget (`eval` runs those)."""
        if x.size > BLOCK_ELEMENTS or not claim_buffer_bytes(x.size * 17 + x.shape[0] * 64):
            return None
        return cls(p, x, out)

    def step(self) -> None:
        top, index, terms = self.top, self.index, self.terms
        np.maximum.reduce(self.x, axis=1, out=top[:, 0])
        np.subtract(top, self.x, out=index, dtype=np.intp, casting="unsafe")
        np.take(self.sum_table, index, out=terms, mode="clip")  # indices 0..255; "raise" would buffer
        np.add.reduce(terms, axis=1, out=self.sums)
        if self.check_sums:
            refuse_undefined_sums(self.sums)
        if self.reciprocals is None:
            self._few_reciprocals()
        else:
            self.reciprocals(self.sums, self.scale, self.bias, self.exponent)
        np.take(self.exp_table, index, out=terms, mode="clip")
        np.multiply(terms, self.scale, out=terms)
        np.add(terms, _HALF_Q31, out=terms)
        np.right_shift(terms, _THIRTY_ONE, out=terms)
        np.add(terms, self.bias, out=terms)
        np.right_shift(terms, self.exponent, out=terms)
        np.minimum(terms, _INT8_MAX, out=terms)
        np.copyto(self.out, terms, casting="unsafe")  # measured twice as fast as a casting minimum

    def _few_reciprocals(self) -> None:
        scales, biases, exponents = [], [], []
        for total in self.sums.tolist():
            shifted_scale, num_bits_over_unit = get_reciprocal(total, ACCUMULATION_INTEGER_BITS)
            exponent = num_bits_over_unit + 31 - 8
            scales.append(shifted_scale)
            biases.append((1 << (exponent - 1)) - (128 << exponent))
            exponents.append(exponent)
        self.scale[:, 0], self.bias[:, 0], self.exponent[:, 0] = scales, biases, exponents


# Constants of the planned passes as 0-d arrays: NumPy converts a Python int on every call.
_HALF_Q31 = np.array(1 << 30, np.int64)
_THIRTY_ONE = np.array(31, np.int64)
_INT8_MAX = np.array(127, np.int64)


class _RowReciprocals:
    """`get_reciprocal(sum, 12)` of every row's sum (1 <= sum <= 2**31), and `_scaled_outputs`'
    per-row bias and exponent, as passes over int64 buffers: the arithmetic of
    `fixedpoint._get_reciprocal_int` (see there why no SRDHM saturates) with the roundings
    folded into shifts. The sum's bit length comes from `frexp` (exact: sums are below 2**53),
    and its mantissa times 2**31 is the half denominator x << (h - 1)."""

    # Newton-Raphson constants of gemmlowp's one_over_one_plus_x_for_x_in_0_1, as 0-d arrays.
    _START = np.array((1 << 30) + (1515870810 << 31), np.int64)  # SRDHM's nudge + 48/17 << 31
    _SLOPE = np.array(-1010580540, np.int64)  # -32/17
    # 2**29 - floor((p + 2**30) / 2**31) == floor((_ONE_MINUS - p) / 2**31)
    _ONE_MINUS = np.array((1 << 60) + (1 << 30) - 1, np.int64)
    _TWO_POW_31 = np.array(2.0**31)
    _MINUS_255 = np.array(-255, np.int64)
    _INT32_MAX = np.array(INT32_MAX, np.int64)
    _ONE, _TWO, _TWENTY_NINE = (np.array(v, np.int64) for v in (1, 2, 29))
    _THREE_BITS = np.array(~3, np.int64)

    def __init__(self, rows: int) -> None:
        self.mantissa = np.empty(rows, np.float64)
        self.bits = np.empty(rows, np.intc)
        self.half_denominator, self.y, self.t = (np.empty(rows, np.int64) for _ in range(3))

    def __call__(self, sums: np.ndarray, scale: np.ndarray, bias: np.ndarray, exponent: np.ndarray) -> None:
        c = _RowReciprocals
        hd, y, t = self.half_denominator, self.y, self.t
        np.frexp(sums, out=(self.mantissa, self.bits))
        np.multiply(self.mantissa, c._TWO_POW_31, out=hd, casting="unsafe")
        np.multiply(hd, c._SLOPE, out=y)
        np.add(y, c._START, out=y)
        np.right_shift(y, _THIRTY_ONE, out=y)
        for _ in range(3):
            np.multiply(hd, y, out=t)
            np.subtract(c._ONE_MINUS, t, out=t)
            np.right_shift(t, _THIRTY_ONE, out=t)  # one_minus, Q2.29
            np.multiply(y, t, out=t)
            np.add(t, _HALF_Q31, out=t)
            np.right_shift(t, c._TWENTY_NINE, out=t)
            np.bitwise_and(t, c._THREE_BITS, out=t)  # SRDHM times 4: (v >> 31) << 2
            np.add(y, t, out=y)
        scale = scale[:, 0]
        np.left_shift(y, c._ONE, out=scale)
        np.minimum(scale, c._INT32_MAX, out=scale)
        # exponent = num_bits_over_unit + 31 - 8 = bit_length + 3; bias = -255 << (exponent - 1)
        exponent = exponent[:, 0]
        np.add(self.bits, c._TWO, out=exponent)
        np.left_shift(c._MINUS_255, exponent, out=bias[:, 0])
        np.add(exponent, c._ONE, out=exponent)


def _scaled_outputs(shifted_scale: np.ndarray | int, exps: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """TFLM's last step, RoundingDivideByPOT(SRDHM(shifted_scale, exp), exponent) - 128, clamped
    (per row: `shifted_scale` and `exponent` are scalars or [rows, 1] columns).

    Both operands are non-negative (a reciprocal in [0.5, 1) and a Q0.31 exponential, 0 outside
    diff_min) and exponent >= 3, so SRDHM never saturates and is floor((a * b + 2**30) / 2**31),
    RoundingDivideByPOT is floor((v + 2**(e - 1)) / 2**e), the - 128 folds in as - 128 * 2**e,
    and the result is never below -128. The tests compare it with the general fixed-point
    functions over every difference and with TFLite Micro."""
    high = (np.int64(shifted_scale) * exps + (1 << 30)) >> 31 if type(shifted_scale) is int else (
        (shifted_scale * exps + (1 << 30)) >> 31)
    scaled = (high + ((np.int64(1) << (exponent - 1)) - (np.int64(128) << exponent))) >> exponent
    return np.minimum(scaled, 127)


def _row_blocks(rows: int, cols: int) -> list[tuple[slice, list[slice]]]:
    """Blocks of whole rows, each with its column blocks, of at most BLOCK_ELEMENTS elements
    (a row longer than that is split into column blocks; its sum is built across them)."""
    row_step, col_step = max(1, BLOCK_ELEMENTS // max(cols, 1)), min(max(cols, 1), BLOCK_ELEMENTS)
    columns = [slice(c, c + col_step) for c in range(0, cols, col_step)]
    return [(slice(r, r + row_step), columns) for r in range(0, rows, row_step)]


def _softmax_int8(p: SoftmaxParams, x: np.ndarray) -> np.ndarray:
    """TFLM's reference int8 softmax, block by block: the per-element exponentials come from the
    tables; each row's sum, reciprocal and the final products are computed as TFLM does. Every
    intermediate (per element and per row) is bounded by the block size."""
    exp_table, sum_table = np.frombuffer(p.exp_table, np.int64), np.frombuffer(p.sum_table, np.int64)
    x2 = x.reshape(-1, x.shape[-1])
    rows, cols = x2.shape
    out = np.empty_like(x2, dtype=np.int8)
    if cols == 0:
        return out.reshape(x.shape)
    if cols == 1 and rows > 1:  # one value per row: every row's difference to its max is 0
        out[:] = _softmax_int8(p, np.zeros((1, 1), np.int8))[0, 0]
        return out.reshape(x.shape)
    for r, columns in _row_blocks(rows, cols):
        block = x2[r]
        row_max = block.max(axis=1, keepdims=True).astype(np.int16)
        sums = np.zeros((len(row_max), 1), np.int64)
        for c in columns:  # the Q12.19 sum of every row
            sums += sum_table[row_max - block[:, c]].sum(axis=1, keepdims=True)
        if cols > DEFINED_MAX_COLUMNS:
            refuse_undefined_sums(sums)
        shifted_scale, num_bits_over_unit = get_reciprocal(sums, ACCUMULATION_INTEGER_BITS)
        exponent = num_bits_over_unit + 31 - 8
        for c in columns:
            out[r, c] = _scaled_outputs(shifted_scale, exp_table[row_max - block[:, c]], exponent)
    return out.reshape(x.shape)
