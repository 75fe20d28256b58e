"""FULLY_CONNECTED against hand goldens, TFLite Micro and LiteRT BUILTIN_REF."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap import Interpreter
from tinyswap.errors import ModelError, UnsupportedOpError
from tinyswap.kernels.base import Profile
from tinyswap.kernels.fully_connected import FullyConnectedParams
from tinyswap.kernels.quantized import FloatActivation, OutputStage

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm, random_int8
from tests.op_cases import prepare, run_kernel, spec

ACTIVATIONS = ["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]


def fc_model(w: np.ndarray, bias: np.ndarray | None, batch: int, x_q: Quant, w_scale: np.ndarray,
             y_q: Quant, activation: int = 0, keep_num_dims: bool = False, x_shape=None) -> bytes:
    units, depth = w.shape
    x = Tensor("x", tuple(x_shape or (batch, depth)), np.int8, quant=x_q)
    wt = Tensor("w", (units, depth), np.int8, data=w, quant=Quant(w_scale, np.zeros(w_scale.size, np.int64)))
    inputs = [x, wt]
    if bias is not None:
        inputs.append(Tensor("b", (units,), np.int32, data=bias,
                             quant=Quant((x_q.scale[0] * w_scale).astype(np.float32), np.zeros(w_scale.size, np.int64))))
    out_shape = (*x.shape[:-1], units) if keep_num_dims else (batch, units)
    y = Tensor("y", out_shape, np.int8, quant=y_q)
    op = Operator("FULLY_CONNECTED", inputs, [y],
                  {"fused_activation_function": activation, "keep_num_dims": keep_num_dims})
    return build_model(Model([op], [x], [y]))


def test_hand_golden_per_tensor() -> None:
    # x_scale * w_scale / y_scale = 0.5 * 0.5 / 0.25 = 1 exactly, so out = acc + y_zp:
    # row [1, 2] . w[0] = 1*1 + 2*1 = 3, + bias 10 = 13 -> 13 + 1 = 14
    # row [1, 2] . w[1] = 1*-1 + 2*2 = 3, + bias -5 = -2 -> -2 + 1 = -1
    # x_zp = 0, so the input offsets vanish.
    w = np.array([[1, 1], [-1, 2]], np.int8)
    model = fc_model(w, np.array([10, -5], np.int32), 1, Quant(0.5, 0), np.array([0.5], np.float32), Quant(0.25, 1))
    out = Interpreter(model_content=model).run(np.array([[1, 2]], np.int8))[0]
    np.testing.assert_array_equal(out, [[14, -1]])


def test_hand_golden_relu_and_rounding() -> None:
    # effective scale 1 * 1 / 2 = 0.5: acc 3 -> 1.5 rounds half away from zero -> 2 (double
    # rounding in TFLM); acc -3 -> -1.5 -> -2, then RELU with y_zp 0 clamps it to 0.
    w = np.array([[3], [-3]], np.int8)
    model = fc_model(w, None, 1, Quant(1.0, 0), np.array([1.0], np.float32), Quant(2.0, 0), activation=1)
    out = Interpreter(model_content=model).run(np.array([[1]], np.int8))[0]
    np.testing.assert_array_equal(out, [[2, 0]])


@st.composite
def fc_cases(draw):
    units = draw(st.integers(1, 24))
    depth = draw(st.integers(1, 64))
    batch = draw(st.integers(1, 4))
    per_channel = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x_scale = draw(st.floats(0.005, 0.5))
    x_zp = draw(st.integers(-128, 127))
    w_scale = rng.uniform(0.001, 0.05, size=units if per_channel else 1).astype(np.float32)
    # An output scale near the accumulator's spread keeps outputs away from saturation.
    spread = x_scale * float(w_scale.mean()) * 64 * np.sqrt(depth)
    y_scale = spread / 64 * draw(st.floats(0.25, 4.0))
    y_zp = draw(st.integers(-30, 30))
    w = rng.integers(-127, 128, size=(units, depth), dtype=np.int8)
    bias = rng.integers(-5000, 5000, size=units).astype(np.int32) if draw(st.booleans()) else None
    activation = draw(st.sampled_from([0, 1, 2, 3]))
    keep = draw(st.booleans())
    model = fc_model(w, bias, batch, Quant(x_scale, x_zp), w_scale, Quant(y_scale, y_zp), activation, keep)
    return model, [random_int8(rng, (batch, depth))]


@given(fc_cases())
def test_matches_tflite_micro(case) -> None:
    model, inputs = case
    assert_matches_tflm(model, inputs)


@given(fc_cases())
def test_litert_profile_matches_litert_reference(case) -> None:
    model, inputs = case
    assert_matches_litert_ref(model, inputs)


@pytest.mark.slow
@given(fc_cases())
def test_matches_tflite_micro_full(case) -> None:  # the >= 200-example run (TINYSWAP_FULL=1)
    model, inputs = case
    assert_matches_tflm(model, inputs)
    assert_matches_litert_ref(model, inputs)


def test_float32_fully_connected() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 7)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    x = Tensor("x", (2, 7), np.float32)
    y = Tensor("y", (2, 5), np.float32)
    op = Operator("FULLY_CONNECTED", [x, Tensor("w", (5, 7), np.float32, data=w), Tensor("b", (5,), np.float32, data=b)],
                  [y], {"fused_activation_function": 1})
    model = build_model(Model([op], [x], [y]))
    xv = rng.standard_normal((2, 7)).astype(np.float32)
    ours = Interpreter(model_content=model).run(xv)[0]
    from tinyswap.oracles import run_tflm

    np.testing.assert_allclose(ours, run_tflm(model, [xv])[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours, np.maximum(xv @ w.T + b, 0), rtol=1e-6, atol=1e-6)


def test_bad_weights_rank_and_types_are_refused() -> None:
    x = Tensor("x", (1, 4), np.int8, quant=Quant(0.1, 0))
    y = Tensor("y", (1, 2), np.int16, quant=Quant(0.1, 0))
    w = Tensor("w", (2, 4), np.int8, data=np.zeros((2, 4), np.int8), quant=Quant(0.1, 0))
    model = build_model(Model([Operator("FULLY_CONNECTED", [x, w], [y])], [x], [y]))
    with pytest.raises(UnsupportedOpError, match="INT16"):
        Interpreter(model_content=model).allocate_tensors()
    y8 = Tensor("y", (1, 2), np.int8, quant=Quant(0.1, 0))
    w3 = Tensor("w", (3, 5), np.int8, data=np.zeros((3, 5), np.int8), quant=Quant(0.1, 0))
    model = build_model(Model([Operator("FULLY_CONNECTED", [x, w3], [y8])], [x], [y8]))
    with pytest.raises(ModelError, match="whole number of rows"):
        Interpreter(model_content=model).allocate_tensors()


def test_prepare_builds_the_hand_derived_params_record() -> None:
    # effective scale = x_scale * w_scale / y_scale = 0.5 * 0.25 / 0.75 = 1/6 = 0.6667 * 2**-2:
    # multiplier = round(2/3 * 2**31) = round(1431655765.33) = 1431655765, shift = -2, for both
    # units (per-tensor weights). RELU with y_zp 2: act_min = 2 + round(0 / 0.75) = 2.
    x = spec(0, (1, 3), np.int8, 0.5, -3)
    w = spec(1, (2, 3), np.int8, 0.25, 0, constant=np.zeros((2, 3), np.int8))
    y = spec(2, (1, 2), np.int8, 0.75, 2)
    prepared = prepare("FULLY_CONNECTED", [x, w], [y], {"fused_activation_function": 1})
    stage = OutputStage(input_zero_point=-3, output_zero_point=2, multipliers=(1431655765, 1431655765),
                        shifts=(-2, -2), act_min=2, act_max=127, single_rounding=False)
    assert prepared.params == FullyConnectedParams(batches=1, depth=3, units=2, stage=stage)
    assert tuple(prepared.output_shapes) == ((1, 2),)
    # LiteRT's FULLY_CONNECTED rounds once; the multipliers are the same.
    litert = prepare("FULLY_CONNECTED", [x, w], [y], {"fused_activation_function": 1}, Profile.LITERT)
    assert litert.params.stage.single_rounding and litert.params.stage.multipliers == stage.multipliers
    # float32: only the activation clamp (RELU6 -> [0, 6]).
    xf, wf, yf = spec(0, (2, 3), np.float32), spec(1, (4, 3), np.float32), spec(2, (2, 4), np.float32)
    floats = prepare("FULLY_CONNECTED", [xf, wf], [yf], {"fused_activation_function": 3})
    assert floats.params == FullyConnectedParams(2, 3, 4, FloatActivation(0.0, 6.0))


def test_kernel_runs_on_arrays_without_a_model() -> None:
    # x - x_zp = [4, 5, 6]; w = [[1, 0, -1], [2, 2, 2]]: acc = [-2, 30], bias [0, 6] -> [-2, 36].
    # acc / 6: -0.33 -> 0, 6 -> 6; + y_zp 2 -> [2, 8]; RELU keeps act_min 2.
    x = spec(0, (1, 3), np.int8, 0.5, -3)
    w = spec(1, (2, 3), np.int8, 0.25, 0, constant=np.zeros((2, 3), np.int8))
    b = spec(2, (2,), np.int32, 0.125, 0, constant=np.zeros(2, np.int32))
    y = spec(3, (1, 2), np.int8, 0.75, 2)
    prepared = prepare("FULLY_CONNECTED", [x, w, b], [y], {"fused_activation_function": 1})
    out = run_kernel("FULLY_CONNECTED", prepared, np.array([[1, 2, 3]], np.int8),
                     np.array([[1, 0, -1], [2, 2, 2]], np.int8), np.array([0, 6], np.int32))[0]
    np.testing.assert_array_equal(out, [[2, 8]])
