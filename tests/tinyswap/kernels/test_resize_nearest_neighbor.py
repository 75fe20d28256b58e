"""RESIZE_NEAREST_NEIGHBOR (int8, int16, float32; align_corners, half_pixel_centers) against
TFLite Micro and LiteRT BUILTIN_REF."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyswap.errors import ModelError
from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap import Interpreter
from tinyswap.kernels.resize_nearest_neighbor import nearest_indices

from tests.op_cases import activation_quant, rng_from
from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm, random_int8


@st.composite
def resize_cases(draw, dtype=np.int8):
    rng = rng_from(draw)
    b, h, w, c = draw(st.integers(1, 2)), draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(1, 3))
    oh, ow = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    align = draw(st.booleans())
    half = False if align else draw(st.booleans())  # TFLite refuses both at once
    q = draw(activation_quant()) if dtype != np.float32 else None
    x = Tensor("x", (b, h, w, c), dtype, quant=q)
    size = Tensor("size", (2,), np.int32, data=np.array([oh, ow], np.int32))
    y = Tensor("y", (b, oh, ow, c), dtype, quant=q)
    op = Operator("RESIZE_NEAREST_NEIGHBOR", [x, size], [y], {"align_corners": align, "half_pixel_centers": half})
    model = build_model(Model([op], [x], [y]))
    if dtype == np.int8:
        value = random_int8(rng, x.shape)
    elif dtype == np.int16:
        value = rng.integers(-32768, 32768, size=x.shape, dtype=np.int16)
    else:
        value = rng.standard_normal(x.shape).astype(np.float32)
    return model, [value]


@given(resize_cases())
def test_int8_matches_tflite_micro_and_litert(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


@given(st.sampled_from([np.float32, np.int16]).flatmap(resize_cases))
def test_float32_and_int16_match_tflite_micro(case) -> None:
    assert_matches_tflm(*case)


@pytest.mark.slow
@given(st.sampled_from([np.int8, np.float32, np.int16]).flatmap(resize_cases))
def test_full(case) -> None:
    assert_matches_tflm(*case)


def test_indices_of_a_2x_upsample_and_of_align_corners() -> None:
    # in 3 -> out 6: scale 0.5, floor(o * 0.5) = 0 0 1 1 2 2; half-pixel: floor((o + .5) * .5)
    np.testing.assert_array_equal(nearest_indices(3, 6, False, False), [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(nearest_indices(3, 6, False, True), [0, 0, 1, 1, 2, 2])
    # align corners, in 3 -> out 5: scale 0.5, round-half-away(o * 0.5) = 0 1 1 2 2
    np.testing.assert_array_equal(nearest_indices(3, 5, True, False), [0, 1, 1, 2, 2])


def test_a_non_constant_size_is_refused() -> None:
    x = Tensor("x", (1, 2, 2, 1), np.int8, quant=Quant(0.1, 0))
    size = Tensor("size", (2,), np.int32)
    y = Tensor("y", (1, 4, 4, 1), np.int8, quant=Quant(0.1, 0))
    model = build_model(Model([Operator("RESIZE_NEAREST_NEIGHBOR", [x, size], [y])], [x, size], [y]))
    with pytest.raises(ModelError, match="constant"):
        Interpreter(model_content=model).allocate_tensors()
