"""STRIDED_SLICE on int8 data with begin/end/shrink masks and negative strides."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap import Interpreter

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm, random_int8

Q = Quant(0.02, 5)


def expected_shape(shape, begin, end, strides, bm, em, sm):
    """Independent derivation through Python's own slicing semantics (which TF mirrors for
    masks and clamping when expressed with None for masked ends)."""
    index = []
    for a, d in enumerate(shape):
        if sm >> a & 1:  # TFLite: a begin_mask on a shrunk axis starts it at 0
            index.append(0 if bm >> a & 1 else (begin[a] if begin[a] >= 0 else begin[a] + d))
            continue
        b = None if bm >> a & 1 else begin[a]
        e = None if em >> a & 1 else end[a]
        index.append(slice(b, e, strides[a]))
    return np.empty(shape)[tuple(index)].shape, tuple(index)


@st.composite
def cases(draw):
    rank = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=rank, max_size=rank)))
    begin, end, strides = [], [], []
    sm = 0
    for a, d in enumerate(shape):
        s = draw(st.sampled_from([1, 1, 2, 3, -1, -2]))
        begin.append(draw(st.integers(-d, d - 1)))
        end.append(draw(st.integers(-d - 1, d + 1)))
        strides.append(s)
        if draw(st.integers(0, 5)) == 0:
            sm |= 1 << a
            strides[-1] = abs(s)  # a shrunk axis with a negative stride is refused (tested below)
    bm = draw(st.integers(0, 2**rank - 1))
    em = draw(st.integers(0, 2**rank - 1))
    out_shape, index = expected_shape(shape, begin, end, strides, bm, em, sm)
    if 0 in out_shape or len(out_shape) == 0:
        sm = 0
        out_shape, index = expected_shape(shape, begin, end, strides, bm, em, sm)
    x = Tensor("x", shape, np.int8, quant=Q)
    i32 = lambda n, v: Tensor(n, (rank,), np.int32, data=np.array(v, np.int32))  # noqa: E731
    y = Tensor("y", out_shape, np.int8, quant=Q)
    op = Operator("STRIDED_SLICE", [x, i32("b", begin), i32("e", end), i32("s", strides)], [y],
                  {"begin_mask": bm, "end_mask": em, "shrink_axis_mask": sm})
    xv = random_int8(np.random.default_rng(draw(st.integers(0, 2**31))), shape)
    return build_model(Model([op], [x], [y])), xv, index, out_shape


@given(cases())
def test_matches_numpy_slicing_and_tflite_micro(case) -> None:
    model, x, index, out_shape = case
    if 0 in out_shape:
        return  # an empty result: nothing for TFLM to compare
    ours = Interpreter(model_content=model).run(x)[0]
    np.testing.assert_array_equal(ours, x[index])
    assert_matches_tflm(model, [x])
    assert_matches_litert_ref(model, [x])


@pytest.mark.slow
@given(cases())
def test_full(case) -> None:
    model, x, index, out_shape = case
    if 0 not in out_shape:
        assert_matches_tflm(model, [x])


def test_shrinking_with_a_negative_stride_is_refused() -> None:
    from tinyswap.errors import ModelError

    x = Tensor("x", (3,), np.int8, quant=Q)
    y = Tensor("y", (), np.int8, quant=Q)
    i32 = lambda n, v: Tensor(n, (1,), np.int32, data=np.array(v, np.int32))  # noqa: E731
    op = Operator("STRIDED_SLICE", [x, i32("b", [1]), i32("e", [2]), i32("s", [-1])], [y], {"shrink_axis_mask": 1})
    with pytest.raises(ModelError, match="selects no element"):
        Interpreter(model_content=build_model(Model([op], [x], [y]))).allocate_tensors()
