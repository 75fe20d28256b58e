"""Fixed-point primitives against line-by-line Python transcriptions of the C/C++ code."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyswap import fixedpoint as fp

INT32 = st.integers(-(2**31), 2**31 - 1)


def c_trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def py_srdhm(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul, transcribed with Python ints."""
    if a == b == -(2**31):
        return 2**31 - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else (1 - (1 << 30))
    return c_trunc_div(ab + nudge, 1 << 31)


def py_rdbpot(x: int, e: int) -> int:
    """gemmlowp RoundingDivideByPOT with int32 two's-complement bit operations."""
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if remainder > threshold else 0)


def py_mbqm(x: int, m: int, shift: int) -> int:
    left = max(shift, 0)
    right = max(-shift, 0)
    return py_rdbpot(py_srdhm(x * (1 << left), m), right)


@given(INT32, INT32)
def test_srdhm_matches_the_c_definition(a: int, b: int) -> None:
    assert int(fp.saturating_rounding_doubling_high_mul(a, b)) == py_srdhm(a, b)


@given(st.lists(st.tuples(INT32, INT32), min_size=1, max_size=50))
def test_srdhm_vectorised(pairs) -> None:
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    np.testing.assert_array_equal(fp.saturating_rounding_doubling_high_mul(a, b), [py_srdhm(*p) for p in pairs])


@given(INT32, st.integers(0, 31))
def test_rounding_divide_by_pot(x: int, e: int) -> None:
    assert int(fp.rounding_divide_by_pot(x, e)) == py_rdbpot(x, e)


@given(st.lists(st.tuples(INT32, st.integers(0, 31)), min_size=1, max_size=50))
def test_rounding_divide_by_pot_per_channel(pairs) -> None:
    x = np.array([p[0] for p in pairs])
    e = np.array([p[1] for p in pairs])
    np.testing.assert_array_equal(fp.rounding_divide_by_pot(x, e), [py_rdbpot(*p) for p in pairs])


@given(st.integers(-(2**20), 2**20), st.integers(2**30, 2**31 - 1), st.integers(-31, 10))
def test_multiply_by_quantized_multiplier(x: int, m: int, shift: int) -> None:
    if abs(x * (1 << max(shift, 0))) >= 2**31:
        return  # outside the C function's contract (int32 overflow before the multiply)
    assert int(fp.multiply_by_quantized_multiplier(x, m, shift)) == py_mbqm(x, m, shift)


@given(st.integers(-(2**24), 2**24), st.integers(2**30, 2**31 - 1), st.integers(-31, 10))
def test_single_rounding(x: int, m: int, shift: int) -> None:
    total = 31 - shift
    expected = (x * m + (1 << (total - 1))) >> total
    assert int(fp.multiply_by_quantized_multiplier_single_rounding(x, m, shift)) == expected


