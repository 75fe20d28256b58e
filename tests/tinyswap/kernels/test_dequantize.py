"""DEQUANTIZE int8 -> float32 against TFLite Micro and LiteRT (exact: one double product)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm
from tests.unary_cases import unary_cases


@given(unary_cases("DEQUANTIZE", np.int8, np.float32))
def test_matches_oracles(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


@pytest.mark.slow
@given(unary_cases("DEQUANTIZE", np.int8, np.float32))
def test_full(case) -> None:
    assert_matches_tflm(*case)
