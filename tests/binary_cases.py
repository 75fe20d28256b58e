"""Strategy for single binary-op models (ADD, SUB, MUL) with NumPy-style broadcasting."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model

from tests.op_cases import activation_quant, rng_from
from tests.oracle_check import random_int8


@st.composite
def broadcast_shapes(draw) -> tuple[tuple[int, ...], tuple[int, ...]]:
    rank = draw(st.integers(1, 4))
    full = [draw(st.integers(1, 5)) for _ in range(rank)]
    a = [d if draw(st.integers(0, 3)) else 1 for d in full]
    b = [d if draw(st.integers(0, 3)) else 1 for d in full]
    b = b[draw(st.integers(0, rank - 1)):]  # a lower-rank second input broadcasts from the right
    return tuple(a), tuple(b)


@st.composite
def binary_cases(draw, op: str, float_model: bool = False):
    rng = rng_from(draw)
    sa, sb = draw(broadcast_shapes())
    out = tuple(np.broadcast_shapes(sa, sb))
    act = draw(st.sampled_from([0, 1, 2, 3]))
    if float_model:
        a, b, y = (Tensor(n, s, np.float32) for n, s in (("a", sa), ("b", sb), ("y", out)))
        values = [rng.standard_normal(sa).astype(np.float32) * 3, rng.standard_normal(sb).astype(np.float32) * 3]
    else:
        qa, qb = draw(activation_quant(0.005, 0.1)), draw(activation_quant(0.005, 0.1))
        sa_, sb_ = float(qa.scale[0]), float(qb.scale[0])
        if op == "MUL":
            ys = sa_ * sb_ * 128 * 128 / 128 * draw(st.floats(0.05, 2))
        else:
            ys = max(sa_, sb_) * 2 * draw(st.floats(0.5, 3))
        qy = Quant(ys, draw(st.integers(-50, 50)))
        a, b, y = Tensor("a", sa, np.int8, quant=qa), Tensor("b", sb, np.int8, quant=qb), Tensor("y", out, np.int8, quant=qy)
        values = [random_int8(rng, sa), random_int8(rng, sb)]
    model = build_model(Model([Operator(op, [a, b], [y], {"fused_activation_function": act})], [a, b], [y]))
    return model, values
