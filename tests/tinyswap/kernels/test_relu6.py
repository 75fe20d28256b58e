"""RELU6: TFLM clamps in the input's quantization; LiteRT rescales. Both profiles are checked."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm
from tests.unary_cases import unary_cases


@given(unary_cases("RELU6"))
def test_int8_matches_tflite_micro(case) -> None:
    assert_matches_tflm(*case)


@given(unary_cases("RELU6"))
def test_int8_litert_profile_matches_litert(case) -> None:
    assert_matches_litert_ref(*case)


@given(unary_cases("RELU6", same_quant=True))
def test_same_quantization_agrees_everywhere(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


@given(unary_cases("RELU6", np.float32, np.float32))
def test_float32(case) -> None:
    out = assert_matches_tflm(*case)
    np.testing.assert_array_equal(out[0], np.clip(case[1][0], 0, 6))


@pytest.mark.slow
@given(unary_cases("RELU6"))
def test_full(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)
