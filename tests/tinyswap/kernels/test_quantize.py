"""QUANTIZE (float32 -> int8, int8 -> int8) against TFLite Micro and LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap.kernels.quantize import QuantizeParams
from tinyswap.kernels.quantized import Rescale

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm
from tests.unary_cases import unary_cases
from tests.op_cases import prepare, run_kernel, spec


def test_halves_round_away_from_zero() -> None:
    # scale 0.5: 0.25 / 0.5 = 0.5 -> 1, -0.25 -> -1, 0.75 -> 1.5 -> 2; zero point 3 added.
    x = Tensor("x", (3,), np.float32)
    y = Tensor("y", (3,), np.int8, quant=Quant(0.5, 3))
    model = build_model(Model([Operator("QUANTIZE", [x], [y])], [x], [y]))
    out = assert_matches_tflm(model, [np.array([0.25, -0.25, 0.75], np.float32)])[0]
    np.testing.assert_array_equal(out, [4, 2, 5])


@given(unary_cases("QUANTIZE", np.float32, np.int8))
def test_float_to_int8(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


@given(unary_cases("QUANTIZE", np.int8, np.int8))
def test_int8_requantize(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


@pytest.mark.slow
@given(unary_cases("QUANTIZE", np.int8, np.int8))
def test_full(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


def test_prepare_builds_the_hand_derived_params_records() -> None:
    y = spec(1, (2,), np.int8, 0.5, 3)
    floats = prepare("QUANTIZE", [spec(0, (2,), np.float32)], [y])
    assert floats.params == QuantizeParams(scale=0.5, zero_point=3)
    # 1.25 / 0.5 = 2.5 -> 3 and -0.75 / 0.5 = -1.5 -> -2 (half away from zero), + 3.
    out = run_kernel("QUANTIZE", floats, np.array([1.25, -0.75], np.float32))[0]
    np.testing.assert_array_equal(out, [6, 1])
    # int8 -> int8: 0.5 / 0.25 = 2 = 0.5 * 2**2 -> (2**30, 2).
    requant = prepare("QUANTIZE", [spec(0, (2,), np.int8, 0.5, 1)], [spec(1, (2,), np.int8, 0.25, -1)])
    assert requant.params == Rescale(input_zero_point=1, output_zero_point=-1, multiplier=2**30, shift=2)
    np.testing.assert_array_equal(run_kernel("QUANTIZE", requant, np.array([3, -1], np.int8))[0], [3, -5])


def test_float_quantize_step_handles_ties_nan_and_infinities() -> None:
    # Halves away from zero; NaN gives the zero point; infinities and huge values clamp.
    from tinyswap.kernels.quantize import QuantizeParams, quantize_float

    p = QuantizeParams(0.5, 3)
    x = np.array([0.25, -0.25, 0.75, -0.75, np.nan, np.inf, -np.inf, 1e30, -1e30, 62.0, -65.0], np.float32)
    expected = np.array([4, 2, 5, 1, 3, 127, -128, 127, -128, 127, -127])
    np.testing.assert_array_equal(quantize_float(p, x), expected)


@pytest.mark.parametrize("scale, zero_point", [(0.5, 3), (0.0123, -128), (1e-30, 127), (3e37, 0), (1.0, -7)])
def test_bound_float_step_matches_quantize_float_at_ties_and_extremes(scale, zero_point) -> None:
    """The plan's float32 step (a threshold search) against `quantize_float` (the reference the
    oracle tests hold to TFLite Micro): every half-integer quotient around the int8 range and
    its float32 neighbours (the thresholds themselves), values far past saturation, signed
    zeros, NaN, infinities, subnormals, a scale so large that most levels need infinity."""
    from tinyswap.kernels.quantize import Quantize, QuantizeParams, quantize_float
    from tinyswap.kernels.base import Prepared

    p = QuantizeParams(float(np.float32(scale)), zero_point)
    s = np.float32(scale)
    with np.errstate(over="ignore"):  # a huge scale: the test's own products overflow to infinity
        halves = (np.arange(-700, 701, dtype=np.float32) / np.float32(2)) * s
        bound = np.float32(1000.0) * s if np.isfinite(np.float32(1000.0) * s) else np.float32(1e38)
        special = np.array([0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 1e-45, -1e-45, 3.4e38, -3.4e38,
                            bound, -bound, np.nextafter(bound, np.float32(0)), bound * np.float32(2)], np.float32)
        random = np.random.default_rng(3).standard_normal(2000).astype(np.float32) * s * np.float32(200)
    near = np.concatenate([halves, np.nextafter(halves, np.float32(np.inf)), np.nextafter(halves, np.float32(-np.inf))])
    x = np.concatenate([near, special, random]).astype(np.float32)
    out = np.empty(x.shape, np.int8)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # and warns of nothing
        Quantize().bind(Prepared([x.shape], p), [x], [out])()
    np.testing.assert_array_equal(out, quantize_float(p, x).astype(np.int8))


def test_past_the_plan_budget_the_float_step_computes_directly_with_the_same_bits() -> None:
    from tinyswap.kernels.base import PlanBudget, Prepared, plan_budget
    from tinyswap.kernels.quantize import Quantize, QuantizeParams, quantize_float

    p = QuantizeParams(float(np.float32(0.0377)), 11)  # parameters no other test builds thresholds for
    x = np.random.default_rng(4).standard_normal(500).astype(np.float32) * np.float32(3)
    out = np.empty(x.shape, np.int8)
    with plan_budget(PlanBudget(new_pair_tables=0)):
        step = Quantize().bind(Prepared([x.shape], p), [x], [out])
    assert "searchsorted" not in step.__code__.co_names  # no thresholds built past the budget
    step()
    np.testing.assert_array_equal(out, quantize_float(p, x).astype(np.int8))
