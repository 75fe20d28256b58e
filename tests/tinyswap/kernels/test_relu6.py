"""RELU6: TFLM clamps in the input's quantization; LiteRT rescales. Both profiles are checked."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from tinyswap.kernels.base import Profile
from tinyswap.kernels.quantized import Rescale
from tinyswap.kernels.relu6 import Relu6Params

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm
from tests.unary_cases import unary_cases
from tests.op_cases import prepare, spec


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


def test_prepare_builds_the_hand_derived_params_records() -> None:
    x, y = spec(0, (2,), np.int8, 0.5, 0), spec(1, (2,), np.int8, 0.25, -5)
    # TFLM clamps in the input's quantization: [0, round(6 / 0.5) + 0] = [0, 12], no rescale.
    tflm = prepare("RELU6", [x], [y]).params
    assert (tflm.act_min, tflm.act_max, tflm.rescale) == (0, 12, None)
    values = np.arange(-128, 128)
    assert np.frombuffer(tflm.lookup.table, np.int8).tolist() == np.clip(values, 0, 12).tolist()
    # LiteRT rescales by 0.5 / 0.25 = 2 -> (2**30, 2), then clamps in the output's:
    # [-5, round(6 / 0.25) - 5] = [-5, 19].
    litert = prepare("RELU6", [x], [y], profile=Profile.LITERT)
    assert litert.params == Relu6Params(-5, 19, Rescale(0, -5, 2**30, 2)).tabulated()
    # x * 2 - 5, clamped: the table entry for every input, derived by hand.
    assert np.frombuffer(litert.params.lookup.table, np.int8).tolist() == np.clip(values * 2 - 5, -5, 19).tolist()
