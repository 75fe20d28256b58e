"""Requantization of small accumulators by searching each channel's output thresholds.

Why: on a batch-1 FULLY_CONNECTED or a small convolution, `Int8Requantizer.apply` costs eight
to eleven NumPy passes of about a microsecond each whatever the tensor's size, more than the
matrix product. But requantization to int8 is a non-decreasing function of the accumulator in
each channel (a non-negative multiplier, roundings that preserve order, then a clamp), so it is
fully described by at most 255 thresholds per channel: the smallest accumulator giving each
output above the clamp's low end. Those are solved for once at bind from the formula the exact
form computes (`Int8Requantizer.apply`, so both roundings and both profiles come along) and
checked on it (each threshold reaches its output, the accumulator below does not), and an
invoke is then one `searchsorted` over every channel's thresholds laid end to end (each
channel's keys shifted into a range of its own), a bias add and one subtraction into the
output: four passes. The tests compare it with `Int8Requantizer.apply` at every threshold
and its neighbours, and the kernels with TFLite Micro.

The same checked thresholds make two more forms possible when the weights and bias can never
change (`base.is_immutable`): the bias and the input zero point fold into the search's keys
(`frozen_searched`, three passes), and for more values an affine float form replaces the
integer passes (`AffineRequantizer`, `frozen_affine`): it agrees with the exact form wherever
it agrees at every threshold, because both are non-decreasing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinyswap.kernels.base import claim_buffer_bytes
from tinyswap.kernels.quantized import Int8Requantizer, OutputStage

# Above this many accumulator values per invoke, the passes of `Int8Requantizer.apply` (a few
# nanoseconds per value each) beat a binary search of ~16 steps per value (measured).
MAX_SEARCHED_VALUES = 256
# Thresholds per plan step at most (channels x output levels): bounds the table's memory and
# the time to solve for it at bind.
MAX_THRESHOLDS = 1 << 14
# |x - x_zp| <= 255 and |w| <= 128: an int8 product, and the int32 bias on top of the sum.
_MAX_PRODUCT = 255 * 128
_MAX_BIAS = 2**31
# Keys stay exact integers in float64 below this.
_EXACT_FLOAT64 = 2**52
# The affine form's thresholds per plan step at most (levels x channels: a 1,024-channel layer).
MAX_AFFINE_THRESHOLDS = 1 << 18
# Right shifts (31 + r) the thresholds are solved for in int64; beyond, Python integers.
_INT64_SHIFTS = 54


@dataclass(frozen=True, eq=False)
class ThresholdRequantizer:
    """`Int8Requantizer.apply_with_bias` for a pixel-major [pixels, channels] accumulator of
    `terms`-product sums, by threshold search (see the module docstring)."""

    thresholds: np.ndarray  # float64, channel c's thresholds + c * span, ascending
    channel_keys: np.ndarray  # int64 [channels]: c * span
    base: np.ndarray  # int64 [channels]: c * levels - lo (the search's count less this is the output)

    @classmethod
    def of(cls, exact: Int8Requantizer, channels: int, reach: int, values: int) -> "ThresholdRequantizer | None":
        """The searched form of `exact` (built with `channel_axis=-1` over `channels`, or with
        values every channel shares) for accumulators whose |acc + bias| never exceeds `reach`;
        None where it would not pay (more than MAX_SEARCHED_VALUES values per invoke), would not
        be exact (keys beyond float64's integers, products beyond int64 in the exact form over
        the reach, or thresholds the check refutes), or would take too much of the plan's budget."""
        levels = exact.hi - exact.lo
        span = 2 * reach + 2
        if not 0 < values <= MAX_SEARCHED_VALUES or not 0 < channels * levels <= MAX_THRESHOLDS:
            return None
        if channels * span >= _EXACT_FLOAT64:
            return None
        if not claim_buffer_bytes(channels * levels * 8 * 3):
            return None
        first = checked_thresholds(exact, channels, reach)
        if first is None:
            return None
        keys = np.arange(channels, dtype=np.int64) * span
        thresholds = (first + keys).T.reshape(-1).astype(np.float64)
        base = np.arange(channels, dtype=np.int64) * levels - exact.lo
        return cls(thresholds, keys, base)

    def apply_with_bias(self, acc: np.ndarray, bias: np.ndarray | None, out: np.ndarray) -> np.ndarray:
        """The int8 result of acc + bias written into `out` ([pixels, channels] as acc)."""
        shift = self.channel_keys if bias is None else np.add(bias, self.channel_keys)
        keys = np.add(acc, shift, dtype=np.float64)
        np.subtract(np.searchsorted(self.thresholds, keys, side="right"), self.base,
                    out=out.reshape(keys.shape), casting="unsafe")
        return out


