"""MUL (int8 with broadcasting, float32) against TFLite Micro and LiteRT BUILTIN_REF."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from tinyswap.kernels.mul import MulParams

from tests.binary_cases import binary_cases
from tests.oracle_check import assert_matches_tflm
from tests.op_cases import prepare, run_kernel, spec


@given(binary_cases("MUL"))
def test_matches_tflite_micro(case) -> None:
    assert_matches_tflm(*case)


def assert_within_one_lsb_of_litert(model: bytes, inputs) -> int:
    """LiteRT's BUILTIN_REF MUL is not the reference arithmetic on exact rounding ties: when
    s1 * s2 / s_out is (nearly) a short dyadic number such as 2**-6, products land exactly on
    .5 and LiteRT rounds some of them the other way. Measured bound: 1 LSB. Returns the count."""
    from tinyswap import Interpreter
    from tinyswap.oracles import run_litert

    ours = Interpreter(model_content=model, profile="litert").run(*inputs)[0].astype(int)
    theirs = run_litert(model, inputs)[0].astype(int)
    diff = np.abs(ours - theirs.reshape(ours.shape))
    assert diff.max() <= 1, f"LiteRT MUL differs by {diff.max()} LSB (documented bound: 1)"
    return int((diff > 0).sum())


@given(binary_cases("MUL"))
def test_litert_profile_within_one_lsb_of_litert(case) -> None:
    assert_within_one_lsb_of_litert(*case)


def test_litert_power_of_two_scales_bound() -> None:
    # Input scales 2**-4 and output 0.025: LiteRT differs from the reference (and TFLM)
    # arithmetic on 8 of 256 outputs, each by exactly 1 LSB. The golden (TFLM) is unaffected.
    from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
    from tinyswap import Interpreter
    from tinyswap.oracles import run_litert

    a = Tensor("a", (256,), np.int8, quant=Quant(0.0625, 2))
    b = Tensor("b", (256,), np.int8, quant=Quant(0.0625, 3))
    y = Tensor("y", (256,), np.int8, quant=Quant(0.025, 0))
    model = build_model(Model([Operator("MUL", [a, b], [y])], [a, b], [y]))
    va, vb = np.arange(-128, 128).astype(np.int8), np.ones(256, np.int8)
    ours = Interpreter(model_content=model, profile="litert").run(va, vb)[0].astype(int)
    assert_matches_tflm(model, [va, vb])
    diff = np.abs(ours - run_litert(model, [va, vb])[0].astype(int))
    assert diff.max() <= 1
    assert int((diff > 0).sum()) == 8


@given(binary_cases("MUL", float_model=True))
def test_float32_is_exact(case) -> None:
    # One float32 operation per element: IEEE arithmetic, so equality is exact here too.
    assert_matches_tflm(*case)


@pytest.mark.slow
@given(binary_cases("MUL"))
def test_full(case) -> None:
    assert_matches_tflm(*case)
    assert_within_one_lsb_of_litert(*case)


def test_prepare_builds_the_hand_derived_params_record() -> None:
    # s_a * s_b / s_out = 0.5 * 0.25 / 0.125 = 1 = 0.5 * 2**1 -> (2**30, 1). RELU with
    # y_zp -4: act_min -4.
    a, b, y = spec(0, (2,), np.int8, 0.5, 0), spec(1, (2,), np.int8, 0.25, 0), spec(2, (2,), np.int8, 0.125, -4)
    prepared = prepare("MUL", [a, b], [y], {"fused_activation_function": 1})
    assert prepared.params == MulParams(0, 0, -4, multiplier=2**30, shift=1, act_min=-4, act_max=127)
    # 3 * -2 = -6 - 4 = -10, clamped to -4; 3 * 2 = 6 - 4 = 2.
    out = run_kernel("MUL", prepared, np.array([3, 3], np.int8), np.array([-2, 2], np.int8))[0]
    np.testing.assert_array_equal(out, [-4, 2])
