"""RELU (int8 rescaling, float32) against TFLite Micro and LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm
from tests.unary_cases import unary_cases


@given(unary_cases("RELU"))
def test_int8_matches_oracles(case) -> None:
    out = assert_matches_tflm(*case)
    assert out[0].min() >= -128
    assert_matches_litert_ref(*case)


@given(unary_cases("RELU", np.float32, np.float32))
def test_float32(case) -> None:
    out = assert_matches_tflm(*case)
    np.testing.assert_array_equal(out[0], np.maximum(case[1][0], 0))


@pytest.mark.slow
@given(unary_cases("RELU"))
def test_full(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)
