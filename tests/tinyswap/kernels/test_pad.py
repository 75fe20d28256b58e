"""PAD and PADV2 against TFLite Micro and LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyswap.export.tflite_builder import Model, Operator, Tensor, build_model
from tinyswap.kernels.pad import PadParams

from tests.op_cases import activation_quant, prepare, rng_from, run_kernel, spec
from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm, random_int8


@st.composite
def cases(draw, op: str):
    rng = rng_from(draw)
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    pairs = [(draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in shape]
    out = tuple(d + a + b for d, (a, b) in zip(shape, pairs))
    q = draw(activation_quant())
    x, y = Tensor("x", shape, np.int8, quant=q), Tensor("y", out, np.int8, quant=q)
    p = Tensor("p", (len(shape), 2), np.int32, data=np.array(pairs, np.int32))
    ins = [x, p]
    if op == "PADV2":
        ins.append(Tensor("c", (1,), np.int8, data=np.array([draw(st.integers(-128, 127))], np.int8), quant=q))
    model = build_model(Model([Operator(op, ins, [y])], [x], [y]))
    return model, [random_int8(rng, shape)], pairs


@pytest.mark.parametrize("op", ["PAD", "PADV2"])
@given(data=st.data())
def test_matches_oracles(op: str, data) -> None:
    model, inputs, pairs = data.draw(cases(op))
    out = assert_matches_tflm(model, inputs)[0]
    inner = tuple(slice(a, a + d) for (a, _), d in zip(pairs, inputs[0].shape))
    np.testing.assert_array_equal(out[inner], inputs[0])
    assert_matches_litert_ref(model, inputs)


def test_prepare_builds_the_hand_derived_params_records() -> None:
    x, y = spec(0, (1, 2), np.int8, 0.5, 7), spec(2, (1, 5), np.int8, 0.5, 7)
    paddings = spec(1, (2, 2), np.int32, constant=np.array([[0, 0], [1, 2]], np.int32))
    pad = prepare("PAD", [x, paddings], [y])
    assert pad.params == PadParams(paddings=((0, 0), (1, 2)), value=7)  # int8 pads with the zero point
    np.testing.assert_array_equal(run_kernel("PAD", pad, np.array([[1, 2]], np.int8))[0], [[7, 1, 2, 7, 7]])
    value = spec(3, (1,), np.int8, 0.5, 7, constant=np.array([-9], np.int8))
    assert prepare("PADV2", [x, paddings, value], [y]).params == PadParams(((0, 0), (1, 2)), -9)