def py_quantize_multiplier(d: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier via exact rationals: frexp, round half away, renormalise."""
    if d == 0:
        return 0, 0
    q, shift = math.frexp(d)
    scaled = q * 2**31
    q_fixed = int(math.floor(abs(scaled) + 0.5)) * (1 if scaled >= 0 else -1)
    if q_fixed == 2**31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


@given(st.floats(1e-12, 1e6, allow_nan=False, allow_infinity=False))
def test_quantize_multiplier(d: float) -> None:
    m, s = fp.quantize_multiplier(d)
    assert (m, s) == py_quantize_multiplier(d)
    if m:
        assert 2**30 <= m < 2**31
        assert abs(m * 2.0 ** (s - 31) - d) <= d * 2**-30


def test_quantize_multiplier_rounds_half_away_from_zero() -> None:
    # q = 0.5 + 2**-32 sits exactly half-way between two Q31 values: C's std::round goes up,
    # Python's round() (banker's) would go to the even neighbour.
    d = 0.5 + 2.0**-32
    m, s = fp.quantize_multiplier(d)
    assert (m, s) == (2**30 + 1, 0)


# --- gemmlowp fixed-point transcendental helpers used by SOFTMAX ---------------------------


def py_sat_pot(x: int, e: int) -> int:
    if e == 0:
        return x
    if e < 0:
        return py_rdbpot(x, -e)
    threshold = (1 << (31 - e)) - 1
    if x > threshold:
        return 2**31 - 1
    if x < -threshold:
        return -(2**31)
    return x << e


def py_exp_quarter(a: int) -> int:
    ct, third = 1895147668, 715827883
    x = a + (1 << 28)
    x2 = py_srdhm(x, x)
    x3 = py_srdhm(x2, x)
    x4 = py_srdhm(x2, x2)
    x4_4 = py_sat_pot(x4, -2)
    poly = py_sat_pot(py_srdhm(x4_4 + x3, third) + x2, -1)
    return ct + py_srdhm(ct, x + poly)


def py_exp_on_negative_values(a: int, ib: int) -> int:
    fb = 31 - ib
    quarter = 1 << (fb - 2)
    amq = (a & (quarter - 1)) - quarter
    result = py_exp_quarter(py_sat_pot(amq, ib))
    rem = amq - a
    for e, mult in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
                    (2, 39332535), (3, 720401), (4, 242)):
        if ib > e and rem & (1 << (fb + e)):
            result = py_srdhm(result, mult)
    if ib > 5 and a < -(1 << (36 - ib)):
        result = 0
    return 2**31 - 1 if a == 0 else result


@given(st.integers(-(2**31), 0), st.sampled_from([5, 6]))
def test_exp_on_negative_values(a: int, ib: int) -> None:
    assert int(fp.exp_on_negative_values(a, ib)) == py_exp_on_negative_values(a, ib)


def test_exp_on_negative_values_is_close_to_exp() -> None:
    xs = np.linspace(-30, 0, 301)
    raw = np.round(xs * 2**26).astype(np.int64)
    got = fp.exp_on_negative_values(raw, 5) / 2**31
    np.testing.assert_allclose(got, np.exp(raw / 2**26), atol=5e-7)  # gemmlowp: ~2e-7


@given(st.integers(0, 2**31 - 1))
def test_one_over_one_plus_x(a: int) -> None:
    got = int(fp.one_over_one_plus_x_for_x_in_0_1(a))
    assert abs(got / 2**31 - 1 / (1 + a / 2**31)) < 1e-8


@pytest.mark.parametrize("x", [1, 2, 3, 255, 2**19, 2**24 + 7, 2**31 - 1])
def test_count_leading_zeros(x: int) -> None:
    assert int(fp.count_leading_zeros_u32(x)) == 32 - x.bit_length()


@settings(max_examples=1000)
@given(st.lists(st.tuples(INT32, st.integers(0, 2**31 - 1), st.integers(-31, 0)), min_size=1, max_size=64))
def test_multiply_by_quantized_multiplier_full_int32_per_channel(rows) -> None:
    # The fused one-shift implementation against the C transcription, over the whole int32
    # range for right shifts (the case every conv/FC requantization uses), per element.
    x = np.array([r[0] for r in rows])
    m = np.array([r[1] for r in rows])
    s = np.array([r[2] for r in rows])
    np.testing.assert_array_equal(fp.multiply_by_quantized_multiplier(x, m, s), [py_mbqm(*r) for r in rows])


@settings(max_examples=100)
@given(st.lists(st.integers(1, 2**31 - 1), min_size=1, max_size=16))
def test_python_int_and_array_paths_agree(xs) -> None:
    # A few-row SOFTMAX computes its reciprocals on Python ints; batches use the arrays. Same bits.
    xs += [1, 2**19, 2**19 + 1, 2**31 - 1, 2**30, 2**30 - 1, 2**30 + 1, 2**20, 3 * 2**19]  # powers of two saturate
    scales, bits = fp.get_reciprocal(np.array(xs, np.int64), 12)
    for x, scale, nbits in zip(xs, scales, bits):
        got_scale, got_bits = fp.get_reciprocal(x, 12)
        assert type(got_scale) is int and (got_scale, got_bits) == (int(scale), int(nbits))
    for a, b in zip(xs, reversed(xs)):
        for signed_a in (a, -a, fp.INT32_MIN):
            assert fp.saturating_rounding_doubling_high_mul(signed_a, b) == int(
                fp.saturating_rounding_doubling_high_mul(np.array([signed_a]), np.array([b]))[0])
            assert fp.rounding_half_sum(signed_a, b) == int(fp.rounding_half_sum(np.array([signed_a]), b)[0])
            for e in (0, 1, 5, 31):
                assert fp.rounding_divide_by_pot(signed_a, e) == int(fp.rounding_divide_by_pot(np.array([signed_a]), e)[0])
    assert fp.saturating_rounding_doubling_high_mul(fp.INT32_MIN, fp.INT32_MIN) == fp.INT32_MAX


@settings(max_examples=300)
@given(INT32, INT32, st.integers(1, 31))
def test_rounding_half_sum_and_saturating_multiply_by_pot_match_the_c(a: int, b: int, e: int) -> None:
    # gemmlowp RoundingHalfSum: (sum + sign) / 2 in C's truncating division.
    total = a + b
    assert fp.rounding_half_sum(a, b) == c_trunc_div(total + (1 if total >= 0 else -1), 2)
    assert int(fp.rounding_half_sum(np.array([a, b]), np.array([b, a]))[0]) == c_trunc_div(
        total + (1 if total >= 0 else -1), 2)
    # SaturatingRoundingMultiplyByPOT<e>: saturate beyond +-(2**(31 - e) - 1), else shift.
    threshold = (1 << (31 - e)) - 1
    for x in (a, threshold, threshold + 1, -threshold, -threshold - 1):
        expected = 2**31 - 1 if x > threshold else -(2**31) if x < -threshold else x << e
        assert fp.saturating_rounding_multiply_by_pot(x, e) == expected
        assert int(fp.saturating_rounding_multiply_by_pot(np.array([x]), e)[0]) == expected
