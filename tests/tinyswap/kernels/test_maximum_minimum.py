"""MAXIMUM and MINIMUM (int8 and float32, broadcasting) against TFLite Micro and LiteRT BUILTIN_REF."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyswap.errors import ModelError
from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap import Interpreter

from tests.binary_cases import broadcast_shapes
from tests.op_cases import activation_quant, rng_from
from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm, random_int8

OPS = st.sampled_from(["MAXIMUM", "MINIMUM"])


@st.composite
def extremum_cases(draw, float_model: bool = False):
    rng = rng_from(draw)
    op = draw(OPS)
    sa, sb = draw(broadcast_shapes())
    out = tuple(np.broadcast_shapes(sa, sb))
    if float_model:
        a, b, y = (Tensor(n, s, np.float32) for n, s in (("a", sa), ("b", sb), ("y", out)))
        values = [rng.standard_normal(sa).astype(np.float32), rng.standard_normal(sb).astype(np.float32)]
        if draw(st.booleans()):  # equal values and signed zeros: which input wins must match too
            values[1] = np.where(rng.random(sb) < 0.5, np.float32(-0.0), values[1]).astype(np.float32)
            values[0] = np.where(rng.random(sa) < 0.5, np.float32(0.0), values[0]).astype(np.float32)
    else:
        q = draw(activation_quant(0.005, 0.1))
        a, b, y = (Tensor(n, s, np.int8, quant=q) for n, s in (("a", sa), ("b", sb), ("y", out)))
        values = [random_int8(rng, sa), random_int8(rng, sb)]
    return build_model(Model([Operator(op, [a, b], [y])], [a, b], [y])), values


@given(extremum_cases())
def test_int8_matches_tflite_micro_and_litert(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


@given(extremum_cases(float_model=True))
def test_float32_matches_tflite_micro(case) -> None:
    assert_matches_tflm(*case)


@pytest.mark.slow
@given(extremum_cases(), extremum_cases(float_model=True))
def test_full(case, float_case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)
    assert_matches_tflm(*float_case)


def test_values_are_the_elementwise_extremes() -> None:
    q = Quant(0.1, 0)
    a, b = Tensor("a", (4,), np.int8, quant=q), Tensor("b", (1,), np.int8, quant=q)
    for op, expected in (("MAXIMUM", [3, 3, 5, 127]), ("MINIMUM", [-128, 0, 3, 3])):
        y = Tensor("y", (4,), np.int8, quant=q)
        model = build_model(Model([Operator(op, [a, b], [y])], [a, b], [y]))
        got = Interpreter(model_content=model).run(np.array([-128, 0, 5, 127], np.int8), np.array([3], np.int8))[0]
        np.testing.assert_array_equal(got, expected)


def test_int8_inputs_of_different_quantization_are_refused() -> None:
    a = Tensor("a", (4,), np.int8, quant=Quant(0.1, 0))
    b = Tensor("b", (4,), np.int8, quant=Quant(0.2, 0))
    y = Tensor("y", (4,), np.int8, quant=Quant(0.1, 0))
    model = build_model(Model([Operator("MAXIMUM", [a, b], [y])], [a, b], [y]))
    with pytest.raises(ModelError, match="quantization differ"):
        Interpreter(model_content=model).allocate_tensors()
