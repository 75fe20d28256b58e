"""SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE: the converter's dynamic-batch Flatten.

The chain is folded at prepare time, so the RESHAPE gets a static target and batching works.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap import Interpreter
from tinyswap.kernels.shape import ShapeParams
from tinyswap.kernels.strided_slice import StridedSliceParams

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm, random_int8
from tests.op_cases import prepare, run_kernel, spec

Q = Quant(0.1, -2)


def flatten_model(shape: tuple[int, ...]) -> bytes:
    x = Tensor("x", shape, np.int8, quant=Q)
    s = Tensor("s", (len(shape),), np.int32)
    batch = Tensor("batch", (), np.int32)
    i32 = lambda name, v: Tensor(name, (len(v),), np.int32, data=np.array(v, np.int32))  # noqa: E731
    minus_one = Tensor("m1", (), np.int32, data=np.array(-1, np.int32))
    target = Tensor("target", (2,), np.int32)
    y = Tensor("y", (shape[0], int(np.prod(shape[1:]))), np.int8, quant=Q)
    ops = [
        Operator("SHAPE", [x], [s], {"out_type": 2}),
        Operator("STRIDED_SLICE", [s, i32("b", [0]), i32("e", [1]), i32("st", [1])], [batch],
                 {"shrink_axis_mask": 1}),
        Operator("PACK", [batch, minus_one], [target], {"values_count": 2, "axis": 0}),
        Operator("RESHAPE", [x, target], [y]),
    ]
    return build_model(Model(ops, [x], [y]))


def test_flatten_chain_matches_oracles() -> None:
    model = flatten_model((1, 4, 3, 2))
    x = random_int8(np.random.default_rng(1), (1, 4, 3, 2))
    out = assert_matches_tflm(model, [x])
    assert out[0].shape == (1, 24)
    assert_matches_litert_ref(model, [x])


def test_flatten_chain_batches() -> None:
    model = flatten_model((1, 4, 3, 2))
    x = random_int8(np.random.default_rng(2), (7, 4, 3, 2))
    out = Interpreter(model_content=model).run(x)[0]
    np.testing.assert_array_equal(out, x.reshape(7, 24))


def test_prepare_builds_the_shape_and_slice_params_records() -> None:
    shape = prepare("SHAPE", [spec(0, (1, 3, 4), np.int8, 0.1, 0)], [spec(1, (3,), np.int32)])
    assert isinstance(shape.params, ShapeParams)
    np.testing.assert_array_equal(shape.params.value, [1, 3, 4])
    assert shape.params.value.dtype == np.int32
    with pytest.raises(ValueError):  # the record is frozen, its array too
        shape.params.value[0] = 2
    # x[1:3] of a [4] vector, and the shape value folded through the slice at prepare time.
    begin, end, stride = (spec(i, (1,), np.int32, constant=np.array([v], np.int32))
                          for i, v in ((1, 1), (2, 3), (3, 1)))
    sliced = prepare("STRIDED_SLICE", [spec(0, (4,), np.int32), begin, end, stride], [spec(4, (2,), np.int32)])
    assert isinstance(sliced.params, StridedSliceParams)
    np.testing.assert_array_equal(sliced.params.mesh[0], [1, 2])
    np.testing.assert_array_equal(run_kernel("STRIDED_SLICE", sliced, np.array([5, 6, 7, 8], np.int32))[0], [6, 7])
