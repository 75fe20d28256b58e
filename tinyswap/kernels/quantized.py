"""Quantization helpers shared by kernels: activation ranges, multipliers, requantization, and
the parameter records the rescaling kernels share.

Float appears only here and only at prepare time (turning scales into integer multipliers),
in the exact precision TFLite uses: float32 scales widened to double.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Hashable

import numpy as np

from tinyswap.errors import QuantizationError
from tinyswap.fixedpoint import (
    multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_single_rounding,
    quantize_multiplier,
    quantize_multiplier_single_rounding,
)
from tinyswap.kernels.base import INT8, FusedActivation, Profile, claim_new_pair_table


@dataclass(frozen=True)
class Rescale:
    """One per-tensor requantization: MBQM(q - input_zero_point, multiplier, shift) +
    output_zero_point (TFLite's real multiplier = multiplier * 2**(shift - 31))."""

    input_zero_point: int
    output_zero_point: int
    multiplier: int
    shift: int

    def apply(self, q: np.ndarray) -> np.ndarray:
        """The rescaled values as int64, before any clamp."""
        return multiply_by_quantized_multiplier(q.astype(np.int64) - self.input_zero_point,
                                                self.multiplier, self.shift) + self.output_zero_point


@dataclass(frozen=True)
class Int8Lookup:
    """A function of one int8 value, tabulated over all 256 inputs in prepare.

    Why: an elementwise int8 op computed directly widens every element to int64 for the
    fixed-point arithmetic (8 bytes per element per intermediate, a dozen NumPy passes), so a
    hostile 480-byte model with a 20 MB tensor costs seconds and most of a gigabyte. The table
    gives the identical result (it is the same function, evaluated once per possible input) in
    one indexing pass with one byte per element. `table` holds the outputs for -128..127 as bytes
    (bytes, not an array, so the record stays immutable and compares by value)."""

    table: bytes

    @classmethod
    def of(cls, fn: Callable[[np.ndarray], np.ndarray]) -> "Int8Lookup":
        """`fn` applied to every int8 value; its results must already lie in int8's range."""
        values = np.asarray(fn(np.arange(-128, 128, dtype=np.int8)))
        if values.shape != (256,) or values.min() < -128 or values.max() > 127:
            raise ValueError("an int8 lookup needs 256 results within [-128, 127]")
        return cls(values.astype(np.int8).tobytes())

    def apply(self, x: np.ndarray) -> np.ndarray:
        # The int8 bit pattern XOR 0x80 is the value + 128: the table index, without widening.
        return np.frombuffer(self.table, np.int8)[x.view(np.uint8) ^ np.uint8(0x80)]

    def by_bit_pattern(self) -> np.ndarray:
        """The table indexed by the int8 input's bit pattern (uint8 0..255) instead of value + 128."""
        return np.frombuffer(self.table[128:] + self.table[:128], np.int8)  # 0..127, then -128..-1

    def step(self, x: np.ndarray, out: np.ndarray) -> Callable[[], None]:
        """A plan step writing the looked-up `x` into `out`: one gather, no temporary."""
        table, index = self.by_bit_pattern(), x.view(np.uint8)
        return lambda: np.take(table, index, out=out)


# Built pair tables, shared by equal parameters (frozen records) across ops and interpreters.
_CACHED_PAIR_TABLES = 256
_pair_tables: OrderedDict[Hashable, "Int8PairLookup"] = OrderedDict()
_pair_lock = threading.Lock()


def pair_table(key: Hashable, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> "Int8PairLookup | None":
    """The shared table of `fn` under `key` (a frozen parameter record), built if the plan's
    budget allows (`PlanBudget`: 64 KB and a few milliseconds each); None when it does not
    (the caller computes directly)."""
    with _pair_lock:
        if key in _pair_tables:
            _pair_tables.move_to_end(key)
            return _pair_tables[key]
    if not claim_new_pair_table():
        return None
    table = Int8PairLookup.of(fn)
    with _pair_lock:
        _pair_tables[key] = table
        while len(_pair_tables) > _CACHED_PAIR_TABLES:
            _pair_tables.popitem(last=False)
    return table


# Inputs of a two-input int8 function tabulated by `Int8PairLookup`: a column and a row that
# broadcast to all 65,536 pairs (per-input work then runs on 256 values, not 65,536).
_PAIR_A = np.arange(-128, 128, dtype=np.int8).reshape(256, 1)
_PAIR_B = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)


@dataclass(frozen=True)
class Int8PairLookup:
    """A function of two int8 values (ADD, SUB, MUL after prepare), tabulated over all 65,536
    pairs: 64 KB, built by calling the kernel's own integer arithmetic once per pair, so the
    result is that arithmetic's by construction. At invoke, one index computation and one
    gather replace a dozen int64 passes per element. `table[(a_bits << 8) | b_bits]` with
    the inputs' uint8 bit patterns; bytes keep the record immutable."""

    table: bytes

    @classmethod
    def of(cls, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> "Int8PairLookup":
        values = np.asarray(fn(_PAIR_A, _PAIR_B))
        if values.shape != (256, 256) or values.min() < -128 or values.max() > 127:
            raise ValueError("an int8 pair lookup needs 256 x 256 results within [-128, 127]")
        # Reorder from value order (a + 128, b + 128) to bit-pattern order.
        grid = values.astype(np.int8)
        return cls(np.roll(grid, (-128, -128), axis=(0, 1)).tobytes())

    def apply(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        index = (a.view(np.uint8).astype(np.intp) << 8) | b.view(np.uint8)
        return np.frombuffer(self.table, np.int8)[index]

    def step(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> Callable[[], None]:
        """A plan step: `out` = the function of broadcast `a`, `b` (fixed views)."""
        table = np.frombuffer(self.table, np.int8)
        high, low = a.view(np.uint8), b.view(np.uint8)
        index = np.empty(out.shape, np.intp)

        def step() -> None:
            np.left_shift(high, 8, out=index, dtype=np.intp, casting="unsafe")
            np.bitwise_or(index, low, out=index, casting="unsafe")
            np.take(table, index, out=out)

        return step


@dataclass(frozen=True)
class OutputStage:
    """The int8 output stage of FULLY_CONNECTED and the convolutions: one (multiplier, shift)
    per output channel (a per-tensor filter scale is repeated) and the fused activation's
    clamp. Tuples, not arrays, so that the record is immutable and compares by value."""

    input_zero_point: int
    output_zero_point: int
    multipliers: tuple[int, ...]
    shifts: tuple[int, ...]
    act_min: int
    act_max: int
    single_rounding: bool = False  # LiteRT's FULLY_CONNECTED rounds once

    def multiplier_array(self) -> np.ndarray:
        return np.asarray(self.multipliers, dtype=np.int64)

    def shift_array(self) -> np.ndarray:
        return np.asarray(self.shifts, dtype=np.int64)


@dataclass(frozen=True)
class FloatActivation:
    """A float32 op's only parameter: the fused activation's clamp."""

    act_min: float
    act_max: float


def _round_half_away(x: float) -> float:
    return math.floor(abs(x) + 0.5) * (1.0 if x >= 0 else -1.0)


def round_half_away_f32(value: np.ndarray | np.floating) -> np.ndarray:
    """C `roundf` / `TfLiteRound` on float32 values: halves away from zero, computed in float64
    (adding 0.5 to a float32 value is exact there, so no second rounding sneaks in)."""
    v = np.asarray(value, dtype=np.float64)
    return np.copysign(np.floor(np.abs(v) + 0.5), v)


def _quantize_float32(scale: float, zero_point: int, value: float) -> int:
    """TFLite `Quantize` in kernel_util.cc: `zp + round(f / scale)` with f and scale as float32."""
    quotient = float(np.float32(value) / np.float32(scale))
    return zero_point + int(_round_half_away(quotient))


def activation_range(activation: FusedActivation, scale: float, zero_point: int,
                     dtype: np.dtype = INT8) -> tuple[int, int]:
    """TFLite `CalculateActivationRangeQuantized` for an integer output tensor of `dtype`."""
    info = np.iinfo(dtype)
    qmin, qmax = int(info.min), int(info.max)
    if activation == FusedActivation.NONE:
        return qmin, qmax
    if activation == FusedActivation.RELU:
        return max(qmin, _quantize_float32(scale, zero_point, 0.0)), qmax
    if activation == FusedActivation.RELU6:
        return (
            max(qmin, _quantize_float32(scale, zero_point, 0.0)),
            min(qmax, _quantize_float32(scale, zero_point, 6.0)),
        )
    if activation == FusedActivation.RELU_N1_TO_1:
        return (
            max(qmin, _quantize_float32(scale, zero_point, -1.0)),
            min(qmax, _quantize_float32(scale, zero_point, 1.0)),
        )
    raise ValueError(f"fused activation {activation.name} is not supported on quantized tensors")


def float_activation_range(activation: FusedActivation) -> tuple[float, float]:
    """TFLite `CalculateActivationRange` for float32 outputs."""
    inf = float("inf")
    return {
        FusedActivation.NONE: (-inf, inf),
        FusedActivation.RELU: (0.0, inf),
        FusedActivation.RELU6: (0.0, 6.0),
        FusedActivation.RELU_N1_TO_1: (-1.0, 1.0),
    }[activation]


def float_activation(activation: FusedActivation) -> FloatActivation:
    return FloatActivation(*float_activation_range(activation))


# A multiplier needing a left shift above this would overflow int32 in TFLite's C++
# (`x * (1 << left_shift)`): no sensible model has one, so it is refused, not emulated.
MAX_LEFT_SHIFT = 30


def checked_multiplier(real: float, quantize=quantize_multiplier) -> tuple[int, int]:
    """`quantize(real)` after checking that the effective scale is finite and representable."""
    if not math.isfinite(real) or real < 0:
        raise QuantizationError(f"effective scale {real!r} is not a finite non-negative number")
    multiplier, shift = quantize(real)
    if shift > MAX_LEFT_SHIFT:
        raise QuantizationError(
            f"effective scale {real:.6g} needs a left shift of {shift} (> {MAX_LEFT_SHIFT}); "
            "the quantization parameters are not usable"
        )
    return multiplier, shift


def channel_multipliers(
    input_scale: float, filter_scales: np.ndarray, output_scale: float, channels: int, profile: Profile
) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel (multiplier, shift) as TFLite's conv/FC Prepare computes them.

    effective = (double)input_scale * (double)filter_scale[c] / (double)output_scale. A
    per-tensor filter scale is broadcast to every channel (TFLM does the same).
    """
    scales = np.broadcast_to(np.asarray(filter_scales, dtype=np.float32), (channels,))
    quantize = quantize_multiplier_single_rounding if profile == Profile.LITERT else quantize_multiplier
    pairs = [checked_multiplier(float(input_scale) * float(s) / float(output_scale), quantize) for s in scales]
    multipliers = np.array([p[0] for p in pairs], dtype=np.int64)
    shifts = np.array([p[1] for p in pairs], dtype=np.int64)
    return multipliers, shifts


def output_stage(input_scale: float, input_zero_point: int, filter_scales: np.ndarray, output_scale: float,
                 output_zero_point: int, channels: int, activation: FusedActivation, profile: Profile,
                 single_rounding: bool = False) -> OutputStage:
    """The `OutputStage` of a FULLY_CONNECTED or convolution with these scales (TFLM
    `PopulateConvolutionQuantizationParams`)."""
    multipliers, shifts = channel_multipliers(input_scale, filter_scales, output_scale, channels, profile)
    act_min, act_max = activation_range(activation, output_scale, output_zero_point)
    return OutputStage(input_zero_point, output_zero_point, tuple(int(m) for m in multipliers),
                       tuple(int(s) for s in shifts), act_min, act_max, single_rounding)


def requantize(acc: np.ndarray, multiplier, shift, single_rounding: bool) -> np.ndarray:
    """acc * multiplier * 2**(shift - 31) with the rounding of the selected runtime."""
    if single_rounding:
        return multiply_by_quantized_multiplier_single_rounding(acc, multiplier, shift)
    return multiply_by_quantized_multiplier(acc, multiplier, shift)


# zero_point * 2**k stays far from int64 overflow next to a product of two int32 values only
# while k is at most 50; larger shifts (multipliers below 2**-19) add the zero point after.
_MAX_FOLDED_SHIFT = 50


def requantize_int8(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray, zero_point: int,
                    lo: int, hi: int, single_rounding: bool) -> np.ndarray:
    """clamp(MBQM(acc, M, shift) + zero_point, lo, hi) as int8 (see `Int8Requantizer`)."""
    return Int8Requantizer.build(multiplier, shift, zero_point, lo, hi, single_rounding).apply(acc)


@dataclass(frozen=True, eq=False)
class Int8Requantizer:
    """clamp(MBQM(acc, M, shift) + zero_point, lo, hi) as int8, its constants computed once.

    `acc` holds integers: an int64 array (updated in place), or a float array whose values are
    exact integers (a BLAS accumulator), converted after the sign test. Channel-major [C, n]
    accumulators are the fast layout for large tensors: a per-channel operand is then a
    constant along each contiguous row, which NumPy vectorises about 4x better than a short
    last axis.

    Per-channel constants are [C, 1] columns (`channel_axis=0`) or [C] rows (`channel_axis=-1`,
    for pixel-major [n, C] accumulators such as a batch-1 FULLY_CONNECTED); one value when
    every channel shares it. `apply` is then five to eight array passes.
    """

    scaled: np.ndarray | np.int64  # M << left (double) or M (single rounding)
    offset: np.ndarray | np.int64  # rounding terms, and the zero point when folded
    threshold: np.ndarray | np.int64 | None  # acc below it: the negative correction (double rounding)
    total_shift: np.ndarray | np.int64  # 31 + right (double) or 31 - shift (single)
    zero_point_after: int  # added after the shift when folding it could overflow int64
    lo: int
    hi: int

    @classmethod
    def build(cls, multiplier: np.ndarray | int, shift: np.ndarray | int, zero_point: int, lo: int, hi: int,
              single_rounding: bool, channel_axis: int = 0) -> "Int8Requantizer":
        multiplier = _per_channel(multiplier, channel_axis)
        shift = _per_channel(shift, channel_axis)
        if single_rounding:
            total = 31 - shift
            fold = int(np.max(total)) <= _MAX_FOLDED_SHIFT
            offset = (np.int64(1) << (total - 1)) + ((np.int64(zero_point) << total) if fold else 0)
            return cls(multiplier, offset, None, total, 0 if fold else zero_point, lo, hi)
        left = np.maximum(shift, 0)
        right = np.maximum(-shift, 0)
        fold = int(np.max(31 + right)) <= _MAX_FOLDED_SHIFT
        scaled = multiplier << left
        # negative = acc < threshold: acc <= -1 in general, acc <= -2 when the scaled multiplier
        # is exactly 2**30 (acc = -1 then gives a high product of exactly 0); never when r == 0
        # (no rounding correction) or M == 0 (a flushed multiplier gives 0).
        threshold = np.where(right == 0, np.int64(-(2**62)), np.where(scaled == (1 << 30), -1, 0))
        threshold = np.where(scaled == 0, np.int64(-(2**62)), threshold)
        offset = (np.int64(1) << 30) + (((np.int64(1) << right) >> 1) << 31) + (
            (np.int64(zero_point) << (31 + right)) if fold else 0)
        never = bool(np.all(threshold == -(2**62)))
        return cls(scaled, _compact(offset), None if never else _compact(threshold), _compact(31 + right),
                   0 if fold else zero_point, lo, hi)

    def apply_with_bias(self, acc: np.ndarray, bias: np.ndarray | None, out: np.ndarray) -> np.ndarray:
        """`apply` to acc + bias (int32 per output channel, along acc's last axis), in int64:
        exact whatever the bias (a float accumulator is exact only below 2**24 or 2**53)."""
        acc = acc.astype(np.int64)
        if bias is not None:
            acc += bias
        return self.apply(acc, out)

    def apply(self, acc: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The int8 result of integer-valued `acc` (int64, updated in place, or a float array of
        exact integers, e.g. a BLAS accumulator), written into `out` when given.

        Double rounding, as `fixedpoint.multiply_by_quantized_multiplier`, in fewer passes:
        with P = acc * M * 2**left and r the right shift,
            result = floor((P + 2**30 + h * 2**31 + zp * 2**(31 + r) - n * 2**31) / 2**(31 + r))
        where h = 2**(r-1) and n = 1 when the high product is negative and r > 0 (RDBPOT's
        away-from-zero rounding), using floor(floor(X / a) / b) = floor(X / (a * b)) twice.
        Because M >= 2**30, the high product is negative exactly when acc <= -1 (acc <= -2
        when M == 2**30 and left == 0), so n comes from acc before the multiply. The tests
        check this against the two-step form, the single-rounding branch likewise."""
        # The offset less n * 2**31, chosen per element in one pass (a masked subtraction,
        # `where=`, measured five times slower on small arrays).
        offset = self.offset if self.threshold is None else np.where(
            np.less(acc, self.threshold), self.offset - (np.int64(1) << 31), self.offset)
        if acc.dtype != np.int64:
            acc = acc.astype(np.int64)
        acc *= self.scaled
        acc += offset
        acc >>= self.total_shift
        if self.zero_point_after:
            acc += self.zero_point_after
        np.maximum(acc, self.lo, out=acc)
        np.minimum(acc, self.hi, out=acc)
        if out is None:
            return acc.astype(np.int8)
        np.copyto(out, acc.reshape(out.shape), casting="unsafe")
        return out


def _per_channel(values: np.ndarray | int, channel_axis: int) -> np.ndarray | np.int64:
    """A scalar when every channel shares the value (the fast case), else a column or a row."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    if values.size == 1 or np.all(values == values[0]):
        return np.int64(values[0])
    return values[:, None] if channel_axis == 0 else values


def _compact(values: np.ndarray | np.int64) -> np.ndarray | np.int64:
    """One value when all are equal (a scalar operand is the cheapest broadcast)."""
    values = np.asarray(values)
    if values.size == 1 or np.all(values == values.reshape(-1)[0]):
        return np.int64(values.reshape(-1)[0])
    return values


# The float path below is used only when every channel shifts right by at least this much:
# then fewer than ~3% of values sit close enough to a rounding boundary to need the exact path.
MIN_FAST_RIGHT_SHIFT = 4
# Outputs beyond this magnitude saturate whatever the rounding (|zero point| <= 128).
_SATURATED = 400.0
# Bound on |float32 result - exact real| for |z| <= _SATURATED: two float32 roundings of at
# most 2**-24 relative each (multiplier and product), 400 * 2**-23 < 5e-5, plus the zero
# point addition (ulp of 528 is 2**-14, half of it 3.1e-5); 2**-12 leaves room to spare.
_FLOAT_ERROR = 2.0**-12


def requantize_int8_fast(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray, zero_point: int,
                         lo: int, hi: int) -> np.ndarray | None:
    """Double-rounding requantization of a float32 accumulator of exact integers, computed in
    float32 and corrected exactly where it could be wrong; None when not applicable.

    With z = acc * M * 2**(left - 31 - r), TFLite's two roundings give round-half-away of
    v / 2**r where v = floor(z * 2**r + 1/2), so |v / 2**r - z| <= 2**-(r+1): the result is
    plain round(z) unless z lies within 2**-(r+1) of a half-integer. The float32 estimate y
    is within _FLOAT_ERROR of z (where the output is not saturated), so every value whose
    y is within 2**-(r+1) + _FLOAT_ERROR of a half-integer is recomputed with the exact
    integer arithmetic; the rest are round(y). `requantize_int8` is the exact reference;
    the tests compare the two on random and on adversarial tie-straddling accumulators.
    """
    multiplier = np.asarray(multiplier, dtype=np.int64).reshape(-1)
    shift = np.asarray(shift, dtype=np.int64).reshape(-1)
    right = np.maximum(-shift, 0)
    if acc.dtype != np.float32 or acc.ndim != 2 or int(right.min()) < MIN_FAST_RIGHT_SHIFT or not np.all(multiplier):
        return None
    acc = np.ascontiguousarray(acc)  # flat indices below address C order
    scale = (multiplier.astype(np.float64) * np.exp2((shift - 31).astype(np.float64))).astype(np.float32)
    y = acc * scale.reshape(-1, 1) if scale.size > 1 else acc * scale[0]
    y += np.float32(zero_point)
    q = np.rint(y)
    y -= q  # now the distance to the nearest integer, in [-0.5, 0.5]
    np.abs(y, out=y)
    margin = (0.5 - np.exp2(-(right + 1).astype(np.float64)) - _FLOAT_ERROR).astype(np.float32)
    near = y >= (margin.reshape(-1, 1) if margin.size > 1 else margin[0])
    np.clip(q, lo, hi, out=q)
    out = q.astype(np.int8)
    flat = np.flatnonzero(near)  # flat indices: far cheaper than a 2-D np.nonzero
    if flat.size:
        exact_acc = acc.reshape(-1)[flat].astype(np.int64)
        rows = flat // acc.shape[1]
        m = multiplier[rows] if multiplier.size > 1 else multiplier[0]
        s = shift[rows] if shift.size > 1 else shift[0]
        out.reshape(-1)[flat] = np.clip(multiply_by_quantized_multiplier(exact_acc, m, s) + zero_point, lo, hi)
    return out


def clamp_cast(values: np.ndarray, lo: int, hi: int, dtype: np.dtype) -> np.ndarray:
    return np.clip(values, lo, hi).astype(dtype)


# |x - x_zp| <= 255 and |w| <= 128 for int8 operands, so every product is at most 32640.
_MAX_INT8_PRODUCT = 255 * 128


def exact_float_dtype(terms: int) -> np.dtype:
    """The cheapest float type in which a sum of `terms` int8 products is exact.

    float32 holds every integer up to 2**24, so sums of up to 514 products are exact in it
    (and twice as fast in BLAS); longer sums use float64 (exact up to 2**53).
    """
    return np.dtype(np.float32) if terms * _MAX_INT8_PRODUCT < 2**24 else np.dtype(np.float64)


def add_bias_exactly(acc: np.ndarray, bias: np.ndarray | None, terms: int) -> np.ndarray:
    """acc + bias (per channel, channel-major acc), staying in acc's float type when the sum
    is still an exact integer there, else in int64."""
    if bias is None:
        return acc
    column = bias.reshape(-1, 1)
    limit = 2**24 if acc.dtype == np.float32 else 2**53
    if acc.dtype.kind == "f" and terms * _MAX_INT8_PRODUCT + int(np.abs(bias.astype(np.int64)).max(initial=0)) < limit:
        acc += column.astype(acc.dtype)
        return acc
    acc = acc.astype(np.int64)
    acc += column.astype(np.int64)
    return acc


def exact_int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer matrix product computed with float BLAS, exact by construction.

    Operands are int8 values less a zero point, so every product is at most 32640 in
    magnitude; `exact_float_dtype` picks float32 or float64 so that the sum of `k` of them is
    an integer the float type holds exactly. The result is converted back to int64.
    """
    dtype = exact_float_dtype(a.shape[-1])
    return (a.astype(dtype) @ b.astype(dtype)).astype(np.int64)
