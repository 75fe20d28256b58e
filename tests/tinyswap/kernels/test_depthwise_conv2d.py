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

from tests.op_cases import ACTIVATIONS, activation_quant, out_size, output_scale_for, prepare, rng_from, spec, window
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


# -- the shifted-taps step (`depthwise_shifted`) ----------------------------------------------

def shifted_case(batch: int, hw: tuple[int, int], cin: int, mult: int, k: tuple[int, int], stride: tuple[int, int],
                 dilation: tuple[int, int], same: bool, x_zp: int, y_zp: int, with_bias: bool = True,
                 activation: int = 0, seed: int = 0, extreme: bool = False) -> tuple[bytes, np.ndarray]:
    """A one-operator model and a random batch; `extreme`: filter and input at the int8 ends
    (the largest |sums| the float32 accumulator must hold exactly)."""
    rng = np.random.default_rng(seed)
    (h, w), (kh, kw), (sh, sw), (dh, dw) = hw, k, stride, dilation
    oh, ow = out_size(h, kh, sh, dh, same), out_size(w, kw, sw, dw, same)
    cout = cin * mult
    if extreme:
        weights = rng.choice(np.array([-128, 127], np.int8), size=(1, kh, kw, cout))
        x = rng.choice(np.array([-128, 127], np.int8), size=(batch, h, w, cin))
    else:
        weights = rng.integers(-128, 128, size=(1, kh, kw, cout), dtype=np.int8)
        x = random_int8(rng, (batch, h, w, cin))
    w_scale = rng.uniform(0.002, 0.05, size=cout).astype(np.float32)
    x_q = Quant(0.05, x_zp)
    y_q = Quant(output_scale_for(0.05, float(w_scale.mean()), kh * kw, 1.0), y_zp)
    bias = rng.integers(-3000, 3000, size=cout).astype(np.int32) if with_bias else None
    opts = {"padding": 0 if same else 1, "stride_w": sw, "stride_h": sh, "depth_multiplier": mult,
            "dilation_w_factor": dw, "dilation_h_factor": dh, "fused_activation_function": activation}
    return dw_model((batch, h, w, cin), weights, bias, x_q, w_scale, y_q, opts, (batch, oh, ow, cout)), x


def bound_op(model: bytes, x: np.ndarray):
    interp = Interpreter(model_content=model)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    (op,) = interp._main.ops
    return interp, op


def assert_step_equals_eval(op, x_values) -> None:
    """The bound step and the kernel's exact `eval` agree on every batch in `x_values`."""
    for x in x_values:
        op.inputs[0][...] = x
        op.step()
        expected = op.kernel.eval(op.prepared, op.inputs)[0]
        np.testing.assert_array_equal(op.outputs[0], expected)


SHIFTED_CASES = {
    # name: (batch, hw, cin, mult, k, stride, dilation, same)
    "ds_cnn_64": (64, (8, 8), 16, 1, (3, 3), (1, 1), (1, 1), True),
    "ds_cnn_1": (1, (8, 8), 16, 1, (3, 3), (1, 1), (1, 1), True),
    "valid_64": (64, (9, 7), 8, 1, (3, 3), (1, 1), (1, 1), False),
    "stride2_64": (64, (8, 8), 16, 1, (3, 3), (2, 2), (1, 1), True),
    "stride2_valid_1": (1, (9, 11), 8, 1, (3, 3), (2, 2), (1, 1), False),
    "stride_w_only": (5, (6, 10), 8, 2, (3, 3), (1, 2), (1, 1), True),
    "dilated_64": (64, (8, 8), 16, 1, (3, 3), (1, 1), (2, 2), True),
    "dilated_valid": (3, (11, 9), 4, 1, (2, 3), (1, 1), (2, 3), False),
    "multiplier_64": (64, (5, 5), 4, 2, (3, 3), (1, 1), (1, 1), True),
    "multiplier_3_valid_1": (1, (7, 6), 4, 3, (3, 2), (1, 1), (1, 1), False),
    "pointwise_64": (64, (4, 4), 24, 1, (1, 1), (1, 1), (1, 1), True),
    "wide_5x5_64": (64, (8, 8), 16, 1, (5, 5), (1, 1), (1, 1), True),
    # 26 * 16 values per padded row: einsum rows of 8 grid rows, 3 per image.
    "long_rows": (2, (24, 24), 16, 1, (3, 3), (1, 1), (1, 1), True),
    # 529 taps: float64 sums (`exact_float_dtype`).
    "float64_sums": (1, (40, 40), 2, 1, (23, 23), (1, 1), (1, 1), True),
    # One padded image past a chunk: chunks of one image.
    "large_image": (2, (66, 66), 16, 1, (3, 3), (1, 1), (1, 1), True),
}


@pytest.mark.parametrize("zero_points", [(-128, 127), (127, -128), (0, 0)], ids=["lo_hi", "hi_lo", "zero"])
@pytest.mark.parametrize("name", sorted(SHIFTED_CASES))
def test_shifted_step_is_taken_and_matches_eval_and_tflite_micro(name: str, zero_points: tuple[int, int]) -> None:
    x_zp, y_zp = zero_points
    model, x = shifted_case(*SHIFTED_CASES[name], x_zp=x_zp, y_zp=y_zp, activation=1 if x_zp > 0 else 0)
    _, op = bound_op(model, x)
    assert "._shifted_step." in op.step.__qualname__, op.step.__qualname__
    rng = np.random.default_rng(1)
    assert_step_equals_eval(op, [x, random_int8(rng, x.shape), np.full(x.shape, -128, np.int8),
                                 np.full(x.shape, 127, np.int8)])
    assert_matches_tflm(model, [x])


