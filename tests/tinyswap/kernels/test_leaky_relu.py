"""LEAKY_RELU (int8 with two rescales, float32) against TFLite Micro and LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyswap.errors import ModelError, UnsupportedOpError
from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap.kernels.base import Profile
from tinyswap.reader import read_model

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm
from tests.unary_cases import unary_cases
from tests.op_cases import prepare, run_kernel, spec

# Mostly the usual leak in [0.01, 0.5]; sometimes a negative alpha or one above 1 (both are
# legal: the kernel does not use max(x, alpha * x)).
ALPHAS = st.one_of(st.floats(0.01, 0.5), st.sampled_from([-0.5, -0.2, -1.5, 0.0, 1.0, 1.5, 2.0, 3.0]),
                   st.floats(-2.0, 3.0))


def leaky_cases(in_dtype=np.int8, out_dtype=np.int8):
    return ALPHAS.flatmap(lambda a: unary_cases("LEAKY_RELU", in_dtype, out_dtype, options={"alpha": a}))


@given(leaky_cases())
def test_int8_matches_oracles(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


@given(leaky_cases(np.float32, np.float32))
def test_float32(case) -> None:
    out = assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)
    model, (x,) = case
    assert out[0].dtype == np.float32 and out[0].shape == x.shape


@pytest.mark.slow
@given(leaky_cases())
def test_full(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


def _model(x_quant: Quant, y_quant: Quant, alpha: float) -> bytes:
    x = Tensor("x", (256,), np.int8, quant=x_quant)
    y = Tensor("y", (256,), np.int8, quant=y_quant)
    return build_model(Model([Operator("LEAKY_RELU", [x], [y], {"alpha": alpha})], [x], [y]))


# (input scale, input zp, output scale, output zp, alpha): ordinary leaks, negative alphas on
# exact multipliers (the reference negates the positive product: ties round differently from a
# negative multiplier), alpha above 1, ties from a power-of-two ratio, and an output scale far
# below the input's (C's int32 left shift wraps: the table reproduces it).
EXHAUSTIVE = [
    (0.05, 3, 0.04, -10, 0.1),
    (0.1, -20, 0.07, 5, 0.2),
    (0.5, 0, 0.25, -5, -0.25),
    (0.5, 7, 0.5, 0, -0.75),
    (0.46194893, 23, 0.92389786, 50, 1.5),
    (0.02, -128, 0.11, 127, 0.3),
    (0.1, -53, 1e-5, -37, -3.0),
    (10.0, 109, 1e-3, 62, 2.5),
    (0.0123, 12, 0.0456, -7, 0.0),
]


@pytest.mark.parametrize("xs,xzp,ys,yzp,alpha", EXHAUSTIVE)
def test_every_int8_input(xs, xzp, ys, yzp, alpha) -> None:
    model = _model(Quant(xs, xzp), Quant(ys, yzp), alpha)
    x = np.arange(-128, 128, dtype=np.int8)
    assert_matches_tflm(model, [x])
    assert_matches_litert_ref(model, [x])


def test_prepare_builds_the_hand_derived_params_record() -> None:
    # identity: 0.5 / 0.25 = 2 = 0.5 * 2**2 -> (2**30, 2); alpha: 0.5 * 0.25 / 0.25 = 0.5 ->
    # (2**30, 0). x >= 0: 2x - 5; x < 0: SRDHM(x, 2**30) = floor((x + 1) / 2) (half up), - 5.
    prepared = prepare("LEAKY_RELU", [spec(0, (3,), np.int8, 0.5, 0)], [spec(1, (3,), np.int8, 0.25, -5)],
                       {"alpha": 0.25})
    p = prepared.params
    assert (p.input_zero_point, p.output_zero_point, p.identity_multiplier, p.identity_shift,
            p.alpha_multiplier, p.alpha_shift, p.alpha_negative) == (0, -5, 2**30, 2, 2**30, 0, False)
    v = np.arange(-128, 128)
    expected = np.clip(np.where(v >= 0, 2 * v, (v + 1) // 2) - 5, -128, 127)
    assert np.frombuffer(p.lookup.table, np.int8).tolist() == expected.tolist()
    # -3 -> -1.5 rounds half up to -1 -> -6; -1 -> -0.5 -> 0 -> -5; 4 -> 8 - 5 = 3.
    np.testing.assert_array_equal(run_kernel("LEAKY_RELU", prepared, np.array([-3, -1, 4], np.int8))[0],
                                  [-6, -5, 3])
    # alpha = -0.25: the magnitude's product, negated: -3 -> -(-1) - 5 = -4 (a negative
    # multiplier would round -3 * -0.5 = 1.5 to 2 instead).
    negative = prepare("LEAKY_RELU", [spec(0, (3,), np.int8, 0.5, 0)], [spec(1, (3,), np.int8, 0.25, -5)],
                       {"alpha": -0.25}).params
    assert (negative.alpha_multiplier, negative.alpha_shift, negative.alpha_negative) == (2**30, 0, True)
    np.testing.assert_array_equal(negative.lookup.apply(np.array([-3, -1, 4], np.int8)), [-4, -5, 3])
    floats = prepare("LEAKY_RELU", [spec(0, (2,), np.float32)], [spec(1, (2,), np.float32)], {"alpha": 0.2})
    out = run_kernel("LEAKY_RELU", floats, np.array([-2.0, 3.0], np.float32))[0]
    np.testing.assert_array_equal(out, np.array([-2.0 * np.float32(0.2), 3.0], np.float32))


def test_runtimes_round_the_real_multipliers_differently() -> None:
    # 0.46194893 * 1.5 / 0.92389786: 0.75 exactly in double (the tflite_micro wheel), 0.75000006
    # as a float32 expression (LiteRT): multipliers 3 * 2**29 and 3 * 2**29 + 128.
    args = ([spec(0, (1,), np.int8, 0.46194893, 0)], [spec(1, (1,), np.int8, 0.92389786, 0)], {"alpha": 1.5})
    assert prepare("LEAKY_RELU", *args).params.alpha_multiplier == 3 * 2**29
    assert prepare("LEAKY_RELU", *args, profile=Profile.LITERT).params.alpha_multiplier == 3 * 2**29 + 128


def test_refuses_what_tflm_refuses() -> None:
    with pytest.raises(UnsupportedOpError):  # TF_LITE_ENSURE_TYPES_EQ(input, output)
        prepare("LEAKY_RELU", [spec(0, (2,), np.int8, 0.5, 0)], [spec(1, (2,), np.float32)], {"alpha": 0.2})
    with pytest.raises(UnsupportedOpError):
        prepare("LEAKY_RELU", [spec(0, (2,), np.int32)], [spec(1, (2,), np.int32)], {"alpha": 0.2})
    with pytest.raises(ModelError):  # an infinite multiplier
        prepare("LEAKY_RELU", [spec(0, (2,), np.int8, 0.5, 0)], [spec(1, (2,), np.int8, 0.5, 0)],
                {"alpha": float("inf")})


def test_alpha_travels_through_the_builder_and_the_reader() -> None:
    # LeakyReluOptions (union type 75) field 0 is a float32: the builder writes it, the reader
    # returns it as the float32 value; the empty-table default is 0.0.
    op = read_model(_model(Quant(0.1, 0), Quant(0.1, 0), 0.3)).subgraphs[0].operators[0]
    assert (op.options_type, op.options) == (75, {"alpha": float(np.float32(0.3))})


@pytest.mark.parametrize("alpha", [0.2, -1.3, 3.0])
def test_float32_edges_match_tflm(alpha) -> None:
    # `val > 0 ? val : val * alpha`: -0.0 takes the alpha branch, -1e38 * 3 overflows to -inf.
    x = np.array([-0.0, 0.0, 1e38, -1e38, np.inf, -np.inf, 1e-40, -1e-40, -2.5], np.float32)
    t = Tensor("x", x.shape, np.float32), Tensor("y", x.shape, np.float32)
    model = build_model(Model([Operator("LEAKY_RELU", [t[0]], [t[1]], {"alpha": alpha})], [t[0]], [t[1]]))
    out = assert_matches_tflm(model, [x])
    assert_matches_litert_ref(model, [x])
    np.testing.assert_array_equal(out[0], np.where(x > 0, x, x * np.float32(alpha)))
