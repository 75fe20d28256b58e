"""MEAN (int8 folded multiplier, float32) against TFLite Micro and LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyswap.export.tflite_builder import Model, Operator, Tensor, build_model
from tinyswap import Interpreter

from tests.op_cases import activation_quant, rng_from
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