@pytest.mark.parametrize("name", ["ds_cnn_64", "stride2_64", "multiplier_64", "dilated_64"])
def test_shifted_step_every_input_value_and_extreme_sums(name: str) -> None:
    # Filter and input at the int8 ends (the largest |sums|), then every int8 value at every
    # position of the batch (rolled along the flat input so each value meets each tap).
    model, x = shifted_case(*SHIFTED_CASES[name], x_zp=-128, y_zp=127, extreme=True, with_bias=False)
    _, op = bound_op(model, x)
    assert "._shifted_step." in op.step.__qualname__
    every = np.arange(-128, 128, dtype=np.int64)
    ramps = [np.resize(np.roll(every, shift), x.size).astype(np.int8).reshape(x.shape) for shift in range(0, 256, 37)]
    assert_step_equals_eval(op, [x] + ramps)
    assert_matches_tflm(model, [x])
    assert_matches_tflm(model, [ramps[0]])


def test_shifted_step_in_many_chunks_with_a_short_last_one(monkeypatch) -> None:
    # Chunks of 3 images over a batch of 64: 21 full chunks and one of a single image.
    import tinyswap.kernels.depthwise_shifted as shifted

    model, x = shifted_case(*SHIFTED_CASES["ds_cnn_64"], x_zp=5, y_zp=-7)
    monkeypatch.setattr(shifted, "CHUNK_VALUES", 3 * 8 * 10 * 16)
    interp, op = bound_op(model, x)
    assert "._shifted_step." in op.step.__qualname__
    taps = op.step.__closure__[0].cell_contents
    assert [len(chunk.x) for chunk in taps.chunks] == [3] * 21 + [1]
    assert_step_equals_eval(op, [x, np.roll(x, 1, axis=0)])
    np.testing.assert_array_equal(interp.run(x)[0], assert_matches_tflm(model, [x])[0])


def test_shifted_step_declines_past_the_plan_budget_and_the_fallback_is_exact(monkeypatch) -> None:
    import tinyswap.kernels.depthwise_shifted as shifted

    claims = []
    monkeypatch.setattr(shifted, "claim_buffer_bytes", lambda nbytes: claims.append(nbytes) and False)
    model, x = shifted_case(*SHIFTED_CASES["ds_cnn_64"], x_zp=3, y_zp=0)
    _, op = bound_op(model, x)
    assert len(claims) == 1 and claims[0] > 0
    assert "._shifted_step." not in op.step.__qualname__
    assert_step_equals_eval(op, [x])


@pytest.mark.parametrize("stride, mult, cin", [((2, 2), 2, 8), ((2, 1), 1, 4), ((4, 4), 1, 16), ((1, 1), 8, 1)])
def test_shifted_layout_keeps_the_gathered_paths_where_they_are_faster(stride, mult, cin) -> None:
    # Vertical strides with a multiplier or few channels, grids of over 3 positions per output,
    # and multipliers on fewer than 4 input channels.
    from tinyswap.kernels.depthwise_shifted import Layout

    model, x = shifted_case(4, (9, 9), cin, mult, (3, 3), stride, (1, 1), True, x_zp=0, y_zp=0)
    _, op = bound_op(model, x)
    assert Layout.of(x.shape, op.prepared.params.window, mult) is None
    assert "._shifted_step." not in op.step.__qualname__
    assert_step_equals_eval(op, [x])


@given(cases())
def test_bound_step_matches_eval_whichever_path(case) -> None:
    # The hypothesis windows (strides, dilations, multipliers up to 3, SAME and VALID) through
    # the bound step, the shifted one wherever `Layout.of` takes it, against `eval`.
    model, (x,) = case
    _, op = bound_op(model, x)
    rng = np.random.default_rng(x.size)
    assert_step_equals_eval(op, [x, random_int8(rng, x.shape)])


DENSE_CASES = {
    # name: (batch, hw, cin, mult, k, stride, dilation, same): layers the shifted taps leave
    "keras_stride2_multiplier": (64, (10, 10), 4, 2, (3, 3), (2, 2), (1, 1), True),
    "two_channels_batch1": (1, (9, 9), 2, 3, (3, 3), (2, 2), (1, 1), False),
    # one input channel past the gathered taps' output bound (person_detect's first layer shape, smaller)
    "one_channel_large": (64, (48, 48), 1, 8, (3, 3), (2, 2), (1, 1), True),
}


@pytest.mark.parametrize("activation", [0, 1], ids=["none_split", "relu"])
@pytest.mark.parametrize("name", sorted(DENSE_CASES))
def test_dense_form_is_taken_on_few_channels_and_matches_eval_and_tflite_micro(name: str, activation: int) -> None:
    # The filter laid out as a dense convolution's (zero off each output's own input channel),
    # run by CONV_2D's pixel-major steps; without activation the scaled product splits.
    model, x = shifted_case(*DENSE_CASES[name], x_zp=-5, y_zp=3, activation=activation)
    _, op = bound_op(model, x)
    assert "._shifted_step." not in op.step.__qualname__ and "._frozen_step." not in op.step.__qualname__
    assert not op.step.__qualname__.startswith("eval_step")
    extremes = [np.full_like(x, -128), np.full_like(x, 127)]
    assert_step_equals_eval(op, [x, *extremes])
    assert_matches_tflm(model, [x])
