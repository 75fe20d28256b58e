"""CONCATENATION, PACK, SQUEEZE and EXPAND_DIMS: byte-moving ops against TFLite Micro."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap import Interpreter
from tinyswap.errors import ModelError
from tinyswap.kernels.concatenation import ConcatenationParams
from tinyswap.kernels.pack import PackParams

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm, random_int8
from tests.op_cases import prepare, spec

Q = Quant(0.07, -9)


@st.composite
def concat_cases(draw):
    rank = draw(st.integers(1, 4))
    base = draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank))
    axis = draw(st.integers(-rank, rank - 1))
    n = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    shapes = []
    for _ in range(n):
        s = list(base)
        s[axis] = draw(st.integers(1, 4))
        shapes.append(tuple(s))
    xs = [Tensor(f"x{i}", s, np.int8, quant=Q) for i, s in enumerate(shapes)]
    out = list(base)
    out[axis] = sum(s[axis] for s in shapes)
    y = Tensor("y", tuple(out), np.int8, quant=Q)
    model = build_model(Model([Operator("CONCATENATION", xs, [y], {"axis": axis})], xs, [y]))
    values = [random_int8(rng, s) for s in shapes]
    return model, values, axis


@given(concat_cases())
def test_concatenation_matches_oracles(case) -> None:
    model, values, axis = case
    out = assert_matches_tflm(model, values)
    np.testing.assert_array_equal(out[0], np.concatenate(values, axis=axis))
    assert_matches_litert_ref(model, values)


@pytest.mark.slow
@given(concat_cases())
def test_concatenation_full(case) -> None:
    model, values, _ = case
    assert_matches_tflm(model, values)


def test_concatenation_with_different_scales_is_refused() -> None:
    a = Tensor("a", (1, 2), np.int8, quant=Q)
    b = Tensor("b", (1, 2), np.int8, quant=Quant(0.5, 0))
    y = Tensor("y", (1, 4), np.int8, quant=Q)
    model = build_model(Model([Operator("CONCATENATION", [a, b], [y], {"axis": 1})], [a, b], [y]))
    with pytest.raises(ModelError, match="quantization differ"):
        Interpreter(model_content=model).allocate_tensors()


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_pack_matches_oracles(axis: int) -> None:
    a, b = Tensor("a", (2, 3), np.int8, quant=Q), Tensor("b", (2, 3), np.int8, quant=Q)
    shape = [2, 3]
    shape.insert(axis % 3, 2)
    y = Tensor("y", tuple(shape), np.int8, quant=Q)
    model = build_model(Model([Operator("PACK", [a, b], [y], {"values_count": 2, "axis": axis})], [a, b], [y]))
    rng = np.random.default_rng(axis + 5)
    va, vb = random_int8(rng, (2, 3)), random_int8(rng, (2, 3))
    out = assert_matches_tflm(model, [va, vb])
    np.testing.assert_array_equal(out[0], np.stack([va, vb], axis=axis))
    assert_matches_litert_ref(model, [va, vb])


@pytest.mark.parametrize("dims,out", [((), (3, 4)), ((0,), (3, 1, 4)), ((2,), (1, 3, 4)), ((-2, 0), (3, 4))])
def test_squeeze_matches_oracles(dims, out) -> None:
    x = Tensor("x", (1, 3, 1, 4), np.int8, quant=Q)
    y = Tensor("y", out, np.int8, quant=Q)
    model = build_model(Model([Operator("SQUEEZE", [x], [y], {"squeeze_dims": list(dims)})], [x], [y]))
    v = random_int8(np.random.default_rng(9), (1, 3, 1, 4))
    assert assert_matches_tflm(model, [v])[0].shape == out
    assert_matches_litert_ref(model, [v])


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_expand_dims_matches_oracles(axis: int) -> None:
    x = Tensor("x", (2, 5), np.int8, quant=Q)
    shape = [2, 5]
    shape.insert(axis % 3, 1)
    y = Tensor("y", tuple(shape), np.int8, quant=Q)
    ax = Tensor("axis", (1,), np.int32, data=np.array([axis], np.int32))
    model = build_model(Model([Operator("EXPAND_DIMS", [x, ax], [y])], [x], [y]))
    v = random_int8(np.random.default_rng(3), (2, 5))
    assert assert_matches_tflm(model, [v])[0].shape == tuple(shape)
    assert_matches_litert_ref(model, [v])


def test_prepare_builds_the_axis_params_records() -> None:
    # Negative axes are normalised: -1 of rank 2 is 1; PACK's -1 counts the new axis (rank 2).
    a, b = spec(0, (2, 3), np.int8, 0.1, 0), spec(1, (2, 1), np.int8, 0.1, 0)
    concat = prepare("CONCATENATION", [a, b], [spec(2, (2, 4), np.int8, 0.1, 0)], {"axis": -1})
    assert concat.params == ConcatenationParams(axis=1) and tuple(concat.output_shapes) == ((2, 4),)
    c, d = spec(0, (3,), np.int8, 0.1, 0), spec(1, (3,), np.int8, 0.1, 0)
    pack = prepare("PACK", [c, d], [spec(2, (3, 2), np.int8, 0.1, 0)], {"values_count": 2, "axis": -1})
    assert pack.params == PackParams(axis=1) and tuple(pack.output_shapes) == ((3, 2),)


def test_more_inputs_than_tflm_concatenates_are_refused_like_tflm() -> None:
    from tinyswap.kernels.concatenation import MAX_INPUTS
    from tinyswap.oracles import run_tflm

    q = Quant(0.1, 0)
    for n in (MAX_INPUTS, MAX_INPUTS + 1):
        xs = [Tensor(f"x{i}", (1, 2), np.int8, quant=q) for i in range(n)]
        y = Tensor("y", (1, 2 * n), np.int8, quant=q)
        model = build_model(Model([Operator("CONCATENATION", xs, [y], dict(axis=1, fused_activation_function=0))],
                                  xs, [y]))
        inputs = [np.full((1, 2), i, np.int8) for i in range(n)]
        if n <= MAX_INPUTS:
            assert_matches_tflm(model, inputs)
            continue
        with pytest.raises(ModelError, match=r"operator 0 \(CONCATENATION\): has 11 inputs; TFLM concatenates at most 10"):
            Interpreter(model_content=model).allocate_tensors()
        with pytest.raises(RuntimeError):  # concatenation.cc: num_inputs <= kMaxInputNum
            run_tflm(model, inputs)
