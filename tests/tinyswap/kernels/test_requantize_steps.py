"""Requantization by threshold search equals TFLite's two-step arithmetic, at every threshold."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyswap.fixedpoint import multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_single_rounding
from tinyswap.kernels.quantized import Int8Requantizer, OutputStage
from tinyswap.kernels.requantize_steps import (
    MAX_SEARCHED_VALUES,
    AffineRequantizer,
    ScaledProduct,
    ThresholdRequantizer,
    frozen_scaled,
    product_sum_reach,
    small_requantizer,
)


def _expected(acc: np.ndarray, bias: np.ndarray | None, m, s, zp, lo, hi, single) -> np.ndarray:
    total = acc.astype(np.int64) + (0 if bias is None else bias.astype(np.int64))
    step = multiply_by_quantized_multiplier_single_rounding if single else multiply_by_quantized_multiplier
    return np.clip(step(total, m, s) + zp, lo, hi).astype(np.int8)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.booleans(), st.integers(-128, 127), st.booleans(),
       st.integers(-31, 1), st.booleans(), st.booleans())
def test_threshold_search_matches_two_step_at_and_around_every_threshold(seed, channels, per_channel, zp, relu,
                                                                          max_shift, single, with_bias) -> None:
    rng = np.random.default_rng(seed)
    n = channels if per_channel else 1
    m = rng.integers(2**30, 2**31, size=n).astype(np.int64)
    m[0] = 2**30 if seed % 3 == 0 else m[0]  # the multiplier whose negative threshold differs
    s = rng.integers(max(-31, max_shift - 12), max_shift + 1, size=n).astype(np.int64)
    lo, hi = (max(-128, zp), 127) if relu else (-128, 127)
    terms = 16
    exact = Int8Requantizer.build(m, s, zp, lo, hi, single, channel_axis=-1)
    searched = ThresholdRequantizer.of(exact, channels, product_sum_reach(terms), 8 * channels)
    if searched is None:  # only a left shift can push the exact form's products past int64
        assert s.max() > 0 or lo == hi  # (or the clamp leaves one output: nothing to search)
        return
    limit = 2**20 if max_shift > 0 else 2**24  # left shifts: keep (acc + bias) << shift within int32
    bias = rng.integers(-limit, limit, size=channels).astype(np.int32) if with_bias else None
    # Every threshold of every channel, one below and one above, less the bias: exactly where
    # an output changes (thresholds out of the accumulator's reach are skipped).
    levels = hi - lo
    thresholds = (searched.thresholds.reshape(channels, levels) - searched.channel_keys[:, None]).astype(np.int64)
    around = np.concatenate([thresholds - 1, thresholds, thresholds + 1], axis=1).T  # [3 * levels, channels]
    around = around - (0 if bias is None else bias.astype(np.int64))
    around = np.where(np.abs(around) < limit, around, 0)
    rows = np.concatenate([around, rng.integers(-limit, limit, size=(40, channels)),
                           np.arange(-5, 6)[:, None] + np.zeros((1, channels), np.int64)])
    acc = rows.astype(np.float32)  # a BLAS accumulator: exact integers in float32
    assert (acc.astype(np.int64) == rows).all()
    out = np.empty(acc.shape, np.int8)
    assert searched.apply_with_bias(acc, bias, out) is out
    np.testing.assert_array_equal(out, _expected(rows, bias, m, s, zp, lo, hi, single))
    # And the exact form it was solved from gives the same bytes.
    np.testing.assert_array_equal(exact.apply_with_bias(acc, bias, np.empty_like(out)), out)


def test_threshold_search_is_used_only_where_it_pays_and_stays_exact() -> None:
    exact = Int8Requantizer.build(np.array([2**30, 1500000000]), np.array([-7, -9]), -3, -128, 127, False,
                                  channel_axis=-1)
    assert isinstance(small_requantizer(exact, 2, 100, 2 * 4), ThresholdRequantizer)
    assert small_requantizer(exact, 2, 100, MAX_SEARCHED_VALUES + 2) is exact  # many values: the passes win
    assert small_requantizer(exact, 2, 100, 0) is exact
    # Keys beyond float64's exact integers (huge sums over many channels): not searched.
    assert ThresholdRequantizer.of(exact, 2, product_sum_reach(2**40), 8) is None
    # A left shift large enough that the exact form would leave int64 over the reach: not searched.
    left = Int8Requantizer.build(np.array([2**30]), np.array([20]), 0, -128, 127, False, channel_axis=-1)
    assert ThresholdRequantizer.of(left, 1, product_sum_reach(100), 8) is None


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(-128, 127), st.booleans(), st.integers(-14, 0),
       st.booleans(), st.booleans(), st.sampled_from([np.float32, np.float64]))
def test_affine_form_matches_two_step_on_every_accumulator_of_its_range(seed, channels, zp, relu, max_shift,
                                                                         single, dyadic, accumulator) -> None:
    # Every accumulator the range holds is enumerated (ranges of up to 2 * 40,000 values), so
    # no threshold, tie or sign boundary can be missed. Dyadic multipliers (a single set bit)
    # put exact ties in reach; 2**30 is the multiplier whose negative threshold differs.
    rng = np.random.default_rng(seed)
    m = (np.full(channels, 2**30, np.int64) if dyadic
         else rng.integers(2**30, 2**31, size=channels).astype(np.int64))
    s = rng.integers(max_shift - 6, max_shift + 1, size=channels).astype(np.int64)
    lo, hi = (max(-128, zp), 127) if relu else (-128, 127)
    exact = Int8Requantizer.build(m, s, zp, lo, hi, single, channel_axis=-1)
    low = -rng.integers(1, 40_000, size=channels)
    high = rng.integers(1, 40_000, size=channels)
    shift = rng.integers(-50_000, 50_000, size=channels)
    # (as many values as a large tensor's, so that float32 is tried for a float32 accumulator)
    affine = AffineRequantizer.of(exact, shift, low, high, np.dtype(accumulator), values=1 << 20)
    assert affine is not None
    if relu:  # below the sign threshold every output is clamped: one offset serves both sides
        assert not affine.kinked
    width = int(np.max(high - low)) + 1
    rows = np.minimum(low[None, :] + np.arange(width)[:, None], high[None, :])  # [width, channels]
    out = np.empty(rows.shape, np.int8)
    affine.apply(rows.astype(accumulator), out)
    np.testing.assert_array_equal(out, _expected(rows + shift, None, m, s, zp, lo, hi, single))


def test_affine_form_refuses_what_it_cannot_check() -> None:
    # An accumulator range whose exact form would pass int64: no affine form, the caller keeps
    # the exact passes.
    exact = Int8Requantizer.build(np.array([2**31 - 1]), np.array([20]), 0, -128, 127, False, channel_axis=-1)
    assert AffineRequantizer.of(exact, np.array([0]), np.array([-(2**40)]), np.array([2**40])) is None


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(-128, 127), st.integers(-128, 127), st.booleans(),
       st.integers(-12, 0), st.booleans(), st.booleans(), st.sampled_from([np.float64, np.float32]))
def test_scaled_product_matches_two_step_on_every_input_pair(seed, channels, in_zp, out_zp, relu, max_shift,
                                                             single, with_bias, dtype) -> None:
    # Two raw int8 inputs per row: all 65,536 rows are enumerated, so every accumulator the
    # weights can produce (thresholds, ties, the sign boundary, both clamps) is checked.
    # Dyadic multipliers (2**30) put exact ties in reach. float32 is mostly refused (its error
    # bound exceeds the margins); where it is taken it must be exact too.
    rng = np.random.default_rng(seed)
    m = rng.integers(2**30, 2**31, size=channels).astype(np.int64)
    m[0] = 2**30
    s = rng.integers(max_shift - 6, max_shift + 1, size=channels).astype(np.int64)
    lo, hi = (max(-128, out_zp), 127) if relu else (-128, 127)
    stage = OutputStage(in_zp, out_zp, tuple(int(v) for v in m), tuple(int(v) for v in s), lo, hi, single)
    weights = rng.integers(-127, 128, size=(channels, 2)).astype(np.int8)
    bias = rng.integers(-20_000, 20_000, size=channels).astype(np.int32) if with_bias else None
    scaled = frozen_scaled(stage, weights, bias, dtype)
    if scaled is None:  # no line meets the thresholds with room for the float error
        assert dtype == np.float32, "float64 always has room on two-term products"
        return
    grid = np.stack(np.meshgrid(np.arange(-128, 128), np.arange(-128, 128)), -1).reshape(-1, 2)
    rows = np.ones((len(grid), 3), scaled.weights.dtype)
    rows[:, :2] = grid
    z = scaled.buffer(len(grid))
    out = np.empty((len(grid), channels), np.int8)
    scaled.apply(rows, z, out)
    acc = (grid.astype(np.int64) - in_zp) @ weights.astype(np.int64).T
    np.testing.assert_array_equal(out, _expected(acc, bias, m, s, out_zp, lo, hi, single))


def test_scaled_product_is_taken_on_relu_and_on_split_layers() -> None:
    # A ReLU layer: one line; a layer without activation (TFLite's second rounding steps at
    # the output zero point): two lines split there. Both checked on every input pair.
    rng = np.random.default_rng(7)
    weights = rng.integers(-127, 128, size=(4, 2)).astype(np.int8)
    m = (1_518_500_250, 1_234_567_890, 2**30, 1_999_999_999)
    for lo, split in ((-5, False), (-128, True)):
        stage = OutputStage(3, -5, m, (-9, -10, -8, -9), lo, 127)
        scaled = frozen_scaled(stage, weights, None)
        assert scaled is not None and scaled.split == split
        grid = np.stack(np.meshgrid(np.arange(-128, 128), np.arange(-128, 128)), -1).reshape(-1, 2)
        rows = np.ones((len(grid), 3))
        rows[:, :2] = grid
        out = np.empty((len(grid), 4), np.int8)
        scaled.apply(rows, scaled.buffer(len(grid)), out)
        acc = (grid.astype(np.int64) - 3) @ weights.astype(np.int64).T
        np.testing.assert_array_equal(out, _expected(acc, None, np.array(m), np.array([-9, -10, -8, -9]), -5, lo,
                                                     127, False))


def test_scaled_product_refuses_a_float_type_whose_error_bound_exceeds_a_margin() -> None:
    # A 144-term layer (a 3x3 convolution of 16 channels): float32's error bound exceeds the
    # smallest threshold margin, so float32 is refused, and rightly: the same table in float32,
    # built by hand past the check, gets outputs wrong on some inputs; float64 is taken and exact.
    rng = np.random.default_rng(3)
    weights = rng.integers(-127, 128, size=(16, 144)).astype(np.int8)
    stage = OutputStage(-3, -128, tuple(int(m) for m in rng.integers(2**30, 2**31, 16)), (-9,) * 16, -128, 127)
    assert frozen_scaled(stage, weights, None, np.float32) is None
    scaled = frozen_scaled(stage, weights, None)
    assert scaled is not None and scaled.weights.dtype == np.float64
    x = rng.integers(-128, 128, size=(200_000, 144))
    rows = np.ones((len(x), 145))
    rows[:, :144] = x
    acc = (x + 3) @ weights.astype(np.int64).T  # the input zero point is -3
    expected = _expected(acc, None, np.array(stage.multipliers), np.array(stage.shifts), -128, -128, 127, False)
    out = np.empty((len(x), 16), np.int8)
    scaled.apply(rows, scaled.buffer(len(x)), out)
    np.testing.assert_array_equal(out, expected)
    unchecked = ScaledProduct(scaled.weights.astype(np.float32), np.float32(-128), np.float32(127), None)
    unchecked.apply(rows.astype(np.float32), np.empty((len(x), 16), np.float32), out)
    assert np.any(out != expected)
