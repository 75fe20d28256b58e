"""ADD (int8 with broadcasting, float32) against TFLite Micro and LiteRT BUILTIN_REF."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from tinyswap.kernels.add import AddParams
from tinyswap.kernels.quantized import FloatActivation

from tests.binary_cases import binary_cases
from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm
from tests.op_cases import prepare, run_kernel, spec


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


def test_prepare_builds_the_hand_derived_params_record() -> None:
    # s1 = 0.5, s2 = 0.25, s_out = 1: twice the larger input scale is 1.0, so the input
    # multipliers are 0.5 = 2**30 * 2**(0 - 31) and 0.25 (shift -1); the output's is
    # 1 / (2**20 * 1.0) = 0.5 * 2**-19 -> (2**30, -19).
    a, b, y = spec(0, (1,), np.int8, 0.5, 1), spec(1, (1,), np.int8, 0.25, -2), spec(2, (1,), np.int8, 1.0, 3)
    prepared = prepare("ADD", [a, b], [y], {"fused_activation_function": 0})
    assert prepared.params == AddParams(input1_zero_point=1, input2_zero_point=-2, output_zero_point=3,
                                        input1_multiplier=2**30, input1_shift=0, input2_multiplier=2**30,
                                        input2_shift=-1, output_multiplier=2**30, output_shift=-19,
                                        act_min=-128, act_max=127)
    # a = 5, b = 6: 0.5 * (5 - 1) + 0.25 * (6 + 2) = 4.0 -> 4 + 3 = 7.
    np.testing.assert_array_equal(run_kernel("ADD", prepared, np.array([5], np.int8), np.array([6], np.int8))[0], [7])
    floats = prepare("ADD", [spec(0, (2,), np.float32), spec(1, (2,), np.float32)], [spec(2, (2,), np.float32)],
                     {"fused_activation_function": 2})
    assert floats.params == FloatActivation(-1.0, 1.0)  # RELU_N1_TO_1
