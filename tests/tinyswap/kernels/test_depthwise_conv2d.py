"""DEPTHWISE_CONV_2D (depth multiplier, strides, dilation) against TFLite Micro and LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap import Interpreter
from tinyswap.kernels.conv_common import Window
from tinyswap.kernels.depthwise_conv2d import DepthwiseConv2DParams
from tinyswap.kernels.quantized import OutputStage

from tests.op_cases import ACTIVATIONS, activation_quant, output_scale_for, prepare, rng_from, spec, window
from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm, random_int8


def dw_model(x_shape, w, bias, x_q, w_scale, y_q, opts, out_shape) -> bytes:
    cout = w.shape[3]
    x = Tensor("x", tuple(x_shape), np.int8, quant=x_q)
    f = Tensor("w", w.shape, np.int8, data=w, quant=Quant(w_scale, np.zeros(w_scale.size, np.int64), 3))
    ins = [x, f]
    if bias is not None:
        ins.append(Tensor("b", (cout,), np.int32, data=bias,
                          quant=Quant((x_q.scale[0] * w_scale).astype(np.float32), np.zeros(w_scale.size, np.int64))))
    y = Tensor("y", tuple(out_shape), np.int8, quant=y_q)
    return build_model(Model([Operator("DEPTHWISE_CONV_2D", ins, [y], opts)], [x], [y]))


def test_hand_golden_multiplier_two() -> None:
    # One input channel, multiplier 2, 1x2 filter [[1, 2]] and [[-1, 1]] interleaved as
    # channels (0, 1) = (m0, m1); VALID over [[3, 5]]: m0 = 3*1 + 5*2 = 13, m1 = -3 + 5 = 2.
    w = np.array([[[[1, -1], [2, 1]]]], np.int8)  # [1, kh=1, kw=2, channels=2]
    model = dw_model((1, 1, 2, 1), w, None, Quant(1.0, 0), np.array([1.0], np.float32), Quant(1.0, 0),
                     {"padding": 1, "stride_w": 1, "stride_h": 1, "depth_multiplier": 2}, (1, 1, 1, 2))
    out = Interpreter(model_content=model).run(np.array([[[[3], [5]]]], np.int8))[0]
    np.testing.assert_array_equal(out.reshape(-1), [13, 2])


@st.composite
def cases(draw, with_bias: bool | None = None):
    rng = rng_from(draw)
    h, w, kh, kw, sh, sw, dh, dw, same, oh, ow = draw(window())
    batch, cin, mult = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 3))
    cout = cin * mult
    per_channel = draw(st.booleans())
    x_q = draw(activation_quant())
    w_scale = rng.uniform(0.002, 0.05, size=cout if per_channel else 1).astype(np.float32)
    y_scale = output_scale_for(float(x_q.scale[0]), float(w_scale.mean()), kh * kw, draw(st.floats(0.3, 3)))
    y_q = Quant(y_scale, draw(st.integers(-40, 40)))
    weights = rng.integers(-127, 128, size=(1, kh, kw, cout), dtype=np.int8)
    use_bias = with_bias if with_bias is not None else draw(st.booleans())
    bias = rng.integers(-3000, 3000, size=cout).astype(np.int32) if use_bias else None
    opts = {"padding": 0 if same else 1, "stride_w": sw, "stride_h": sh, "depth_multiplier": mult,
            "dilation_w_factor": dw, "dilation_h_factor": dh, "fused_activation_function": draw(ACTIVATIONS)}
    model = dw_model((batch, h, w, cin), weights, bias, x_q, w_scale, y_q, opts, (batch, oh, ow, cout))
    return model, [random_int8(rng, (batch, h, w, cin))]


@given(cases())
def test_matches_tflite_micro(case) -> None:
    assert_matches_tflm(*case)


@given(cases(with_bias=True))  # LiteRT's int8 depthwise kernel requires a bias
def test_litert_profile_matches_litert_reference(case) -> None:
    assert_matches_litert_ref(*case)


@pytest.mark.slow
@given(cases())
def test_full(case) -> None:
    assert_matches_tflm(*case)


@pytest.mark.slow
@given(cases(with_bias=True))
def test_full_litert(case) -> None:
    assert_matches_litert_ref(*case)


def test_prepare_builds_the_hand_derived_params_record() -> None:
    # Two input channels, depth multiplier 2, filter scales [0.5, 0.5, 1, 1] on axis 3, x_scale
    # 0.25, y_scale 1: effective 0.125 = 0.5 * 2**-2 and 0.25 = 0.5 * 2**-1 -> multipliers
    # 2**30, shifts (-2, -2, -1, -1). RELU6 with y_zp 0: [0, round(6 / 1)] = [0, 6].
    # VALID, stride 2, 3x3 on 4x4: out (4 - 3 + 2) // 2 = 1, no padding.
    x = spec(0, (1, 4, 4, 2), np.int8, 0.25, 5)
    f = spec(1, (1, 3, 3, 4), np.int8, [0.5, 0.5, 1.0, 1.0], 0, constant=np.zeros((1, 3, 3, 4), np.int8), axis=3)
    y = spec(2, (1, 1, 1, 4), np.int8, 1.0, 0)
    options = {"padding": 1, "stride_h": 2, "stride_w": 2, "depth_multiplier": 2, "fused_activation_function": 3}
    prepared = prepare("DEPTHWISE_CONV_2D", [x, f], [y], options)
    window = Window(3, 3, 2, 2, 1, 1, out_h=1, out_w=1, pad_top=0, pad_bottom=0, pad_left=0, pad_right=0)
    stage = OutputStage(5, 0, (2**30,) * 4, (-2, -2, -1, -1), 0, 6)
    assert prepared.params == DepthwiseConv2DParams(window, in_channels=2, depth_multiplier=2, threads=1, stage=stage)
