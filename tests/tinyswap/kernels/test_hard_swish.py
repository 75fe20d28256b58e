"""HARD_SWISH (int8 in 16-bit fixed point, float32) against TFLite Micro and LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from tinyswap.errors import ModelError, UnsupportedOpError
from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model

from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm
from tests.unary_cases import unary_cases
from tests.op_cases import prepare, run_kernel, spec


# unary_cases draws both scales from [0.01, 0.2], so input_scale / 128 / output_scale < 1 and
# TFLM's output exponent stays <= 0 (the refusal has its own test below).
@given(unary_cases("HARD_SWISH"))
def test_int8_matches_oracles(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


@given(unary_cases("HARD_SWISH", np.float32, np.float32))
def test_float32(case) -> None:
    out = assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)
    x = case[1][0]
    expected = x * np.minimum(np.float32(6), np.maximum(np.float32(0), x + np.float32(3))) / np.float32(6)
    np.testing.assert_array_equal(out[0], expected.astype(np.float32))


@pytest.mark.slow
@given(unary_cases("HARD_SWISH"))
def test_full(case) -> None:
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


def _model(x_quant: Quant, y_quant: Quant) -> bytes:
    x = Tensor("x", (256,), np.int8, quant=x_quant)
    y = Tensor("y", (256,), np.int8, quant=y_quant)
    return build_model(Model([Operator("HARD_SWISH", [x], [y])], [x], [y]))


# (input scale, input zp, output scale, output zp): ordinary scales; the output exponent at 0
# (input / output scale in [64, 128): the int16 sum with the zero point wraps) and far below
# -16 (gemmlowp's int16 RoundingDivideByPOT with an all-ones mask); a reluish exponent far below
# 0 (tiny input scale) and above 0 (large input scale, saturating left shifts).
EXHAUSTIVE = [
    (0.05, 3, 0.04, -10),
    (0.1, -20, 0.07, 5),
    (3 / 128, 0, 3 / 128, 0),
    (0.02, -128, 0.11, 127),
    (10.0, 100, 0.1, 120),
    (10.0, -100, 0.15, -120),
    (0.001, 50, 5.0, -3),
    (1e-5, 0, 1e-6, 0),
    (20.0, 17, 2.0, -60),
    (1.0, -1, 0.0099, 9),
]


@pytest.mark.parametrize("xs,xzp,ys,yzp", EXHAUSTIVE)
def test_every_int8_input(xs, xzp, ys, yzp) -> None:
    model = _model(Quant(xs, xzp), Quant(ys, yzp))
    x = np.arange(-128, 128, dtype=np.int8)
    assert_matches_tflm(model, [x])
    assert_matches_litert_ref(model, [x])


def test_prepare_builds_the_hand_derived_params_record() -> None:
    # Input and output scale 3/128: hires = 3/16384; output multiplier 1/128 = 0.5 * 2**-6 ->
    # (2**30, -6), int16 (2**30 + 2**15) >> 16 = 16384; reluish (3/16384) / (3/32768) = 2 =
    # 0.5 * 2**2 -> (2**30, 2), int16 16384.
    prepared = prepare("HARD_SWISH", [spec(0, (5,), np.int8, 3 / 128, 0)], [spec(1, (5,), np.int8, 3 / 128, 0)])
    p = prepared.params
    assert (p.input_zero_point, p.output_zero_point, p.reluish_multiplier_fixedpoint_int16,
            p.reluish_multiplier_exponent, p.output_multiplier_fixedpoint_int16,
            p.output_multiplier_exponent) == (0, 0, 16384, 2, 16384, -6)
    # v = 64 (x = 1.5): hires 8192, preshift output SRDHM(8192, 16384) = 4096; reluish
    # 8192 << 1 -> SRDHM 8192 -> << 1 = 16384 (x / 3 = 0.5) -> (16384 + 32768) >> 1 = 24576;
    # SDHM(24576, 4096) = 3072; RDBPOT(3072, 6) = 48 (1.5 * 4.5 / 6 = 1.125 = 48 * 3/128).
    # v = -64: reluish -16384 -> 8192; SDHM(8192, -4096) = -1024 -> -16 (-0.375).
    # v = 127: reluish 32512 -> 32640; SDHM(32640, 8128) = trunc(8096.25) = 8096 -> 126.5 -> 127.
    # v = -128: reluish -32768 -> 0 -> 0.
    x = np.array([-128, -64, 0, 64, 127], np.int8)
    np.testing.assert_array_equal(run_kernel("HARD_SWISH", prepared, x)[0], [0, -16, 0, 48, 127])
    assert prepare("HARD_SWISH", [spec(0, (2,), np.float32)], [spec(1, (2,), np.float32)]).params is None


def test_refuses_what_tflm_refuses() -> None:
    # input scale / 128 / output scale = 1 -> frexp exponent 1 > 0: TFLM's prepare fails.
    with pytest.raises(ModelError, match="exponent 1"):
        prepare("HARD_SWISH", [spec(0, (2,), np.int8, 1.28, 0)], [spec(1, (2,), np.int8, 0.01, 0)])
    with pytest.raises(UnsupportedOpError):
        prepare("HARD_SWISH", [spec(0, (2,), np.int8, 0.1, 0)], [spec(1, (2,), np.float32)])


def test_float32_edges_match_tflm() -> None:
    # Saturation of the clamp at -3 and 3, signed zeros, huge values (x * 6 overflows to inf
    # before the division, as in C) and +inf; -inf gives NaN (-inf * 0), which compares unequal.
    x = np.array([-3.0, 3.0, -3.0000002, 2.9999998, -0.0, 0.0, 1e38, -1e38, np.inf, 1e-40], np.float32)
    t = Tensor("x", x.shape, np.float32), Tensor("y", x.shape, np.float32)
    model = build_model(Model([Operator("HARD_SWISH", [t[0]], [t[1]])], [t[0]], [t[1]]))
    out = assert_matches_tflm(model, [x])
    assert_matches_litert_ref(model, [x])
    assert np.signbit(out[0][4]) and out[0][6] == np.inf and out[0][8] == np.inf
