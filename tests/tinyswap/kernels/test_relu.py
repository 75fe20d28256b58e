"""RELU (int8 rescaling, float32) against TFLite Micro and LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from tinyswap.kernels.quantized import Rescale

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm
from tests.unary_cases import unary_cases
from tests.op_cases import prepare, run_kernel, spec


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


def test_prepare_builds_the_hand_derived_params_record() -> None:
    # float32(0.5) / float32(0.25) = 2 = 0.5 * 2**2 -> (2**30, 2); the clamp starts at the
    # output's zero: -5 + round(0 / 0.25) = -5.
    prepared = prepare("RELU", [spec(0, (2,), np.int8, 0.5, 0)], [spec(1, (2,), np.int8, 0.25, -5)])
    p = prepared.params
    assert (p.rescale, p.act_min, p.act_max) == (Rescale(0, -5, 2**30, 2), -5, 127)
    # The table holds x * 2 - 5 clamped to [-5, 127] for every int8 x.
    values = np.arange(-128, 128)
    assert np.frombuffer(p.lookup.table, np.int8).tolist() == np.clip(values * 2 - 5, -5, 127).tolist()
    # -3 * 2 - 5 = -11 -> -5; 4 * 2 - 5 = 3.
    np.testing.assert_array_equal(run_kernel("RELU", prepared, np.array([-3, 4], np.int8))[0], [-5, 3])
    assert prepare("RELU", [spec(0, (2,), np.float32)], [spec(1, (2,), np.float32)]).params is None