def checked_thresholds(exact: Int8Requantizer, channels: int, reach: int) -> np.ndarray | None:
    """[levels, channels] int64: the smallest accumulator in [-reach, reach + 1] whose output
    reaches each level lo + 1 .. hi (reach + 1: none does), derived by `_first_reaching` and
    checked on the exact form itself: each threshold reaches its level and the accumulator one
    below does not. None when the check fails or the exact form's products would pass int64."""
    largest = int(np.max(np.abs(exact.scaled))) * reach + int(np.max(np.abs(exact.offset)))
    if largest >= 2**63:
        return None
    targets = _levels(exact)
    first = _first_reaching(exact, targets, channels, reach)
    reached = exact.apply(np.minimum(first, reach)) >= targets
    below = exact.apply(np.maximum(first - 1, -reach)) >= targets
    if not np.all(reached | (first > reach)) or np.any(below & (first > -reach)):
        return None
    return first


def _levels(exact: Int8Requantizer) -> np.ndarray:
    """[levels, 1]: the outputs lo + 1 .. hi, each with a threshold."""
    return np.arange(exact.lo + 1, exact.hi + 1, dtype=np.int64)[:, None]


def _first_reaching(exact: Int8Requantizer, targets: np.ndarray, channels: int, reach: int) -> np.ndarray:
    """[levels, channels]: the smallest accumulator a in [-reach, reach + 1] whose output reaches
    each target (reach + 1: none does), from the form `Int8Requantizer.apply` computes,
    floor((a * S + O - n(a) * 2**31) / 2**T) + z with n(a) = [a < threshold]: solved for a on
    each side of the threshold, where a * S + O' >= (v - z) * 2**T is a >= ceil(((v - z) * 2**T - O') / S)."""
    shape = (len(targets), channels)
    # (v - z) * 2**T passes int64 for shifts beyond 54: those are solved on Python ints.
    wide = int(np.max(exact.total_shift)) > 54
    dtype = object if wide else np.int64
    scaled = np.broadcast_to(np.asarray(exact.scaled, np.int64).astype(dtype), (channels,))
    offset = np.broadcast_to(np.asarray(exact.offset, np.int64).astype(dtype), (channels,))
    total = np.broadcast_to(np.asarray(exact.total_shift, np.int64).astype(dtype), (channels,))
    need = (targets.astype(dtype) - exact.zero_point_after) << total  # (v - z) * 2**T, [levels, channels]

    def solve(o: np.ndarray) -> np.ndarray:
        positive = scaled > 0
        a = -((o - need) // np.where(positive, scaled, 1))  # ceil((need - o) / S)
        constant = np.where(o >= need, -reach, reach + 1)  # S == 0: every a, or none
        return np.clip(np.where(positive, a, constant), -reach, reach + 1).astype(np.int64)

    upper = solve(np.broadcast_to(offset, shape))
    if exact.threshold is None:
        return upper
    negative = np.broadcast_to(np.asarray(exact.threshold, np.int64), (channels,))
    lower = solve(np.broadcast_to(offset - (1 << 31), shape))  # where a < threshold
    return np.where(lower < negative, lower, np.maximum(upper, negative))


def _bounded_thresholds(exact: Int8Requantizer, channels: int, reach: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(`checked_thresholds` [levels, channels], each channel's real multiplier M / 2**T,
    exact in float64: M < 2**31, a power of two) for accumulators within `reach`; None where
    they cannot be checked or the bind's work would not be bounded: at most
    MAX_AFFINE_THRESHOLDS thresholds (a few [levels, channels] arrays, freed at once), and
    shifts the int64 solution covers (wider ones, which no converter writes, would take Python
    integers: the exact passes serve those)."""
    if (reach >= _EXACT_FLOAT64 // 4 or channels * (exact.hi - exact.lo) > MAX_AFFINE_THRESHOLDS
            or int(np.max(exact.total_shift)) > _INT64_SHIFTS):
        return None
    first = checked_thresholds(exact, channels, reach)
    if first is None:
        return None
    total = np.broadcast_to(np.asarray(exact.total_shift, np.int64), (channels,))
    return first, np.broadcast_to(np.asarray(exact.scaled, np.float64), (channels,)) / np.exp2(total.astype(np.float64))


@dataclass(frozen=True, eq=False)
class AffineRequantizer:
    """`Int8Requantizer.apply` of `a + shift` for accumulators a known to lie in [low, high]
    per channel (from constant weights that cannot change, `base.is_immutable`) as

        clamp(floor(a * scale + (offset if a >= sign_at else offset_below)), lo, hi)

    in float32 or float64: six passes whatever the tensor's size, four under single rounding
    (the exact integer form takes ten or eleven). TFLite's two roundings collapse to one floor
    of the real product with a fixed offset on each side of the accumulator's sign threshold
    (shift folded in), the negative side's lower by the second rounding's step, 2**-right.

    Why it is exact: the requantization is a non-decreasing step function of a, and so is the
    float form on each side of `sign_at` (a product by a non-negative float, a sum and a floor,
    each rounded as IEEE does, which preserves order). Two such functions agree on a range as
    soon as they agree at each threshold of the exact one and at the value below it, and at the
    two values around `sign_at`. So the thresholds are solved and checked on the exact form
    (`checked_thresholds`), each offset is put in the middle of the interval its side's
    thresholds allow, and the float form is then evaluated, in the type, operations and order
    `apply` uses, at every threshold, the value below it and both sides of `sign_at`. float32
    is tried first for float32 accumulators (half the memory traffic on large tensors). None
    when no offset fits or the check fails (a value exactly on a tie): the caller keeps the
    exact passes."""

    scale: np.ndarray  # [channels]: the real multiplier
    offset: np.ndarray  # for a >= sign_at
    offset_below: np.ndarray  # for a < sign_at
    sign_at: np.ndarray  # the sign threshold of a (the exact form's, less the shift)
    lo: np.floating
    hi: np.floating
    kinked: bool  # whether the two offsets differ anywhere (else one offset, two passes fewer)

    @classmethod
    def of(cls, exact: Int8Requantizer, shift: np.ndarray, low: np.ndarray, high: np.ndarray,
           accumulator: np.dtype = np.dtype(np.float64), values: int = 0) -> "AffineRequantizer | None":
        """For `accumulator`-typed accumulators a with low <= a <= high in each channel (int64
        [channels]) whose output is `exact` applied to a + shift (`exact` built with
        `channel_axis=-1`); `values`: accumulator values per invoke."""
        channels = len(low)
        reach = int(np.max(np.maximum(np.abs(low + shift), np.abs(high + shift)))) + 1
        solved = _bounded_thresholds(exact, channels, reach)
        if solved is None:
            return None
        first, scale = solved
        total = np.broadcast_to(np.asarray(exact.total_shift, np.int64), (channels,))
        if exact.threshold is None:
            step = np.zeros(channels)
            threshold = np.zeros(channels, np.int64)
        else:
            threshold = np.broadcast_to(np.asarray(exact.threshold, np.int64), (channels,))
            never = threshold <= -(2**61)
            step = np.where(never, 0.0, np.exp2((31 - total).astype(np.float64)))
            threshold = np.where(never, 0, threshold)
        sign_at = threshold - shift
        levels = _levels(exact)
        at = np.clip(first - shift, low, high + 1)  # thresholds of a, in range
        # The points to check, with the level each must reach (or stay below): every threshold
        # and the value below it, and both sides of the sign threshold where in range.
        side = np.clip(np.stack([sign_at - 1, sign_at]), low, high)
        # float32 halves the passes' memory traffic, which matters only on large tensors; it
        # fits less often (its rounding must stay within every threshold's slack), so it is
        # tried only there.
        wide = accumulator == np.float32 and values >= AFFINE_BLOCK_VALUES
        for dtype in ((np.float32, np.float64) if wide else (np.float64,)):
            if reach >= 2 ** (np.finfo(dtype).nmant + 1):
                continue
            found = _fit_offsets(exact, dtype, scale, step, sign_at, shift, levels, at, low, high, side)
            if found is not None:
                offset, offset_below = found
                return cls(scale.astype(dtype), offset, offset_below, sign_at.astype(dtype), dtype(exact.lo),
                           dtype(exact.hi), bool(np.any(offset != offset_below)))
        return None

    def along(self, shape: tuple[int, ...]) -> "AffineRequantizer":
        """The same constants shaped for another accumulator layout (e.g. channel-major [C, 1])."""
        return AffineRequantizer(*(v.reshape(shape) for v in (self.scale, self.offset, self.offset_below,
                                                               self.sign_at)),
                                 self.lo, self.hi, self.kinked)

    def apply(self, acc: np.ndarray, out: np.ndarray) -> None:
        """int8 results of float `acc` (exact integers) into `out` (any view of acc's shape)."""
        z = acc * self.scale
        z += np.where(acc >= self.sign_at, self.offset, self.offset_below) if self.kinked else self.offset
        z.clip(self.lo, self.hi, out=z)  # (the method: np.clip's wrapper costs more than two ufunc calls)
        np.floor(z, out=out, casting="unsafe")


def _fit_offsets(exact: Int8Requantizer, dtype: type, scale: np.ndarray, step: np.ndarray, sign_at: np.ndarray,
                 shift: np.ndarray, levels: np.ndarray, at: np.ndarray, low: np.ndarray, high: np.ndarray,
                 side: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(offset, offset_below) in `dtype` that make the float form agree with `exact` (applied
    to a + shift) at every threshold `at` [levels, channels] (of levels lo + 1 .. hi), the value
    below it, and the two values `side` [2, channels] around `sign_at`; None if there are none."""
    scale_t = scale.astype(dtype)

    def product(a: np.ndarray) -> np.ndarray:  # as `apply` computes it
        return a.astype(dtype) * scale_t

    must_reach = at <= high
    must_not = at - 1 >= low
    bounds = []
    for upper in (True, False):  # a >= sign_at, then a < sign_at
        reach_here = must_reach & ((at >= sign_at) == upper)
        below_here = must_not & ((at - 1 >= sign_at) == upper)
        least = np.max(np.where(reach_here, levels - product(at).astype(np.float64), -np.inf), axis=0, initial=-np.inf)
        below = np.min(np.where(below_here, levels - product(at - 1).astype(np.float64), np.inf), axis=0,
                       initial=np.inf)
        if not np.all(least < below):
            return None
        bounds.append((least, below))
    # Where one offset satisfies both sides (their intervals meet: a ReLU layer, whose outputs
    # below the sign threshold are all clamped, always does), both sides take it: the form
    # then needs no `where` between two offsets (`kinked` False), the costliest of its passes.
    (least_up, below_up), (least_down, below_down) = bounds
    shared_least, shared_below = np.maximum(least_up, least_down), np.minimum(below_up, below_down)
    shared = shared_least < shared_below
    offset, offset_below = (_middle(np.where(shared, shared_least, least), np.where(shared, shared_below, below))
                            for least, below in bounds)
    # A side with no constraint at all: the other side's offset less (or plus) the step.
    offset = np.where(np.isnan(offset), offset_below + step, offset)
    offset_below = np.where(np.isnan(offset_below), offset - step, offset_below)
    offset = np.where(np.isnan(offset), 0.0, offset).astype(dtype)
    offset_below = np.where(np.isnan(offset_below), 0.0, offset_below).astype(dtype)

    def computed(a: np.ndarray) -> np.ndarray:  # floor of the float form, exactly as `apply`
        z = product(a)
        z += np.where(a >= sign_at, offset, offset_below)
        return np.floor(z)

    reached = computed(at) >= levels
    passed = computed(at - 1) >= levels
    if not np.all(reached | ~must_reach) or np.any(passed & must_not):
        return None
    # Each side is non-decreasing on its own: its ends at the sign threshold are checked
    # against the exact form too (a level whose threshold lies on the other side).
    got = np.clip(computed(side), exact.lo, exact.hi)
    if not np.array_equal(got, exact.apply(side + shift)):
        return None
    return offset, offset_below


def _middle(least: np.ndarray, below: np.ndarray) -> np.ndarray:
    """A point inside each interval [least, below) (ends may be infinite: half a unit inside
    the finite one; NaN where both are)."""
    with np.errstate(invalid="ignore"):  # inf - inf where a side has no constraint
        return np.where(np.isfinite(least) & np.isfinite(below), (least + below) / 2,
                        np.where(np.isfinite(least), least + 0.5, np.where(np.isfinite(below), below - 0.5, np.nan)))


Finish = Callable[[np.ndarray, np.ndarray], object]


@dataclass(frozen=True)
class _FrozenTerms:
    """What a product of raw int8 inputs with constant weights [channels, terms] needs: the
    exact requantization, the integer added to each channel's raw accumulator (bias less the
    input zero point times the weights' sum) and the raw accumulator's range."""

    exact: Int8Requantizer
    shift: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, stage: OutputStage, weights: np.ndarray, bias: np.ndarray | None) -> "_FrozenTerms":
        w = weights.astype(np.int64)
        shift = -stage.input_zero_point * w.sum(axis=1)
        if bias is not None:
            shift = shift + bias.astype(np.int64)
        exact = Int8Requantizer.build(stage.multipliers, stage.shifts, stage.output_zero_point, stage.act_min,
                                      stage.act_max, stage.single_rounding, channel_axis=-1)
        return cls(exact, shift, np.minimum(w * -128, w * 127).sum(axis=1), np.maximum(w * -128, w * 127).sum(axis=1))


def frozen_affine(stage: OutputStage, weights: np.ndarray, bias: np.ndarray | None,
                  accumulator: np.dtype, values: int = 0) -> AffineRequantizer | None:
    """The affine output stage of a product of raw int8 inputs (not less their zero point;
    padding may hold the zero point) with `weights` [channels, terms] and `bias` that can never
    change, both folded in, for `accumulator`-typed sums; None when it is not exact (see
    `AffineRequantizer`)."""
    terms = _FrozenTerms.of(stage, weights, bias)
    return AffineRequantizer.of(terms.exact, terms.shift, terms.low, terms.high, accumulator, values)


def frozen_searched(stage: OutputStage, weights: np.ndarray, bias: np.ndarray | None, pixels: int) -> Finish | None:
    """As `frozen_affine` for a few values (at most MAX_SEARCHED_VALUES): by searched
    thresholds, three passes, as a function writing the int8 result of a pixel-major
    [pixels, channels] accumulator into `out`; None when there are more values or the
    thresholds cannot be checked."""
    channels = len(weights)
    if not 0 < pixels * channels <= MAX_SEARCHED_VALUES:  # (before any work: most layers have more)
        return None
    terms = _FrozenTerms.of(stage, weights, bias)
    reach = int(np.max(np.maximum(np.abs(terms.low + terms.shift), np.abs(terms.high + terms.shift))))
    searched = ThresholdRequantizer.of(terms.exact, channels, reach, pixels * channels)
    if searched is None:
        return None
    shifted = ThresholdRequantizer(searched.thresholds, searched.channel_keys + terms.shift, searched.base)
    return lambda acc, out: shifted.apply_with_bias(acc, None, out)


@dataclass(frozen=True, eq=False)
class ScaledProduct:
    """The affine output stage folded into the product itself: rows of raw int8 inputs with a
    1 appended, times `weights` [terms + 1, channels] = (w * scale, then each channel's
    offset), give z with floor(clamp(z, lo, hi)) = the exact int8 output. Three passes per
    invoke (product, clamp, floor) and the rows' copy, against the affine form's product and
    four to six; and pixel-major, so a convolution's output is written in place, NHWC.

    Why it is exact: on each channel the exact requantization is a non-decreasing step
    function of the raw accumulator a with thresholds t_v (the first a reaching output v),
    solved and checked on the exact form (`checked_thresholds`). A real line
    R(a) = a * s + offset (s = the multiplier's exact value M / 2**T) meets every threshold
    with a margin d: R(t_v) >= v + d and R(t_v - 1) <= v - d, where such an offset exists.
    R is increasing, so every a in range keeps that distance from the level boundaries it
    must not cross. The float product differs from R(a) by at most
    B = gamma(n) * (128 * sum|w| * s + |offset|) plus the weights' and offset's own rounding
    (the classical bound for a dot product of n = terms + 1 terms in any summation order,
    gamma(n) = n*u / (1 - n*u), |raw input| <= 128), whatever BLAS does. The form is taken only
    where B < d on every channel, with the margins computed in float64 less their own rounding
    error.

    One line fits where one offset serves both sides of the sign threshold (a ReLU layer
    always). Where TFLite's second rounding puts a step at the output zero point zp (no
    activation), each side is still one line, so the output is split there: max(out, zp) from
    one line clamped to [zp, hi], min(out, zp) - zp from another clamped to [lo - zp, 0], both
    in the same product (`split`: 2 x channels columns), added. Split products are computed
    channel-major ([2 x channels, pixels]) so that each half's clamp is one contiguous pass
    with scalar bounds (per-column bounds on a short channel axis measured 4-8x slower)."""

    weights: np.ndarray  # [terms + 1, channels], or [terms + 1, 2 * channels] when split
    lo: np.floating  # the clamp (split: the upper line's is [split_at, hi], the lower's [lo - split_at, 0])
    hi: np.floating
    split_at: np.floating | None  # the output zero point where the output is split, else None

    @property
    def split(self) -> bool:
        return self.split_at is not None

    @property
    def channels(self) -> int:
        return self.weights.shape[1] // 2 if self.split else self.weights.shape[1]

    @property
    def products(self) -> int:
        """Columns of the product."""
        return self.weights.shape[1]

    def blocks(self, pixels: int) -> list[tuple[slice, np.ndarray]]:
        """Blocks of `pixels` rows whose products stay in cache, each with its product buffer
        (blocks of one length share one)."""
        buffers: dict[int, np.ndarray] = {}
        return [(block, buffers.setdefault(block.stop - block.start, self.buffer(block.stop - block.start)))
                for block in column_blocks(pixels, self.products)]

    def buffer(self, pixels: int) -> np.ndarray:
        """The product buffer `apply` needs for `pixels` rows."""
        shape = (self.weights.shape[1], pixels) if self.split else (pixels, self.weights.shape[1])
        return np.empty(shape, self.weights.dtype)

    def apply(self, rows: np.ndarray, z: np.ndarray, out: np.ndarray) -> None:
        """`rows` [pixels, terms + 1] (last column 1) -> int8 `out` [pixels, channels], via
        `z` (`buffer(pixels)`)."""
        # (np.dot: the same BLAS product as np.matmul for 2-D operands, measured 0.7 us less per call)
        if self.split_at is None:
            np.dot(rows, self.weights, out=z)
            z.clip(self.lo, self.hi, out=z)
            np.floor(z, out=out, casting="unsafe")
            return
        np.dot(self.weights.T, rows.T, out=z)
        half = self.channels
        upper, lower = z[:half], z[half:]
        upper.clip(self.split_at, self.hi, out=upper)
        lower.clip(self.lo - self.split_at, 0, out=lower)
        np.floor(z, out=z)
        np.add(upper, lower, out=out.T, casting="unsafe")


def _gamma(n: int, unit: float) -> float:
    """The dot-product error factor n * u / (1 - n * u) (Higham, Accuracy and Stability of
    Numerical Algorithms, 2nd ed., section 3.1)."""
    return n * unit / (1 - n * unit)


_UNIT64 = float(np.finfo(np.float64).eps) / 2


@dataclass(frozen=True)
class _Lines:
    """What fitting lines R(a) = a * scale + offset to an exact form's checked thresholds needs."""

    scale: np.ndarray  # [channels], exact
    levels: np.ndarray  # [levels, 1] float64
    at_real: np.ndarray  # [levels, channels]: t_v * scale
    below_real: np.ndarray  # (t_v - 1) * scale
    must_reach: np.ndarray
    must_not: np.ndarray
    slack: np.ndarray  # [channels]: the rounding error of a bound computed from these

    def fit(self, selected: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(offset, margin) per channel of the line meeting the `selected` levels' thresholds
        ([levels, 1] bool) with the largest margin; None where there is none."""
        least = np.max(np.where(self.must_reach & selected, self.levels - self.at_real, -np.inf), axis=0,
                       initial=-np.inf)
        below = np.min(np.where(self.must_not & selected, self.levels - self.below_real, np.inf), axis=0,
                       initial=np.inf)
        if not np.all(least + self.slack < below - self.slack):
            return None
        offset = np.nan_to_num(_middle(least, below), nan=0.0)
        margin = np.minimum(offset - least, below - offset) - 2 * self.slack - 4 * _UNIT64 * np.abs(offset)
        return offset, margin


def frozen_scaled(stage: OutputStage, weights: np.ndarray, bias: np.ndarray | None,
                  dtype: type = np.float64) -> ScaledProduct | None:
    """The `ScaledProduct` of a product of raw int8 inputs with `weights` [channels, terms] and
    `bias` that can never change, in `dtype`; None where it would not be exact.

    float64 only, in practice: a line's smallest margin over C channels x 255 levels is about
    s / (2 * 255 * C) (each threshold's is spread over [0, s / 2]), while float32's error bound
    is about 2**-24 * terms * 128 * sum|w| * s: hundreds of times larger on any real layer
    (none of the benchmark models' layers fits)."""
    channels, n_terms = weights.shape
    terms = _FrozenTerms.of(stage, weights, bias)
    exact = terms.exact
    reach = int(np.max(np.maximum(np.abs(terms.low + terms.shift), np.abs(terms.high + terms.shift)))) + 1
    solved = _bounded_thresholds(exact, channels, reach)
    if solved is None:
        return None
    first, scale = solved  # each w * scale is exact too (7 + 31 bits)
    at = np.clip(first - terms.shift, terms.low, terms.high + 1)
    at_real, below_real = at * scale, (at - 1) * scale  # each within u of a * s
    # Each bound v - a * s is then within 4u(|a s| + |v|) of its real value (|v| <= 128).
    slack = 4 * _UNIT64 * (np.max(np.abs(at_real), axis=0, initial=0.0) + np.max(np.abs(below_real), axis=0,
                                                                                initial=0.0) + 256)
    levels = _levels(exact)
    lines = _Lines(scale, levels.astype(np.float64), at_real, below_real, at <= terms.high, at - 1 >= terms.low,
                   slack)
    scaled_weights = weights.astype(np.float64) * scale[:, None]  # exact (see above)
    reach_real = 128 * np.abs(scaled_weights).sum(axis=1)
    zp, lo, hi = stage.output_zero_point, exact.lo, exact.hi
    single = lines.fit(np.ones(levels.shape, bool))
    if single is not None:
        offsets, margin = single
        split = False
    else:
        if not lo < zp < hi:
            return None
        upper = lines.fit(levels > zp)
        lower = lines.fit(levels <= zp)
        if upper is None or lower is None:
            return None
        offsets = np.concatenate([upper[0], lower[0] - zp])  # the lower line gives min(out, zp) - zp
        margin = np.concatenate([upper[1], lower[1]])
        scaled_weights = np.concatenate([scaled_weights, scaled_weights])
        reach_real = np.concatenate([reach_real, reach_real])
        split = True
    unit = float(np.finfo(dtype).eps) / 2
    gamma = _gamma(n_terms + 1, unit)
    # the sum's rounding, then the weights' and the offset's own rounding into dtype
    bound = gamma * (reach_real + np.abs(offsets)) * (1 + unit) + unit * (reach_real + np.abs(offsets))
    if not np.all(bound < margin):
        return None
    table = np.concatenate([scaled_weights.T, offsets[None, :]]).astype(dtype)
    return ScaledProduct(table, dtype(lo), dtype(hi), dtype(zp) if split else None)


# The affine output stage's passes each read and write the whole accumulator: past the cache
# they run at memory speed. Large products are therefore done in column blocks of about this
# many accumulator values (float64: 128 KB), which stay in cache from product to output.
AFFINE_BLOCK_VALUES = 1 << 14


def column_blocks(columns: int, rows: int) -> list[slice]:
    """Slices of `columns` (pixels) such that rows x block stays near AFFINE_BLOCK_VALUES."""
    width = max(1, AFFINE_BLOCK_VALUES // max(rows, 1))
    return [slice(start, min(start + width, columns)) for start in range(0, columns, width)]


def product_sum_reach(terms: int) -> int:
    """The largest |sum of `terms` int8 products + an int32 bias|."""
    return terms * _MAX_PRODUCT + _MAX_BIAS


def small_requantizer(exact: Int8Requantizer, channels: int, terms: int,
                      values: int) -> Int8Requantizer | ThresholdRequantizer:
    """The cheaper of the two for `values` accumulator values of `terms`-product sums per invoke."""
    return ThresholdRequantizer.of(exact, channels, product_sum_reach(terms), values) or exact


def output_requantizer(stage: OutputStage, terms: int, pixels: int) -> Int8Requantizer | ThresholdRequantizer:
    """The output stage's requantization for pixel-major [pixels, channels] accumulators of
    `terms`-product sums: by threshold search when they are few (`requantize_steps`)."""
    exact = Int8Requantizer.build(stage.multipliers, stage.shifts, stage.output_zero_point, stage.act_min,
                                  stage.act_max, stage.single_rounding, channel_axis=-1)
    channels = len(stage.multipliers)
    return small_requantizer(exact, channels, terms, pixels * channels)


__all__ = ["AFFINE_BLOCK_VALUES", "AffineRequantizer", "ScaledProduct", "frozen_scaled",
           "column_blocks", "ThresholdRequantizer", "checked_thresholds", "frozen_affine", "frozen_searched",
           "small_requantizer", "output_requantizer", "product_sum_reach", "MAX_SEARCHED_VALUES"]
