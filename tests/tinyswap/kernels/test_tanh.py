"""TANH int8 (gemmlowp fixed point) and float32 against TFLite Micro and LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from tinyswap import Interpreter
from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap.kernels.base import Profile
from tinyswap.kernels.sigmoid_common import FixedPointSigmoidParams, FloatTableParams
from tinyswap.oracles import run_tflm

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm
from tests.unary_cases import unary_cases
from tests.op_cases import prepare, run_kernel, spec

OUT_Q = Quant(1.0 / 128, 0)
ALL_INT8 = np.arange(-128, 128, dtype=np.int8)


def model(x_quant: Quant | None, y_quant: Quant | None, dtype=np.int8, shape=(256,)) -> bytes:
    x, y = Tensor("x", shape, dtype, quant=x_quant), Tensor("y", shape, dtype, quant=y_quant)
    return build_model(Model([Operator("TANH", [x], [y], {})], [x], [y]))


@given(unary_cases("TANH", out_quant=OUT_Q))
def test_int8_matches_oracles(case) -> None:
    out = assert_matches_tflm(*case)
    x = case[1][0].reshape(-1)
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(out[0].reshape(-1)[order].astype(np.int32)) >= 0)
    assert_matches_litert_ref(*case)


@given(unary_cases("TANH", np.float32, np.float32))
def test_float32_close_to_tflite_micro(case) -> None:
    # glibc's tanhf is not always the correctly rounded tanh NumPy's double gives: within 2 ulp.
    ours = Interpreter(model_content=case[0]).run(*case[1])[0]
    np.testing.assert_allclose(ours, run_tflm(case[0], case[1])[0], rtol=5e-7, atol=1e-30)


@pytest.mark.slow
@given(unary_cases("TANH", out_quant=OUT_Q))
def test_full(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


@pytest.mark.parametrize("scale", [0.01, 1 / 16, 0.0123, 0.05, 0.1, 0.2, 0.5, 2.0, 20.0])
@pytest.mark.parametrize("zero_point", [-128, 0, 17, 127])
def test_all_256_inputs_match_tflite_micro(scale: float, zero_point: int) -> None:
    case = (model(Quant(scale, zero_point), OUT_Q), [ALL_INT8])
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


def test_prepare_builds_the_hand_derived_params_record() -> None:
    # Input scale 1/16: frexp(2**-4 * 2**27) = 0.5 * 2**24 -> multiplier 2**30, left shift 24;
    # radius floor(15 * 2**27 / 2**24) = 120. Input 16 is 1.0 in Q4.27: tanh(1) * 128 = 97.5
    # -> 97 (the fixed-point value is just below the half); tanh is odd, 0 gives exactly 0.
    prepared = prepare("TANH", [spec(0, (6,), np.int8, 1 / 16, 0)], [spec(1, (6,), np.int8, 1 / 128, 0)])
    p = prepared.params
    assert isinstance(p, FixedPointSigmoidParams)
    assert (p.input_zero_point, p.input_multiplier, p.input_left_shift, p.input_range_radius) == (0, 2**30, 24, 120)
    out = run_kernel("TANH", prepared, np.array([-128, -16, 0, 16, 119, 120], np.int8))[0]
    np.testing.assert_array_equal(out, [-128, -97, 0, 97, 127, 127])
    table = np.frombuffer(p.lookup.table, np.int8).astype(np.int32)
    # Odd around the zero point below saturation: f(-x) = -f(x) wherever f(x) < 127 (+1 rounds
    # to 128 and clamps at 127, -1 to -128).
    positive, negative = table[129:248], table[127:8:-1]  # f(1..119), f(-1..-119)
    below = positive < 127
    assert below.sum() > 30
    np.testing.assert_array_equal(negative[below], -positive[below])
    assert prepare("TANH", [spec(0, (2,), np.float32)], [spec(1, (2,), np.float32)]).params is None


def test_any_output_quantization_matches_both_runtimes() -> None:
    # TFLM reads no output quantization (its result is always in 1/128 units around 0);
    # LiteRT's table requantizes to the declared one. Both accept it, and so do we.
    case = (model(Quant(0.05, 3), Quant(0.1, 5)), [ALL_INT8])
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)
    p = prepare("TANH", [spec(0, (2,), np.int8, 0.05, 3)], [spec(1, (2,), np.int8, 0.1, 5)], profile=Profile.LITERT)
    assert isinstance(p.params, FloatTableParams)


def test_float32_special_values() -> None:
    x = np.array([0.0, -0.0, 1e-8, 20.0, -20.0, np.inf, -np.inf], np.float32)
    m = model(None, None, np.float32, x.shape)
    ours = Interpreter(model_content=m).run(x)[0]
    np.testing.assert_array_equal(ours, run_tflm(m, [x])[0])


def test_fixed_point_tanh_is_close_to_the_real_function() -> None:
    from tinyswap.fixedpoint import tanh

    raw = np.linspace(-(15 << 27), 15 << 27, 4001).astype(np.int64)  # Q4.27, |x| < 15
    got = tanh(raw, 4) / 2.0**31
    np.testing.assert_allclose(got, np.tanh(raw / 2.0**27), rtol=0, atol=4e-7)
    assert tanh(np.array([0]), 4)[0] == 0
