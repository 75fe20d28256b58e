"""GREATER (int8 with TFLM's rescaling, int32, float32; broadcasting) against TFLite Micro."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyswap import Interpreter
from tinyswap.errors import ModelError
from tinyswap.export.slot_plan import MIN_CONDITIONAL_GATE_MAX
from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model

from tests.binary_cases import broadcast_shapes
from tests.op_cases import rng_from
from tests.oracle_check import assert_matches_tflm, random_int8


@st.composite
def greater_cases(draw, dtype=np.int8):
    rng = rng_from(draw)
    sa, sb = draw(broadcast_shapes())
    out = tuple(np.broadcast_shapes(sa, sb))
    if dtype == np.int8:
        # Different scales and zero points: TFLM compares the rescaled values, not the bytes.
        qa = Quant(draw(st.floats(0.001, 0.9)), draw(st.integers(-128, 127)))
        qb = qa if draw(st.booleans()) else Quant(draw(st.floats(0.001, 0.9)), draw(st.integers(-128, 127)))
        a, b = Tensor("a", sa, np.int8, quant=qa), Tensor("b", sb, np.int8, quant=qb)
        values = [random_int8(rng, sa), random_int8(rng, sb)]
    elif dtype == np.int32:
        a, b = Tensor("a", sa, np.int32), Tensor("b", sb, np.int32)
        values = [rng.integers(-5, 5, sa, dtype=np.int32), rng.integers(-5, 5, sb, dtype=np.int32)]
    else:
        a, b = Tensor("a", sa, np.float32), Tensor("b", sb, np.float32)
        values = [rng.standard_normal(sa).astype(np.float32), rng.standard_normal(sb).astype(np.float32)]
    y = Tensor("y", out, np.bool_)
    return build_model(Model([Operator("GREATER", [a, b], [y])], [a, b], [y])), values


@given(greater_cases())
def test_int8_matches_tflite_micro(case) -> None:
    assert_matches_tflm(*case)


@given(st.one_of(greater_cases(np.int32), greater_cases(np.float32)))
def test_int32_and_float32_match_tflite_micro(case) -> None:
    assert_matches_tflm(*case)


def test_int8_rescaling_loses_differences_below_its_resolution() -> None:
    """Why conditional slots need gate_max >= 0.5: a one-step gate at a tiny scale compares as
    equal to off (the wheel agrees), at gate_max 0.5 it compares greater."""
    for gate_max, expected in ((0.01, False), (MIN_CONDITIONAL_GATE_MAX, True)):
        q = Quant(np.float32(gate_max / 255), -128)
        g, off = Tensor("g", (1, 1), np.int8, quant=q), Tensor("off", (1, 1), np.int8, quant=q)
        y = Tensor("y", (1, 1), np.bool_)
        model = build_model(Model([Operator("GREATER", [g, off], [y])], [g, off], [y]))
        ours = assert_matches_tflm(model, [np.full((1, 1), -127, np.int8), np.full((1, 1), -128, np.int8)])
        assert bool(ours[0][0, 0]) is expected


def test_refuses_mixed_types_and_non_bool_output() -> None:
    q = Quant(0.1, 0)
    a, b = Tensor("a", (2,), np.int8, quant=q), Tensor("b", (2,), np.int32)
    y = Tensor("y", (2,), np.bool_)
    with pytest.raises(ModelError, match="input types differ"):
        Interpreter(model_content=build_model(Model([Operator("GREATER", [a, b], [y])], [a, b], [y]))).allocate_tensors()
    b8, y8 = Tensor("b", (2,), np.int8, quant=q), Tensor("y", (2,), np.int8, quant=q)
    with pytest.raises(ModelError, match="supported: BOOL"):
        Interpreter(model_content=build_model(Model([Operator("GREATER", [a, b8], [y8])], [a, b8], [y8]))).allocate_tensors()
