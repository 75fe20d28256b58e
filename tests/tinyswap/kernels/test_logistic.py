"""LOGISTIC int8 (gemmlowp fixed point) and float32 against TFLite Micro and LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from tinyswap import Interpreter
from tinyswap.errors import ModelError
from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap.kernels.base import Profile
from tinyswap.kernels.sigmoid_common import FloatTableParams
from tinyswap.oracles import run_tflm

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm
from tests.unary_cases import unary_cases
from tests.op_cases import prepare, run_kernel, spec

OUT_Q = Quant(1.0 / 256, -128)
ALL_INT8 = np.arange(-128, 128, dtype=np.int8)


def model(x_quant: Quant | None, y_quant: Quant | None, dtype=np.int8, shape=(256,)) -> bytes:
    x, y = Tensor("x", shape, dtype, quant=x_quant), Tensor("y", shape, dtype, quant=y_quant)
    return build_model(Model([Operator("LOGISTIC", [x], [y], {})], [x], [y]))


@given(unary_cases("LOGISTIC", out_quant=OUT_Q))
def test_int8_matches_oracles(case) -> None:
    out = assert_matches_tflm(*case)
    # Monotone in the input: a larger int8 input never gives a smaller output.
    x = case[1][0].reshape(-1)
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(out[0].reshape(-1)[order].astype(np.int32)) >= 0)
    assert_matches_litert_ref(*case)


@given(unary_cases("LOGISTIC", np.float32, np.float32))
def test_float32_close_to_tflite_micro(case) -> None:
    # glibc's expf is not always the correctly rounded exp NumPy's double gives: within 2 ulp.
    ours = Interpreter(model_content=case[0]).run(*case[1])[0]
    np.testing.assert_allclose(ours, run_tflm(case[0], case[1])[0], rtol=5e-7, atol=0)


@pytest.mark.slow
@given(unary_cases("LOGISTIC", out_quant=OUT_Q))
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
    # radius floor(15 * 2**27 / 2**24) = 120. Input 16 is 1.0 in Q4.27 (2**27):
    # sigmoid(1) * 256 = 187.1 -> 187 - 128 = 59; sigmoid(-1) gives 256 - 187 - 128 = -59;
    # 0 gives exactly one half, 128 - 128 = 0; 119 (7.44) rounds to 256 and clamps at 127.
    prepared = prepare("LOGISTIC", [spec(0, (6,), np.int8, 1 / 16, 0)], [spec(1, (6,), np.int8, 1 / 256, -128)])
    p = prepared.params
    assert (p.input_zero_point, p.input_multiplier, p.input_left_shift, p.input_range_radius) == (0, 2**30, 24, 120)
    table = np.frombuffer(p.lookup.table, np.int8)
    assert table[:9].tolist() == [-128] * 9 and table[-8:].tolist() == [127] * 8  # |x| >= 120 saturates
    out = run_kernel("LOGISTIC", prepared, np.array([-128, -16, 0, 16, 119, 120], np.int8))[0]
    np.testing.assert_array_equal(out, [-128, -59, 0, 59, 127, 127])
    assert prepare("LOGISTIC", [spec(0, (2,), np.float32)], [spec(1, (2,), np.float32)]).params is None


def test_output_quantization_refusals_follow_each_runtime() -> None:
    # TFLM checks only the zero point -128 (it never reads the output scale); LiteRT checks only
    # the scale 1/256 on its int8 reference path.
    x = spec(0, (2,), np.int8, 0.05, 3)
    with pytest.raises(ModelError, match="zero point -128"):
        prepare("LOGISTIC", [x], [spec(1, (2,), np.int8, 1 / 256, 0)])
    prepare("LOGISTIC", [x], [spec(1, (2,), np.int8, 0.1, -128)])
    with pytest.raises(ModelError, match="1/256"):
        prepare("LOGISTIC", [x], [spec(1, (2,), np.int8, 0.1, -128)], profile=Profile.LITERT)
    p = prepare("LOGISTIC", [x], [spec(1, (2,), np.int8, 1 / 256, 0)], profile=Profile.LITERT)
    assert isinstance(p.params, FloatTableParams)
    with pytest.raises(ModelError, match="2\\*\\*-28"):
        prepare("LOGISTIC", [spec(0, (2,), np.int8, 1e-9, 0)], [spec(1, (2,), np.int8, 1 / 256, -128)])


def test_tflm_accepts_any_output_scale_and_so_do_we() -> None:
    case = (model(Quant(0.05, 3), Quant(0.1, -128)), [ALL_INT8])
    assert_matches_tflm(*case)


def test_wrong_zero_point_is_refused_like_tflite_micro() -> None:
    m = model(Quant(0.05, 3), Quant(1 / 256, 0))
    with pytest.raises(ModelError, match="zero point -128"):
        Interpreter(model_content=m).allocate_tensors()
    with pytest.raises(RuntimeError):
        run_tflm(m, [ALL_INT8])


def test_float32_saturation_branches() -> None:
    # Above the upper cutoff the result is exactly 1; below -9 it is expf(x).
    x = np.array([0.0, 16.7, 100.0, -9.5, -100.0, -200.0], np.float32)
    m = model(None, None, np.float32, x.shape)
    ours = Interpreter(model_content=m).run(x)[0]
    np.testing.assert_allclose(ours, run_tflm(m, [x])[0], rtol=5e-7, atol=0)
    assert ours[0] == np.float32(0.5) and ours[1] == ours[2] == np.float32(1) and ours[5] == 0


def test_fixed_point_logistic_is_close_to_the_real_function() -> None:
    from tinyswap.fixedpoint import logistic

    raw = np.linspace(-(15 << 27), 15 << 27, 4001).astype(np.int64)  # Q4.27, |x| < 15
    got = logistic(raw, 4) / 2.0**31
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-raw / 2.0**27)), rtol=0, atol=2e-7)
    assert logistic(np.array([0]), 4)[0] == 1 << 30
