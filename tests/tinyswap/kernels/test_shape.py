"""SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE: the converter's dynamic-batch Flatten.

The chain is folded at prepare time, so the RESHAPE gets a static target and batching works.
"""

from __future__ import annotations

import numpy as np

from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap import Interpreter

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm, random_int8

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
