"""DEQUANTIZE int8 -> float32 against TFLite Micro and LiteRT (exact: one double product)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from tinyswap.kernels.dequantize import DequantizeParams

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm
from tests.unary_cases import unary_cases
from tests.op_cases import prepare, run_kernel, spec


@given(unary_cases("DEQUANTIZE", np.int8, np.float32))
def test_matches_oracles(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


@pytest.mark.slow
@given(unary_cases("DEQUANTIZE", np.int8, np.float32))
def test_full(case) -> None:
    assert_matches_tflm(*case)


def test_prepare_builds_the_hand_derived_params_record() -> None:
    prepared = prepare("DEQUANTIZE", [spec(0, (2,), np.int8, 0.5, 3)], [spec(1, (2,), np.float32)])
    assert prepared.params == DequantizeParams(scale=0.5, zero_point=3)
    out = run_kernel("DEQUANTIZE", prepared, np.array([5, -1], np.int8))[0]
    np.testing.assert_array_equal(out, np.array([1.0, -2.0], np.float32))
