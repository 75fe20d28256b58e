"""RESHAPE (with a shape tensor, with new_shape, with -1) against TFLite Micro and LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap import Interpreter
from tinyswap.errors import ModelError

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm, random_int8
from tests.op_cases import prepare, spec

Q = Quant(0.05, 3)


def reshape_model(in_shape, target, via_tensor: bool, out_shape) -> bytes:
    x = Tensor("x", tuple(in_shape), np.int8, quant=Q)
    y = Tensor("y", tuple(out_shape), np.int8, quant=Q)
    if via_tensor:
        s = Tensor("shape", (len(target),), np.int32, data=np.array(target, np.int32))
        op = Operator("RESHAPE", [x, s], [y])
    else:
        op = Operator("RESHAPE", [x], [y], {"new_shape": list(target)})
    return build_model(Model([op], [x], [y]))


@st.composite
def cases(draw):
    dims = draw(st.lists(st.integers(1, 5), min_size=1, max_size=4))
    size = int(np.prod(dims))
    factors = [d for d in range(1, size + 1) if size % d == 0]
    a = draw(st.sampled_from(factors))
    target = [a, size // a]
    out_shape = list(target)
    if draw(st.booleans()):
        target[draw(st.integers(0, 1))] = -1
    via_tensor = draw(st.booleans())
    seed = draw(st.integers(0, 2**31))
    return reshape_model(dims, target, via_tensor, out_shape), [random_int8(np.random.default_rng(seed), dims)], out_shape


@given(cases())
def test_matches_oracles(case) -> None:
    model, inputs, out_shape = case
    out = assert_matches_tflm(model, inputs)
    assert list(out[0].shape) == out_shape
    np.testing.assert_array_equal(out[0].reshape(-1), inputs[0].reshape(-1))  # bytes unchanged
    assert_matches_litert_ref(model, inputs)


@pytest.mark.slow
@given(cases())
def test_matches_oracles_full(case) -> None:
    model, inputs, _ = case
    assert_matches_tflm(model, inputs)
    assert_matches_litert_ref(model, inputs)


def test_batch_resize_follows_a_constant_leading_one() -> None:
    # person_detect ends in RESHAPE to a constant [1, 2]: a batch of 5 must give [5, 2].
    model = reshape_model((1, 1, 1, 2), [1, 2], True, (1, 2))
    x = random_int8(np.random.default_rng(0), (5, 1, 1, 2))
    out = Interpreter(model_content=model).run(x)[0]
    np.testing.assert_array_equal(out, x.reshape(5, 2))


def test_impossible_reshape_is_refused() -> None:
    model = reshape_model((2, 3), [4, 2], True, (4, 2))
    with pytest.raises(ModelError, match="cannot reshape"):
        Interpreter(model_content=model).allocate_tensors()


def test_layout_ops_need_no_params_only_shapes() -> None:
    x = spec(0, (1, 2, 1, 3), np.int8, 0.1, 0)
    target = spec(1, (2,), np.int32, constant=np.array([-1, 3], np.int32))
    reshape = prepare("RESHAPE", [x, target], [spec(2, (2, 3), np.int8, 0.1, 0)])
    assert reshape.params is None and tuple(reshape.output_shapes) == ((2, 3),)  # -1 = 6 / 3
    squeeze = prepare("SQUEEZE", [x], [spec(1, (2, 3), np.int8, 0.1, 0)])
    assert squeeze.params is None and tuple(squeeze.output_shapes) == ((2, 3),)
    axis = spec(1, (1,), np.int32, constant=np.array([-1], np.int32))
    expand = prepare("EXPAND_DIMS", [x, axis], [spec(2, (1, 2, 1, 3, 1), np.int8, 0.1, 0)])
    assert expand.params is None and tuple(expand.output_shapes) == ((1, 2, 1, 3, 1),)
