"""SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND (3-D and 4-D) against TFLite Micro and LiteRT.

TFLM's pad value is uninitialised memory (`SpaceToBatchParams.output_offset` is never set in
`micro/kernels/space_to_batch_nd.cc`): measured here, a fresh interpreter pads with 0 or with
leftovers of an earlier one (32 after person_detect ran). Its padded positions are therefore
no golden: TFLM is compared on every non-padded position, and our TFLM profile pads with 0,
what a zero-initialised (.bss) arena gives on a device. LiteRT pads with the zero point and is
compared everywhere.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyswap.export.tflite_builder import Model, Operator, Tensor, build_model
from tinyswap.kernels.base import Profile
from tinyswap.kernels.batch_to_space_nd import BatchToSpaceNDParams
from tinyswap.kernels.space_to_batch_nd import SpaceToBatchNDParams

from tests.op_cases import activation_quant, prepare, rng_from, spec
from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm, random_int8


@st.composite
def s2b_cases(draw):
    rng = rng_from(draw)
    spatial = draw(st.integers(1, 2))
    block = [draw(st.integers(1, 3)) for _ in range(spatial)]
    dims, pads = [], []
    for b in block:
        before, after = draw(st.integers(0, 3)), draw(st.integers(0, 3))
        d = draw(st.integers(1, 3)) * b - before - after
        if d < 1:
            before, after, d = 0, 0, b * draw(st.integers(1, 3))
        dims.append(d)
        pads.append((before, after))
    batch, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    shape = (batch, *dims, c)
    out = (batch * int(np.prod(block)), *[(d + a + b) // k for d, (a, b), k in zip(dims, pads, block)], c)
    q = draw(activation_quant())
    x, y = Tensor("x", shape, np.int8, quant=q), Tensor("y", out, np.int8, quant=q)
    bs = Tensor("block", (spatial,), np.int32, data=np.array(block, np.int32))
    pd = Tensor("pads", (spatial, 2), np.int32, data=np.array(pads, np.int32))
    model = build_model(Model([Operator("SPACE_TO_BATCH_ND", [x, bs, pd], [y])], [x], [y]))
    back = Tensor("back", shape, np.int8, quant=q)
    round_trip = build_model(Model([Operator("SPACE_TO_BATCH_ND", [x, bs, pd], [y]),
                                    Operator("BATCH_TO_SPACE_ND", [y, Tensor("block2", (spatial,), np.int32, data=np.array(block, np.int32)),
                                                                   Tensor("crops", (spatial, 2), np.int32, data=np.array(pads, np.int32))], [back])],
                                   [x], [back]))
    return model, round_trip, [random_int8(rng, shape)]


def assert_matches_tflm_off_padding(model: bytes, inputs: list[np.ndarray]) -> None:
    from tinyswap import Interpreter
    from tinyswap.oracles import run_tflm

    ours = Interpreter(model_content=model).run(*inputs)[0]
    # Padded positions are those that stay 0 when every input value is 1.
    padded = Interpreter(model_content=model).run(np.ones_like(inputs[0]))[0] == 0
    assert np.all(ours[padded] == 0)
    golden = run_tflm(model, inputs)[0]
    np.testing.assert_array_equal(ours[~padded], golden[~padded])


@given(s2b_cases())
def test_space_to_batch_matches_oracles(case) -> None:
    model, _, inputs = case
    assert_matches_tflm_off_padding(model, inputs)
    assert_matches_litert_ref(model, inputs)


@given(s2b_cases())
def test_batch_to_space_inverts_it(case) -> None:
    _, round_trip, inputs = case
    out = assert_matches_tflm(round_trip, inputs)[0]
    np.testing.assert_array_equal(out, inputs[0])
    assert_matches_litert_ref(round_trip, inputs)


@pytest.mark.slow
@given(s2b_cases())
def test_full(case) -> None:
    model, round_trip, inputs = case
    assert_matches_tflm_off_padding(model, inputs)
    assert_matches_litert_ref(model, inputs)
    assert_matches_tflm(round_trip, inputs)


def test_prepare_builds_the_hand_derived_params_records() -> None:
    x, y = spec(0, (1, 4, 4, 1), np.int8, 0.1, 5), spec(3, (4, 2, 3, 1), np.int8, 0.1, 5)
    block = spec(1, (2,), np.int32, constant=np.array([2, 2], np.int32))
    pads = spec(2, (2, 2), np.int32, constant=np.array([[0, 0], [1, 1]], np.int32))
    # TFLM pads with 0 (a zero-initialised arena), LiteRT with the output zero point 5.
    s2b = prepare("SPACE_TO_BATCH_ND", [x, block, pads], [y])
    assert s2b.params == SpaceToBatchNDParams(block_shape=(2, 2), paddings=((0, 0), (1, 1)), pad_value=0)
    assert tuple(s2b.output_shapes) == ((4, 2, 3, 1),)  # 4 blocks of (4 / 2) x (6 / 2)
    litert = prepare("SPACE_TO_BATCH_ND", [x, block, pads], [y], profile=Profile.LITERT)
    assert litert.params.pad_value == 5
    crops = spec(2, (2, 2), np.int32, constant=np.array([[0, 1], [1, 0]], np.int32))
    b2s = prepare("BATCH_TO_SPACE_ND", [spec(0, (4, 2, 3, 1), np.int8, 0.1, 5), block, crops],
                  [spec(3, (1, 3, 5, 1), np.int8, 0.1, 5)])
    assert b2s.params == BatchToSpaceNDParams(block_shape=(2, 2), crops=((0, 1), (1, 0)))
    assert tuple(b2s.output_shapes) == ((1, 3, 5, 1),)  # (2 * 2 - 1) x (3 * 2 - 1)
