"""Strategy for single-input, single-output op models (activations, softmax, (de)quantize)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from tinyswap.export.tflite_builder import Model, Operator, Tensor, build_model

from tests.op_cases import activation_quant, rng_from
from tests.oracle_check import random_int8


@st.composite
def unary_cases(draw, op: str, in_dtype=np.int8, out_dtype=np.int8, out_quant=None, same_quant: bool = False,
                options: dict | None = None):
    rng = rng_from(draw)
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)))
    qx = draw(activation_quant(0.01, 0.2)) if in_dtype == np.int8 else None
    if out_dtype != np.int8:
        qy = None
    elif out_quant is not None:
        qy = out_quant
    elif same_quant and qx is not None:
        qy = qx
    else:
        qy = draw(activation_quant(0.01, 0.2))
    x = Tensor("x", shape, in_dtype, quant=qx)
    y = Tensor("y", shape, out_dtype, quant=qy)
    model = build_model(Model([Operator(op, [x], [y], options or {})], [x], [y]))
    if in_dtype == np.int8:
        value = random_int8(rng, shape)
    else:
        value = (rng.standard_normal(shape) * draw(st.floats(0.1, 20))).astype(np.float32)
    return model, [value]
