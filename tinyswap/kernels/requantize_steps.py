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
"""

from __future__ import annotations

from dataclasses import dataclass

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
        largest = int(np.max(np.abs(exact.scaled))) * reach + int(np.max(np.abs(exact.offset)))
        if largest >= 2**63 or not claim_buffer_bytes(channels * levels * 8 * 3):
            return None
        targets = np.arange(exact.lo + 1, exact.hi + 1, dtype=np.int64)[:, None]  # [levels, 1]
        first = _first_reaching(exact, targets, channels, reach)
        # The derivation is checked on the exact form itself: each threshold reaches its level
        # and the accumulator one below does not (else the exact passes are kept).
        reached = exact.apply(np.minimum(first, reach)) >= targets
        below = exact.apply(np.maximum(first - 1, -reach)) >= targets
        if not np.all(reached | (first > reach)) or np.any(below & (first > -reach)):
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


__all__ = ["ThresholdRequantizer", "small_requantizer", "output_requantizer", "product_sum_reach",
           "MAX_SEARCHED_VALUES"]
