"""SUB (int8 with broadcasting, float32) against TFLite Micro and LiteRT BUILTIN_REF."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from tinyswap.kernels.add import AddParams

from tests.binary_cases import binary_cases
from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm
from tests.op_cases import prepare, run_kernel, spec


@given(binary_cases("SUB"))
def test_matches_tflite_micro(case) -> None:
    assert_matches_tflm(*case)


@given(binary_cases("SUB"))
def test_litert_profile_matches_litert_reference(case) -> None:
    assert_matches_litert_ref(*case)


@given(binary_cases("SUB", float_model=True))
def test_float32_is_exact(case) -> None:
    # One float32 operation per element: IEEE arithmetic, so equality is exact here too.
    assert_matches_tflm(*case)


@pytest.mark.slow
@given(binary_cases("SUB"))
def test_full(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


def test_every_input_pair_on_a_tie_prone_scale_triple_matches_tflite_micro_and_litert() -> None:
    """s1 = s2 = 0.0625, s_out = 0.15: (a - b) * 0.0625 / 0.15 lands next to x.5 for every
    a - b = 6 (mod 12); how the real multipliers are computed (float32 or double) decides which
    way those round. Found by the full hypothesis run (a 1-LSB difference at a - b = -30)."""
    import numpy as np

    from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
    from tinyswap import Interpreter
    from tinyswap.oracles import LiteRTResolver, run_litert, run_tflm

    a_t = Tensor("a", (256,), np.int8, quant=Quant(0.0625, 0))
    b_t = Tensor("b", (256,), np.int8, quant=Quant(0.0625, 0))
    y_t = Tensor("y", (256,), np.int8, quant=Quant(0.15, 0))
    model = build_model(Model([Operator("SUB", [a_t, b_t], [y_t], {"fused_activation_function": 0})], [a_t, b_t], [y_t]))
    b = np.arange(-128, 128).astype(np.int8)
    ours = Interpreter(model_content=model)
    lite = Interpreter(model_content=model, profile="litert")
    for a_value in range(-128, 128):
        a = np.full(256, a_value, np.int8)
        np.testing.assert_array_equal(ours.run(a, b)[0], run_tflm(model, [a, b])[0])
        np.testing.assert_array_equal(lite.run(a, b)[0], run_litert(model, [a, b], LiteRTResolver.REF)[0])


def test_prepare_builds_the_add_params_record() -> None:
    # SUB shares ADD's parameters (s1 = 0.5, s2 = 0.25, s_out = 1: see test_add) and subtracts:
    # 0.5 * (5 - 1) - 0.25 * (6 + 2) = 0.0 -> 0 + 3 = 3.
    a, b, y = spec(0, (1,), np.int8, 0.5, 1), spec(1, (1,), np.int8, 0.25, -2), spec(2, (1,), np.int8, 1.0, 3)
    prepared = prepare("SUB", [a, b], [y], {"fused_activation_function": 0})
    assert prepared.params == AddParams(1, -2, 3, 2**30, 0, 2**30, -1, 2**30, -19, -128, 127)
    np.testing.assert_array_equal(run_kernel("SUB", prepared, np.array([5], np.int8), np.array([6], np.int8))[0], [3])
