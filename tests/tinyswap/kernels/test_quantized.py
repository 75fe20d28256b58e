"""The fused int8 requantization equals the two-step TFLite arithmetic it replaces."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyswap.fixedpoint import multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_single_rounding
from tinyswap.kernels.base import INT8, FusedActivation
from tinyswap.kernels.quantized import activation_range, requantize_int8


@settings(max_examples=300)
@given(st.integers(0, 2**32 - 1), st.integers(1, 8), st.booleans(), st.integers(-128, 127), st.booleans(),
       st.integers(-31, 0), st.booleans())
def test_requantize_int8_matches_two_step(seed, channels, per_channel, zp, relu, max_shift, single) -> None:
    rng = np.random.default_rng(seed)
    acc = rng.integers(-(2**24), 2**24, size=(channels, 50)).astype(np.int64)  # channel-major
    acc[:, :11] = np.arange(-5, 6)  # small accumulators: where rounding corrections start
    n = channels if per_channel else 1
    m = rng.integers(2**30, 2**31, size=n).astype(np.int64)
    s = rng.integers(max(-31, max_shift - 12), max_shift + 1, size=n).astype(np.int64)  # TFLite: shift >= -31
    lo, hi = (max(-128, zp), 127) if relu else (-128, 127)
    step = multiply_by_quantized_multiplier_single_rounding if single else multiply_by_quantized_multiplier
    expected = np.clip(step(acc, m[:, None], s[:, None]) + zp, lo, hi).astype(np.int8)
    got = requantize_int8(acc.copy(), m, s, zp, lo, hi, single)
    np.testing.assert_array_equal(got, expected)


def test_activation_range_relu6_hand_golden() -> None:
    # scale 0.05, zp -10: 0 -> -10; 6 / 0.05 = 120 -> 110.
    assert activation_range(FusedActivation.RELU6, 0.05, -10, INT8) == (-10, 110)


def test_requantize_int8_edge_multipliers_and_left_shifts() -> None:
    # M == 2**30 (the smallest normalised multiplier: acc = -1 has a non-negative high
    # product), M == 0 (flushed), left shifts, and accumulators at every small value.
    acc = np.concatenate([np.arange(-300, 301), np.arange(-70000, 70001, 7)]).astype(np.int64)[None, :].repeat(5, axis=0)
    m = np.array([2**30, 0, 2**30 + 1, 2**31 - 1, 1518500250], np.int64)
    for s in ([-1, -1, -1, -1, -1], [0, -3, -5, -9, -31], [2, 0, 1, -2, 3]):
        shifts = np.array(s, np.int64)
        for zp, single in ((0, False), (-17, False), (5, True)):
            step = multiply_by_quantized_multiplier_single_rounding if single else multiply_by_quantized_multiplier
            if single and np.any(m == 0):
                continue
            expected = np.clip(step(acc, m[:, None], shifts[:, None]) + zp, -128, 127).astype(np.int8)
            np.testing.assert_array_equal(requantize_int8(acc.copy(), m, shifts, zp, -128, 127, single), expected)


from tinyswap.kernels.quantized import requantize_int8_fast  # noqa: E402


@settings(max_examples=300)
@given(st.integers(0, 2**32 - 1), st.integers(1, 8), st.booleans(), st.integers(-128, 127), st.booleans(),
       st.integers(-14, -4), st.booleans())
def test_fast_float_requantization_is_exact(seed, channels, per_channel, zp, relu, max_shift, adversarial) -> None:
    rng = np.random.default_rng(seed)
    n = channels if per_channel else 1
    m = rng.integers(2**30, 2**31, size=n).astype(np.int64)
    s = rng.integers(max(-31, max_shift - 6), max_shift + 1, size=n).astype(np.int64)
    if adversarial:
        # Accumulators whose exact real result is within a hair of a half-integer: solve
        # acc = (k + 1/2) / (M * 2**(s - 31)) and take the integers around it.
        scale = (m * np.exp2(s.astype(float) - 31)).reshape(-1, 1) * np.ones((channels, 1)) if n == 1 else (
            m * np.exp2(s.astype(float) - 31)).reshape(-1, 1)
        k = rng.integers(-300, 300, size=(channels, 40)) + 0.5
        centre = np.round(k / scale)
        acc = (centre + rng.integers(-2, 3, size=centre.shape)).astype(np.float64)
    else:
        acc = rng.integers(-(2**23), 2**23, size=(channels, 60)).astype(np.float64)
    acc = np.clip(acc, -(2**24) + 1, 2**24 - 1).astype(np.float32)
    lo, hi = (max(-128, zp), 127) if relu else (-128, 127)
    exact = requantize_int8(acc.astype(np.int64), m, s, zp, lo, hi, False)
    fast = requantize_int8_fast(acc, m, s, zp, lo, hi)
    assert fast is not None
    np.testing.assert_array_equal(fast, exact)


def test_fast_requantization_declines_small_shifts() -> None:
    acc = np.zeros((2, 3), np.float32)
    assert requantize_int8_fast(acc, np.array([2**30, 2**30]), np.array([-3, -9]), 0, -128, 127) is None


def test_fast_requantization_of_a_transposed_accumulator() -> None:
    # Regression: an F-ordered (transposed) accumulator once had its exact fix-ups written
    # into a temporary copy. Adversarial near-tie values force fix-ups.
    rng = np.random.default_rng(3)
    m, s = np.array([1518500250, 2**30 + 12345], np.int64), np.array([-7, -9], np.int64)
    scale = (m * np.exp2(s.astype(float) - 31)).reshape(-1, 1)
    acc = np.round((rng.integers(-200, 200, size=(2, 300)) + 0.5) / scale) + rng.integers(-1, 2, size=(2, 300))
    acc_t = np.ascontiguousarray(acc.T).astype(np.float32).T  # F-ordered [2, 300]
    exact = requantize_int8(acc_t.astype(np.int64), m, s, 4, -128, 127, False)
    np.testing.assert_array_equal(requantize_int8_fast(acc_t, m, s, 4, -128, 127), exact)


def test_an_int8_lookup_is_the_function_at_every_value_and_layout() -> None:
    from tinyswap.kernels.quantized import Int8Lookup

    lookup = Int8Lookup.of(lambda v: np.clip(v.astype(np.int64) * 3 - 7, -128, 127))
    x = np.arange(-128, 128, dtype=np.int8).reshape(16, 16)
    want = np.clip(x.astype(np.int64) * 3 - 7, -128, 127)
    got = lookup.apply(x)
    assert got.dtype == np.int8 and got.shape == x.shape and (got == want).all()
    assert (lookup.apply(x.T) == want.T).all() and (lookup.apply(x[::3, 1::2]) == want[::3, 1::2]).all()
    assert Int8Lookup.of(lambda v: np.clip(v.astype(np.int64) * 3 - 7, -128, 127)) == lookup  # by value
    with pytest.raises(ValueError, match="256 results within"):
        Int8Lookup.of(lambda v: v.astype(np.int64) * 2)


@settings(max_examples=200)
@given(st.integers(0, 2**32 - 1), st.integers(1, 8), st.booleans(), st.integers(-128, 127), st.booleans(),
       st.integers(-31, 2), st.booleans())
def test_pixel_major_requantizer_matches_two_step(seed, channels, per_channel, zp, relu, max_shift, single) -> None:
    # The bound steps requantize [pixels, channels] accumulators with per-channel rows, float or int64.
    from tinyswap.kernels.quantized import Int8Requantizer

    rng = np.random.default_rng(seed)
    acc = rng.integers(-(2**24), 2**24, size=(40, channels)).astype(np.int64)
    acc[:11] = np.arange(-5, 6)[:, None]
    n = channels if per_channel else 1
    m = rng.integers(2**30, 2**31, size=n).astype(np.int64)
    s = rng.integers(max(-31, max_shift - 12), max_shift + 1, size=n).astype(np.int64)
    if max_shift > 0:
        acc //= 1 << 8  # left shifts: keep acc << shift within int32, as TFLite requires
    lo, hi = (max(-128, zp), 127) if relu else (-128, 127)
    step = multiply_by_quantized_multiplier_single_rounding if single else multiply_by_quantized_multiplier
    expected = np.clip(step(acc, m, s) + zp, lo, hi).astype(np.int8)
    requantizer = Int8Requantizer.build(m, s, zp, lo, hi, single, channel_axis=-1)
    out = np.empty_like(expected)
    assert requantizer.apply(acc.astype(np.float64), out) is out
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(requantizer.apply(acc.copy()), expected)


def test_a_pair_lookup_is_the_function_at_every_pair_and_broadcasts() -> None:
    from tinyswap.kernels.add import AddParams, additive_eval
    from tinyswap.kernels.mul import MulParams, multiply_int8
    from tinyswap.kernels.quantized import Int8PairLookup

    a = np.arange(-128, 128, dtype=np.int8).repeat(256)
    b = np.tile(np.arange(-128, 128, dtype=np.int8), 256)
    add = AddParams(3, -7, 5, 1500000000, -1, 1200000000, -2, 1300000000, -18, -128, 127)
    mul = MulParams(3, -7, 5, 1500000000, -9, -20, 100)
    def multiply_table():
        return Int8PairLookup.of(lambda u, v: multiply_int8(mul, u, v))

    for sign in (1, -1):
        table = Int8PairLookup.of(lambda u, v: additive_eval(add, u, v, sign))
        np.testing.assert_array_equal(table.apply(a, b), additive_eval(add, a, b, sign))
    np.testing.assert_array_equal(multiply_table().apply(a, b), multiply_int8(mul, a, b))
    # The bound step broadcasts like the kernel: a [2, 3, 4] tensor against a [4] row.
    x = np.random.default_rng(0).integers(-128, 128, (2, 3, 4)).astype(np.int8)
    y = np.random.default_rng(1).integers(-128, 128, (4,)).astype(np.int8)
    out = np.empty((2, 3, 4), np.int8)
    multiply_table().step(x, y, out)()
    np.testing.assert_array_equal(out, multiply_int8(mul, x, y))


def test_a_plan_builds_a_bounded_number_of_new_pair_tables_and_shares_equal_ones() -> None:
    from tinyswap.kernels.mul import MulParams, multiply_int8
    from tinyswap.kernels.base import PlanBudget, plan_budget
    from tinyswap.kernels.quantized import pair_table

    def fn(p):
        return lambda u, v: multiply_int8(p, u, v)

    params = [MulParams(0, 0, z, 1500000000, -9, -128, 127) for z in range(-50, -44)]
    with plan_budget(PlanBudget(new_pair_tables=3)):
        built = [pair_table(p, fn(p)) for p in params]
        assert [t is not None for t in built] == [True, True, True, False, False, False]
        assert pair_table(params[0], fn(params[0])) is built[0]  # shared: no budget spent
    assert pair_table(params[5], fn(params[5])) is not None  # outside a plan: no bound
