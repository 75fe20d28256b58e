"""ADD (int8 with broadcasting, float32) against TFLite Micro and LiteRT BUILTIN_REF."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from tests.binary_cases import binary_cases
from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm


@given(binary_cases("ADD"))
def test_matches_tflite_micro(case) -> None:
    assert_matches_tflm(*case)


@given(binary_cases("ADD"))
def test_litert_profile_matches_litert_reference(case) -> None:
    assert_matches_litert_ref(*case)


@given(binary_cases("ADD", float_model=True))
def test_float32_is_exact(case) -> None:
    # One float32 operation per element: IEEE arithmetic, so equality is exact here too.
    assert_matches_tflm(*case)


@pytest.mark.slow
@given(binary_cases("ADD"))
def test_full(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


def test_add_returns_input_one_when_input_two_is_at_its_zero_point() -> None:
    # The slot design's identity (docs/architecture.md, "Slots"): s_out == s1 >= s2 and input 2 at its zero point
    # gives input 1 back bit for bit. Checked over every int8 value of input 1.
    from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
    from tinyswap import Interpreter

    q1, q2 = Quant(0.05, -7), Quant(0.02, 11)
    a, b, y = Tensor("a", (256,), np.int8, quant=q1), Tensor("b", (256,), np.int8, quant=q2), Tensor("y", (256,), np.int8, quant=q1)
    model = build_model(Model([Operator("ADD", [a, b], [y])], [a, b], [y]))
    x = np.arange(-128, 128, dtype=np.int8)
    out = assert_matches_tflm(model, [x, np.full(256, 11, np.int8)])[0]
    np.testing.assert_array_equal(out, x)
    # ... and it is not an identity in general: 5 LSB of input 2 (0.1) move it by 2 LSB.
    moved = Interpreter(model_content=model).run(x, np.full(256, 16, np.int8))[0]
    assert np.array_equal(moved[10:-10], x[10:-10] + 2)
