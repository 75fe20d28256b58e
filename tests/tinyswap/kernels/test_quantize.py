"""QUANTIZE (float32 -> int8, int8 -> int8) against TFLite Micro and LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm
from tests.unary_cases import unary_cases


def test_halves_round_away_from_zero() -> None:
    # scale 0.5: 0.25 / 0.5 = 0.5 -> 1, -0.25 -> -1, 0.75 -> 1.5 -> 2; zero point 3 added.
    x = Tensor("x", (3,), np.float32)
    y = Tensor("y", (3,), np.int8, quant=Quant(0.5, 3))
    model = build_model(Model([Operator("QUANTIZE", [x], [y])], [x], [y]))
    out = assert_matches_tflm(model, [np.array([0.25, -0.25, 0.75], np.float32)])[0]
    np.testing.assert_array_equal(out, [4, 2, 5])


@given(unary_cases("QUANTIZE", np.float32, np.int8))
def test_float_to_int8(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


@given(unary_cases("QUANTIZE", np.int8, np.int8))
def test_int8_requantize(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


@pytest.mark.slow
@given(unary_cases("QUANTIZE", np.int8, np.int8))
def test_full(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)
