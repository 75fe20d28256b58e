"""MEAN (int8 folded multiplier, float32) against TFLite Micro and LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyswap.export.tflite_builder import Model, Operator, Tensor, build_model
from tinyswap import Interpreter
from tinyswap.kernels.mean import MeanParams
from tinyswap.kernels.quantized import Rescale

from tests.op_cases import activation_quant, prepare, rng_from, run_kernel, spec
from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm, random_int8


@st.composite
def cases(draw, float_model: bool = False):
    rng = rng_from(draw)
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=2, max_size=4)))
    rank = len(shape)
    axes = sorted(draw(st.sets(st.integers(0, rank - 1), min_size=1, max_size=rank)))
    if draw(st.booleans()):  # GlobalAveragePooling2D's form: axes [1, 2] of a 4-D tensor
        shape = tuple(draw(st.lists(st.integers(1, 8), min_size=4, max_size=4)))
        axes, rank = [1, 2], 4
    keep = draw(st.booleans())
    out = tuple(1 if a in axes else d for a, d in enumerate(shape)) if keep else tuple(
        d for a, d in enumerate(shape) if a not in axes)
    if float_model:
        x, y = Tensor("x", shape, np.float32), Tensor("y", out, np.float32)
        value = rng.standard_normal(shape).astype(np.float32)
    else:
        qx = draw(activation_quant(0.01, 0.1))
        qy = qx if draw(st.booleans()) else draw(activation_quant(0.01, 0.1))
        x, y = Tensor("x", shape, np.int8, quant=qx), Tensor("y", out, np.int8, quant=qy)
        value = random_int8(rng, shape)
    ax = Tensor("axes", (len(axes),), np.int32, data=np.array(axes, np.int32))
    model = build_model(Model([Operator("MEAN", [x, ax], [y], {"keep_dims": keep})], [x], [y]))
    return model, [value]


@given(cases())
def test_int8_matches_tflite_micro(case) -> None:
    assert_matches_tflm(*case)


@given(cases())
def test_int8_litert_profile(case) -> None:
    assert_matches_litert_ref(*case)


@given(cases(float_model=True))
def test_float32_close(case) -> None:
    from tinyswap.oracles import run_tflm

    ours = Interpreter(model_content=case[0]).run(*case[1])[0]
    np.testing.assert_allclose(ours, run_tflm(*case)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@given(cases())
def test_full(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


def test_prepare_builds_the_hand_derived_params_record() -> None:
    # x_scale / y_scale = 0.5 / 0.25 = 2 = 0.5 * 2**2 -> (2**30, 2); n = 4 values, so
    # k = min(floor(log2 4), 32, 31 + 2) = 2: multiplier (2**30 << 2) // 4 = 2**30, shift 2 - 2 = 0.
    # The sum's zero point is 4 * x_zp = 4.
    x = spec(0, (1, 2, 2, 1), np.int8, 0.5, 1)
    axes = spec(1, (2,), np.int32, constant=np.array([1, 2], np.int32))
    y = spec(2, (1, 1, 1, 1), np.int8, 0.25, -3)
    prepared = prepare("MEAN", [x, axes], [y], {"keep_dims": True})
    assert prepared.params == MeanParams(axes=(1, 2), keep_dims=True, count=4, rescale=Rescale(4, -3, 2**30, 0))
    # Sum 1 + 2 + 3 + 5 = 11, less 4 = 7; 7 * 0.5 = 3.5 -> 4 (half away from zero) - 3 = 1.
    values = np.array([1, 2, 3, 5], np.int8).reshape(1, 2, 2, 1)
    np.testing.assert_array_equal(run_kernel("MEAN", prepared, values, np.array([1, 2], np.int32))[0], [[[[1]]]])
    floats = prepare("MEAN", [spec(0, (2, 3), np.float32), spec(1, (1,), np.int32, constant=np.array([-1], np.int32))],
                     [spec(2, (2,), np.float32)])
    assert floats.params == MeanParams((1,), False, 3, None)
