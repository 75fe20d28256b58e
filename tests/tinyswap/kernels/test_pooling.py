"""AVERAGE_POOL_2D and MAX_POOL_2D against a hand golden, TFLite Micro and LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap import Interpreter
from tinyswap.kernels.average_pool_2d import AveragePool2DParams
from tinyswap.kernels.conv_common import Window
from tinyswap.kernels.pooling import Pool2DParams

from tests.op_cases import activation_quant, prepare, rng_from, run_kernel, spec, window
from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm, random_int8


def pool_model(op: str, x_shape, q, opts, out_shape) -> bytes:
    x = Tensor("x", tuple(x_shape), np.int8, quant=q)
    y = Tensor("y", tuple(out_shape), np.int8, quant=q)
    return build_model(Model([Operator(op, [x], [y], opts)], [x], [y]))


def test_average_rounds_half_away_from_zero() -> None:
    # 2x2 VALID windows: (1 + 2 + 3 + 4) / 4 = 2.5 -> 3; (-1 - 2 - 3 - 4) / 4 = -2.5 -> -3.
    opts = {"padding": 1, "stride_w": 2, "stride_h": 2, "filter_width": 2, "filter_height": 2}
    model = pool_model("AVERAGE_POOL_2D", (1, 2, 4, 1), Quant(0.1, 0), opts, (1, 1, 2, 1))
    x = np.array([[1, 2, -1, -2], [3, 4, -3, -4]], np.int8).reshape(1, 2, 4, 1)
    np.testing.assert_array_equal(Interpreter(model_content=model).run(x)[0].reshape(-1), [3, -3])


@st.composite
def cases(draw, op: str):
    rng = rng_from(draw)
    h, w, kh, kw, sh, sw, _, _, same, oh, ow = draw(window(max_k=5, dilations=False))
    batch, c = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    q = draw(activation_quant())
    opts = {"padding": 0 if same else 1, "stride_w": sw, "stride_h": sh, "filter_width": kw,
            "filter_height": kh, "fused_activation_function": draw(st.sampled_from([0, 1, 3]))}
    return pool_model(op, (batch, h, w, c), q, opts, (batch, oh, ow, c)), [random_int8(rng, (batch, h, w, c))]


@pytest.mark.parametrize("op", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
@given(data=st.data())
def test_matches_tflite_micro_and_litert(op: str, data) -> None:
    case = data.draw(cases(op))
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


@pytest.mark.slow
@pytest.mark.parametrize("op", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
@given(data=st.data())
def test_full(op: str, data) -> None:
    case = data.draw(cases(op))
    assert_matches_tflm(*case)
    assert_matches_litert_ref(*case)


def test_prepare_builds_the_hand_derived_params_records() -> None:
    # 2x2 window, stride 2, SAME on 3x3: out ceil(3 / 2) = 2, padding (2-1)*2 + 2 - 3 = 1 after.
    # In-image taps per output: 4, 2 / 2, 1. RELU6 at scale 0.05, zp -10: [-10, 120 - 10].
    x, y = spec(0, (1, 3, 3, 1), np.int8, 0.05, -10), spec(1, (1, 2, 2, 1), np.int8, 0.05, -10)
    options = {"padding": 0, "stride_h": 2, "stride_w": 2, "filter_height": 2, "filter_width": 2,
               "fused_activation_function": 3}
    window = Window(2, 2, 2, 2, 1, 1, out_h=2, out_w=2, pad_top=0, pad_bottom=1, pad_left=0, pad_right=1)
    pool = Pool2DParams(window, in_height=3, in_width=3, is_float=False, act_min=-10, act_max=110)
    avg = prepare("AVERAGE_POOL_2D", [x], [y], options)
    assert isinstance(avg.params, AveragePool2DParams) and avg.params.pool == pool
    np.testing.assert_array_equal(avg.params.tap_counts[0, :, :, 0], [[4, 2], [2, 1]])
    assert prepare("MAX_POOL_2D", [x], [y], options).params == pool
    # Averages: 12 / 4 = 3; 9 / 2 = 4.5 -> 5 and 15 / 2 = 7.5 -> 8 (half away from zero); 9.
    values = np.arange(1, 10, dtype=np.int8).reshape(1, 3, 3, 1)
    np.testing.assert_array_equal(run_kernel("AVERAGE_POOL_2D", avg, values)[0][0, :, :, 0], [[3, 5], [8, 9]])


@pytest.mark.parametrize("op", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
@pytest.mark.parametrize("filt,stride", [((16384, 16384), (1, 1)), ((5, 1000), (2, 3)), ((1, 9), (4, 1))])
def test_windows_larger_than_the_image_read_only_in_image_taps(op: str, filt, stride) -> None:
    # TFLM loops over in-image taps only; a 16384x16384 SAME window must cost what the image
    # costs, and equal TFLM bit for bit.
    shape = (2, 7, 9, 3)
    out = (2, -(-7 // stride[0]), -(-9 // stride[1]), 3)
    opts = {"padding": 0, "stride_h": stride[0], "stride_w": stride[1], "filter_height": filt[0],
            "filter_width": filt[1], "fused_activation_function": 0}
    model = pool_model(op, shape, Quant(0.02, -5), opts, out)
    assert_matches_tflm(model, [random_int8(np.random.default_rng(3), shape)])


def test_windows_over_the_work_bound_or_int32_are_refused_at_prepare() -> None:
    from tinyswap.errors import ModelError

    big = {"padding": 0, "stride_h": 1, "stride_w": 1, "filter_height": 512, "filter_width": 512}
    model = pool_model("AVERAGE_POOL_2D", (1, 512, 512, 64), Quant(0.1, 0), big, (1, 512, 512, 64))
    with pytest.raises(ModelError, match=r"operator 0 \(AVERAGE_POOL_2D\): .* over the bound of"):
        Interpreter(model_content=model).allocate_tensors()
    wide = {"padding": 0, "stride_h": 1, "stride_w": 1, "filter_height": 1, "filter_width": 2**31 - 1}
    model = pool_model("MAX_POOL_2D", (1, 2, 3, 1), Quant(0.1, 0), wide, (1, 2, 3, 1))
    with pytest.raises(ModelError, match=r"operator 0 \(MAX_POOL_2D\): filter width 2147483647 .* overflows"):
        Interpreter(model_content=model).allocate_tensors()


@pytest.mark.parametrize("op", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
@pytest.mark.parametrize("padding, activation", [(0, 0), (0, 3), (1, 1)])
def test_tap_by_tap_steps_match_tflite_micro_at_the_int8_ends(op: str, padding: int, activation: int) -> None:
    """The plan's tap-by-tap steps (bordered for SAME, on the input itself for VALID) at batch 3:
    an image of -128 only (the border's own value for MAX_POOL), one of 127, one random."""
    opts = {"padding": padding, "stride_w": 2, "stride_h": 1, "filter_width": 3, "filter_height": 2,
            "fused_activation_function": activation}
    out_shape = (3, 5, 3, 4) if padding == 0 else (3, 4, 2, 4)
    model = pool_model(op, (3, 5, 6, 4), Quant(0.03, 4), opts, out_shape)
    x = np.random.default_rng(activation).integers(-128, 128, (3, 5, 6, 4)).astype(np.int8)
    x[0], x[1] = -128, 127
    interp = Interpreter(model_content=model)
    ours = interp.run(x)[0]
    assert "tap" in getattr(interp._main.ops[0].step, "__qualname__", "") or "SumLookup" in \
        getattr(interp._main.ops[0].step, "__qualname__", "")
    from tinyswap.oracles import run_tflm

    np.testing.assert_array_equal(ours, run_tflm(model, [x])[0])
