"""`tinyswap.quantize.quantize_int8`: the one float -> int8 input quantizer (demo, scenario
datasets, digits evaluation). Its arithmetic is pinned: the committed results depend on it."""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap.quantize import quantize_int8


def test_rounds_halves_to_even_then_adds_the_zero_point() -> None:
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49, 0.51])
    assert quantize_int8(x, 1.0, 0).tolist() == [0, 2, 2, 0, -2, 0, 1]
    # The zero point is added after rounding: round(0.5) + 3 = 3, not round(3.5) = 4.
    assert quantize_int8(np.array([0.5]), 1.0, 3).tolist() == [3]
    assert quantize_int8(np.array([0.5]), 1.0, -128).tolist() == [-128]


def test_clips_to_the_int8_range_and_returns_int8() -> None:
    q = quantize_int8(np.array([1e9, -1e9, 127.4, -128.4, np.float32(3.0)]), 1.0, 0)
    assert q.dtype == np.int8 and q.tolist() == [127, -128, 127, -128, 3]
    assert quantize_int8(np.array([0.0]), 0.5, 127).tolist() == [127]


@pytest.mark.parametrize("shape", [(3,), (2, 8, 8, 1), (4, 64)])
def test_equals_the_formula_on_random_rows_of_any_shape(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, size=shape).astype(np.float32)
    scale, zp = 0.0123, -7
    q = quantize_int8(x, scale, zp)
    assert q.shape == shape
    assert np.array_equal(q, np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8))


def test_the_arithmetic_runs_in_the_inputs_own_float_type() -> None:
    # Two float32 pixels whose quotient rounds differently in float32 and float64: the digits
    # code passes float32 and the scenario datasets float64, and each must keep its own result.
    scale = 0.0078125 * 1.37
    x32 = np.array([0.9258203506469727, 1.4502733945846558], np.float32)
    assert quantize_int8(x32, scale, 0).tolist() == [86, 127]
    assert quantize_int8(x32.astype(np.float64), scale, 0).tolist() == [87, 127]
    assert quantize_int8(x32, scale, -100).tolist() == [-14, 36]
    assert quantize_int8(x32.astype(np.float64), scale, -100).tolist() == [-13, 35]


def test_accepts_lists() -> None:
    assert quantize_int8([0.2, 0.6], 0.2, 0).tolist() == [1, 3]
