"""TRANSPOSE (int8, int16, float32, rank 1-5) against TFLite Micro and LiteRT BUILTIN_REF."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyswap.errors import ModelError
from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap import Interpreter

from tests.op_cases import activation_quant, rng_from
from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm, random_int8


@st.composite
def transpose_cases(draw, dtype=np.int8):
    rng = rng_from(draw)
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=5)))
    perm = tuple(draw(st.permutations(range(len(shape)))))
    q = draw(activation_quant()) if dtype != np.float32 else None
    x = Tensor("x", shape, dtype, quant=q)
    p = Tensor("perm", (len(shape),), np.int32, data=np.array(perm, np.int32))
    y = Tensor("y", tuple(shape[i] for i in perm), dtype, quant=q)
    model = build_model(Model([Operator("TRANSPOSE", [x, p], [y])], [x], [y]))
    if dtype == np.int8:
        value = random_int8(rng, shape)
    elif dtype == np.int16:
        value = rng.integers(-32768, 32768, size=shape, dtype=np.int16)
    else:
        value = rng.standard_normal(shape).astype(np.float32)
    return model, [value], perm


@given(transpose_cases())
def test_int8_matches_tflite_micro_and_litert(case) -> None:
    model, values, perm = case
    ours = assert_matches_tflm(model, values)
    assert_matches_litert_ref(model, values)
    np.testing.assert_array_equal(ours[0], np.transpose(values[0], perm))  # and it is a transpose


@given(st.sampled_from([np.float32, np.int16]).flatmap(transpose_cases))
def test_float32_and_int16_match_tflite_micro(case) -> None:
    assert_matches_tflm(*case[:2])


@pytest.mark.slow
@given(st.sampled_from([np.int8, np.float32, np.int16]).flatmap(transpose_cases))
def test_full(case) -> None:
    assert_matches_tflm(*case[:2])


def test_a_perm_that_is_no_permutation_is_refused() -> None:
    x = Tensor("x", (2, 3), np.int8, quant=Quant(0.1, 0))
    p = Tensor("perm", (2,), np.int32, data=np.array([0, 0], np.int32))
    y = Tensor("y", (2, 2), np.int8, quant=Quant(0.1, 0))
    model = build_model(Model([Operator("TRANSPOSE", [x, p], [y])], [x], [y]))
    with pytest.raises(ModelError, match="not a permutation"):
        Interpreter(model_content=model).allocate_tensors()


def test_rank_6_is_refused_as_tflite_micro_refuses_it() -> None:
    from tinyswap.oracles import run_tflm

    shape = (1, 1, 1, 1, 2, 3)
    x = Tensor("x", shape, np.int8, quant=Quant(0.1, 0))
    p = Tensor("perm", (6,), np.int32, data=np.array([0, 1, 2, 3, 5, 4], np.int32))
    y = Tensor("y", (1, 1, 1, 1, 3, 2), np.int8, quant=Quant(0.1, 0))
    model = build_model(Model([Operator("TRANSPOSE", [x, p], [y])], [x], [y]))
    with pytest.raises(ModelError, match="rank 6"):
        Interpreter(model_content=model).allocate_tensors()
    with pytest.raises(Exception):
        run_tflm(model, [np.zeros(shape, np.int8)])
