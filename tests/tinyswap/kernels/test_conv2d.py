"""CONV_2D against a hand golden, TFLite Micro (bit for bit) and LiteRT BUILTIN_REF."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap import Interpreter
from tinyswap.kernels.conv2d import Conv2DParams
from tinyswap.kernels.conv_common import Window
from tinyswap.kernels.quantized import OutputStage

from tests.op_cases import (
    ACTIVATIONS,
    activation_quant,
    output_scale_for,
    prepare,
    rng_from,
    run_kernel,
    spec,
    window,
)
from tests.oracle_check import assert_matches_litert_ref, assert_matches_tflm, random_int8


def conv_model(x_shape, w, bias, x_q, w_scale, y_q, opts, out_shape) -> bytes:
    cout = w.shape[0]
    x = Tensor("x", tuple(x_shape), np.int8, quant=x_q)
    f = Tensor("w", w.shape, np.int8, data=w, quant=Quant(w_scale, np.zeros(w_scale.size, np.int64)))
    ins = [x, f]
    if bias is not None:
        ins.append(Tensor("b", (cout,), np.int32, data=bias,
                          quant=Quant((x_q.scale[0] * w_scale).astype(np.float32), np.zeros(w_scale.size, np.int64))))
    y = Tensor("y", tuple(out_shape), np.int8, quant=y_q)
    return build_model(Model([Operator("CONV_2D", ins, [y], opts)], [x], [y]))


def test_hand_golden_3x3_same() -> None:
    # A 3x3 all-ones filter over a 3x3 input of ones with x_zp = 0, SAME padding, all scales
    # 1 (effective multiplier 1): each output counts its in-image taps: corners 4, edges 6,
    # centre 9. Padding contributes nothing.
    w = np.ones((1, 3, 3, 1), np.int8)
    model = conv_model((1, 3, 3, 1), w, None, Quant(1.0, 0), np.array([1.0], np.float32), Quant(1.0, 0),
                       {"padding": 0, "stride_w": 1, "stride_h": 1}, (1, 3, 3, 1))
    out = Interpreter(model_content=model).run(np.ones((1, 3, 3, 1), np.int8))[0]
    np.testing.assert_array_equal(out[0, :, :, 0], [[4, 6, 4], [6, 9, 6], [4, 6, 4]])


@st.composite
def cases(draw, with_bias: bool | None = None):
    rng = rng_from(draw)
    h, w, kh, kw, sh, sw, dh, dw, same, oh, ow = draw(window())
    batch, cin, cout = draw(st.integers(1, 3)), draw(st.integers(1, 8)), draw(st.integers(1, 8))
    per_channel = draw(st.booleans())
    x_q = draw(activation_quant())
    w_scale = rng.uniform(0.002, 0.05, size=cout if per_channel else 1).astype(np.float32)
    y_scale = output_scale_for(float(x_q.scale[0]), float(w_scale.mean()), kh * kw * cin, draw(st.floats(0.3, 3)))
    y_q = Quant(y_scale, draw(st.integers(-40, 40)))
    weights = rng.integers(-127, 128, size=(cout, kh, kw, cin), dtype=np.int8)
    bias = rng.integers(-3000, 3000, size=cout).astype(np.int32) if (with_bias if with_bias is not None else draw(st.booleans())) else None
    opts = {"padding": 0 if same else 1, "stride_w": sw, "stride_h": sh, "dilation_w_factor": dw,
            "dilation_h_factor": dh, "fused_activation_function": draw(ACTIVATIONS)}
    model = conv_model((batch, h, w, cin), weights, bias, x_q, w_scale, y_q, opts, (batch, oh, ow, cout))
    return model, [random_int8(rng, (batch, h, w, cin))]


@given(cases())
def test_matches_tflite_micro(case) -> None:
    assert_matches_tflm(*case)


@given(cases(with_bias=True))  # LiteRT's int8 CONV_2D requires a bias ("has_bias was not true")
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
    # Per-channel filter scales [0.5, 0.25], x_scale 0.5, y_scale 0.5: effective scales 0.5 and
    # 0.25 = 0.5 * 2**0 and 0.5 * 2**-1, so both multipliers are 2**30 with shifts 0 and -1.
    # SAME, stride 1, 2x2 filter on 3x3: out 3x3, total padding (3-1)*1 + 2 - 3 = 1, all after.
    x = spec(0, (1, 3, 3, 1), np.int8, 0.5, 0)
    f = spec(1, (2, 2, 2, 1), np.int8, [0.5, 0.25], 0, constant=np.zeros((2, 2, 2, 1), np.int8))
    y = spec(2, (1, 3, 3, 2), np.int8, 0.5, -1)
    options = {"padding": 0, "stride_h": 1, "stride_w": 1, "fused_activation_function": 0}
    prepared = prepare("CONV_2D", [x, f], [y], options)
    window = Window(filter_h=2, filter_w=2, stride_h=1, stride_w=1, dilation_h=1, dilation_w=1,
                    out_h=3, out_w=3, pad_top=0, pad_bottom=1, pad_left=0, pad_right=1)
    stage = OutputStage(0, -1, (2**30, 2**30), (0, -1), -128, 127)
    assert prepared.params == Conv2DParams(window, out_channels=2, pointwise=False, threads=1, stage=stage)
    assert tuple(prepared.output_shapes) == ((1, 3, 3, 2),)
    # 2x2 input ones, filter channel 0 all 1 and channel 1 all 2: the top-left output sees all
    # four taps: acc 4 -> 4 * 0.5 = 2 - 1 = 1; acc 8 -> 8 * 0.25 = 2 - 1 = 1. The bottom-right
    # output sees one tap: 1 * 0.5 = 0.5 and 2 * 0.25 = 0.5 both round to 1, less 1 = 0.
    filt = np.stack([np.ones((2, 2, 1)), np.full((2, 2, 1), 2)]).astype(np.int8)
    out = run_kernel("CONV_2D", prepared, np.ones((1, 3, 3, 1), np.int8), filt)[0]
    np.testing.assert_array_equal(out[0, 0, 0], [1, 1])
    np.testing.assert_array_equal(out[0, 2, 2], [0, 0])


@pytest.mark.parametrize("stride, dilation, kernel, padding", [
    (2**31 - 1, 1, 1, 0),  # SAME: in + stride - 1 overflows int32
    (2**31 - 1, 1, 1, 1),  # VALID: in - filter + stride overflows int32
    (1, 2**31 - 1, 2, 1),  # the dilated filter extent overflows int32
])
def test_window_values_that_overflow_tflm_int32_arithmetic_are_refused(stride, dilation, kernel, padding) -> None:
    from tinyswap.errors import ModelError

    w = np.ones((2, kernel, kernel, 2), np.int8)
    q = Quant(0.1, 0)
    opts = dict(padding=padding, stride_w=stride, stride_h=stride, fused_activation_function=0,
                dilation_w_factor=dilation, dilation_h_factor=dilation)
    model = conv_model((1, 4, 4, 2), w, None, q, np.array([0.1], np.float32), q, opts, (1, 1, 1, 2))
    with pytest.raises(ModelError, match=r"operator 0 \(CONV_2D\): strides .* overflow TFLM's int32 window "
                                         r"arithmetic"):
        Interpreter(model_content=model).allocate_tensors()


def test_window_values_past_tflm_int16_conv_params_are_refused() -> None:
    """TFLM truncates strides, dilations and paddings to the int16 fields of ConvParams (a
    dilation of 2^25 becomes 0 there and its results differ): refused, typed."""
    from tinyswap.errors import ModelError

    w = np.ones((2, 3, 3, 2), np.int8)
    q = Quant(0.1, 0)
    opts = dict(padding=0, stride_w=1, stride_h=1, fused_activation_function=0,
                dilation_w_factor=1, dilation_h_factor=2**25)
    model = conv_model((1, 4, 4, 2), w, None, q, np.array([0.1], np.float32), q, opts, (1, 4, 4, 2))
    with pytest.raises(ModelError, match=r"operator 0 \(CONV_2D\): \{'dilation_h': 33554432, 'pad_top': 33554432\} "
                                         r"exceed the int16 fields of TFLM's ConvParams \(at most 32767\)"):
        Interpreter(model_content=model).allocate_tensors()


@pytest.mark.parametrize("stride, dilation", [(2**15 - 1, 1), (1, 2**14)])
def test_the_largest_window_values_tflm_holds_match_it(stride, dilation) -> None:
    """A dilated window far larger than the image: its taps are gathered, not padded."""
    rng = np.random.default_rng(stride + dilation)
    w = rng.integers(-127, 128, (2, 3, 3, 2)).astype(np.int8)
    q = Quant(0.1, 0)
    opts = dict(padding=0, stride_w=stride, stride_h=stride, fused_activation_function=0,
                dilation_w_factor=dilation, dilation_h_factor=dilation)
    out = 1 if stride > 1 else 4
    model = conv_model((1, 4, 4, 2), w, None, q, np.array([0.1], np.float32), Quant(0.5, 3), opts, (1, out, out, 2))
    assert_matches_tflm(model, [rng.integers(-128, 128, (1, 4, 4, 2)).astype(np.int8)])


def test_each_pixel_major_form_is_taken_and_matches_tflite_micro(monkeypatch) -> None:
    # Batch-64 layers of the sizes the benchmark models have: the scaled product in float32
    # and in float64 (one line, and split at the output zero point without activation), and
    # the exact float32 product with the affine stage for long products. Each is checked
    # against the wheel (and constant vs live weights), and each form must have been taken.
    import tinyswap.kernels.conv2d as conv2d
    import tinyswap.kernels.pixel_major as pixel_major

    taken: set[str] = set()
    scaled_of = pixel_major.frozen_scaled

    def recording_scaled(*args, **kwargs):
        scaled = scaled_of(*args, **kwargs)
        if scaled is not None:
            taken.add(f"scaled-{scaled.weights.dtype}-{'split' if scaled.split else 'one'}")
        return scaled

    monkeypatch.setattr(pixel_major, "frozen_scaled", recording_scaled)
    step_of = conv2d.pixel_major_step

    def recording_step(*args, **kwargs):
        step = step_of(*args, **kwargs)
        if step is not None and step.__qualname__.startswith("pixel_major_step"):
            taken.add("exact-product")
        return step

    monkeypatch.setattr(conv2d, "pixel_major_step", recording_step)
    rng = np.random.default_rng(11)
    for cin, cout, k, activation, batch, w_range in ((1, 8, 3, 1, 64, 20), (4, 8, 3, 1, 64, 127),
                                                     (4, 8, 3, 0, 64, 127), (16, 16, 3, 1, 64, 127),
                                                     (16, 16, 3, 0, 64, 127), (2, 3, 1, 0, 64, 127)):
        x_q = Quant(0.05, int(rng.integers(-20, 20)))
        w_scale = rng.uniform(0.002, 0.05, size=cout).astype(np.float32)
        y_q = Quant(output_scale_for(0.05, float(w_scale.mean()), k * k * cin, 1.0), int(rng.integers(-20, 20)))
        weights = rng.integers(-w_range, w_range + 1, size=(cout, k, k, cin), dtype=np.int8)
        bias = rng.integers(-3000, 3000, size=cout).astype(np.int32)
        opts = {"padding": 0, "stride_w": 1, "stride_h": 1, "fused_activation_function": activation}
        model = conv_model((batch, 8, 8, cin), weights, bias, x_q, w_scale, y_q, opts, (batch, 8, 8, cout))
        assert_matches_tflm(model, [random_int8(rng, (batch, 8, 8, cin))])
    assert taken >= {"scaled-float64-one", "scaled-float64-split", "exact-product"}, taken


def test_row_taps_gathers_whole_images_chunk_by_chunk_with_a_short_last_chunk() -> None:
    # 7 images of 5x5x3 taps (26 values per pixel, 100 pixels) in chunks of 2 images: four
    # chunks, the last one image. Every chunk's rows equal the im2col rows of its images
    # (padding reads the pad value), with the ones column.
    from tinyswap.kernels.conv_common import RowTaps, patches, pad_spatial

    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, size=(7, 10, 10, 3), dtype=np.int8)
    win = Window(3, 3, 1, 1, 1, 1, 10, 10, 1, 1, 1, 1)
    taps = RowTaps.of(x, win, np.dtype(np.float64), pad_value=-7, chunk_values=2 * 100 * 28)
    assert taps is not None and len(taps.rows) == 4 and len(taps.rows[-1]) == 100
    expected = patches(pad_spatial(x, win, -7, np.float64), win, padded=True).reshape(700, 27)
    for i, pixels in enumerate(taps.pixels):
        rows = taps.gather(i)
        np.testing.assert_array_equal(rows[:, :27], expected[pixels])
        assert (rows[:, 27] == 1).all()
