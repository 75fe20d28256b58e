"""Tests of `tinyswap.export.tflite_builder`: the built files run, lie where promised, and misuse raises.

Three groups:

(a) Small models run in TFLite Micro (the golden) and LiteRT's reference kernels, and match a
    hand-computed expectation. Scales are chosen so that every requantization multiplier is a
    power of two that both rounding modes compute exactly (see `_exact_fc`).
(b) Byte layout, read back from the produced bytes with a minimal independent walk over
    `flatbuffers.table.Table` (`_Walk`), never by trusting the builder's own bookkeeping.
(c) Misuse raises `BuilderError` (or a subclass) naming the operator, option or tensor.
"""

from __future__ import annotations

import numpy as np
import pytest
from flatbuffers import encode, packer
from flatbuffers import number_types as N
from flatbuffers.table import Table
from hypothesis import given
from hypothesis import strategies as st

from tinyswap.export.tflite_builder import (
    MIN_ALIGNMENT,
    BuiltModel,
    Model,
    Operator,
    Quant,
    Tensor,
    build_model,
    build_model_with_layout,
    tensor_indices,
)
from tinyswap.export.errors import BuilderError, GraphError, OptionError
from tinyswap.schema import (
    BUILTIN_OPERATOR_CODES,
    OPTIONS_TABLES,
    Activation,
    BufferField,
    MetadataField,
    ModelField,
    OperatorCodeField,
    OperatorField,
    Padding,
    QuantizationField,
    SubGraphField,
    TensorField,
    TensorType,
    field_offset,
)

# --------------------------------------------------------------------------------------------
# Runtimes
# --------------------------------------------------------------------------------------------


def run_tflm(data: bytes, *inputs: np.ndarray) -> np.ndarray:
    from tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(data)
    for i, x in enumerate(inputs):
        interp.set_input(np.ascontiguousarray(x), i)
    interp.invoke()
    return np.array(interp.get_output(0), copy=True)


def run_litert(data: bytes, *inputs: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # BUILTIN_REF: the reference kernels; XNNPACK's ADD is not bit-exact (docs/tflite-arithmetic.md).
    interp = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    for detail, x in zip(interp.get_input_details(), inputs):
        interp.set_tensor(detail["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"]).copy()


def run_both(data: bytes, *inputs: np.ndarray) -> np.ndarray:
    """Run in TFLM and LiteRT, require them to agree, return the result."""
    tflm = run_tflm(data, *inputs)
    litert = run_litert(data, *inputs)
    np.testing.assert_array_equal(tflm, litert)
    return tflm


# --------------------------------------------------------------------------------------------
# A minimal reader, independent of the builder: just enough to check the byte layout
# --------------------------------------------------------------------------------------------


class _Walk:
    """Field access on a `flatbuffers.table.Table` by schema field index."""

    def __init__(self, data: bytes, pos: int | None = None) -> None:
        if pos is None:  # the root: a uoffset at byte 0
            pos = encode.Get(packer.uoffset, data, 0)
        self.data = data
        self.t = Table(data, pos)

    def has(self, index: int) -> bool:
        return self.t.Offset(field_offset(index)) != 0

    def scalar(self, index: int, flags, default=0):
        o = self.t.Offset(field_offset(index))
        return self.t.Get(flags, self.t.Pos + o) if o else default

    def table(self, index: int) -> _Walk | None:
        o = self.t.Offset(field_offset(index))
        return _Walk(self.data, self.t.Indirect(self.t.Pos + o)) if o else None

    def vector_span(self, index: int) -> tuple[int, int] | None:
        """(absolute offset of the first element, element count), None if absent."""
        o = self.t.Offset(field_offset(index))
        return (self.t.Vector(o), self.t.VectorLen(o)) if o else None

    def tables(self, index: int) -> list[_Walk]:
        span = self.vector_span(index)
        if span is None:
            return []
        start, n = span
        return [_Walk(self.data, self.t.Indirect(start + 4 * i)) for i in range(n)]

    def array(self, index: int, dtype: str) -> np.ndarray | None:
        span = self.vector_span(index)
        if span is None:
            return None
        start, n = span
        return np.frombuffer(self.data, dtype=dtype, count=n, offset=start)

    def string(self, index: int) -> str | None:
        o = self.t.Offset(field_offset(index))
        return self.t.String(self.t.Pos + o).decode() if o else None


def _layout(data: bytes) -> dict:
    """Everything the layout tests look at, read straight from the file."""
    model = _Walk(data)
    (subgraph,) = model.tables(ModelField.SUBGRAPHS)
    buffers = model.tables(ModelField.BUFFERS)
    tensors = {}
    for i, t in enumerate(subgraph.tables(SubGraphField.TENSORS)):
        q = t.table(TensorField.QUANTIZATION)
        tensors[t.string(TensorField.NAME)] = {
            "index": i,
            "shape": tuple(t.array(TensorField.SHAPE, "<i4")),
            "type": t.scalar(TensorField.TYPE, N.Int8Flags),
            "buffer": t.scalar(TensorField.BUFFER, N.Uint32Flags),
            "shape_signature": None
            if t.array(TensorField.SHAPE_SIGNATURE, "<i4") is None
            else tuple(t.array(TensorField.SHAPE_SIGNATURE, "<i4")),
            "scale": None if q is None else q.array(QuantizationField.SCALE, "<f4"),
            "zero_point": None if q is None else q.array(QuantizationField.ZERO_POINT, "<i8"),
            "quantized_dimension": None
            if q is None
            else q.scalar(QuantizationField.QUANTIZED_DIMENSION, N.Int32Flags),
        }
    return {
        "model": model,
        "version": model.scalar(ModelField.VERSION, N.Uint32Flags),
        "description": model.string(ModelField.DESCRIPTION),
        "buffer_spans": [b.vector_span(BufferField.DATA) for b in buffers],
        "tensors": tensors,
        "inputs": tuple(subgraph.array(SubGraphField.INPUTS, "<i4")),
        "outputs": tuple(subgraph.array(SubGraphField.OUTPUTS, "<i4")),
        "operators": subgraph.tables(SubGraphField.OPERATORS),
        "opcodes": [
            (
                c.scalar(OperatorCodeField.DEPRECATED_BUILTIN_CODE, N.Int8Flags),
                c.scalar(OperatorCodeField.BUILTIN_CODE, N.Int32Flags),
                c.scalar(OperatorCodeField.VERSION, N.Int32Flags, default=1),
            )
            for c in model.tables(ModelField.OPERATOR_CODES)
        ],
        "metadata": {
            m.string(MetadataField.NAME): m.scalar(MetadataField.BUFFER, N.Uint32Flags)
            for m in model.tables(ModelField.METADATA)
        },
    }


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

# FULLY_CONNECTED / CONV_2D, per channel: in_scale 0.5, weight scales (0.25, 0.5), out_scale
# 0.125, so the multipliers are in*w/out = (1, 2). frexp gives mantissa 0.5 for both, i.e.
# quantized multiplier 2**30 with shifts 1 and 2: a left shift and no right shift, so double
# rounding (TFLM), single rounding (LiteRT FC) and plain maths all give acc * (1, 2) exactly.
IN_SCALE, IN_ZP = 0.5, 2
W_SCALES = np.array([0.25, 0.5], np.float32)
OUT_SCALE, OUT_ZP = 0.125, -3
MULTIPLIERS = np.array([1, 2])
FC_W = np.array([[1, 2, 3, 4], [-1, 0, 1, 2]], np.int8)
FC_BIAS = np.array([3, -5], np.int32)


def _exact_requantize(acc: np.ndarray, relu: bool = False) -> np.ndarray:
    """acc (..., channel) -> int8 with the exact multipliers above, plus optional fused RELU."""
    q = acc * MULTIPLIERS + OUT_ZP
    lo = OUT_ZP if relu else -128  # RELU in the quantized domain clamps at the zero point
    return np.clip(q, lo, 127).astype(np.int8)


def _act(name: str, shape: tuple[int, ...], scale: float, zp: int, **kw) -> Tensor:
    return Tensor(name, shape, np.int8, quant=Quant(scale, zp), **kw)


def fc_model(
    w_alignment: int = 16,
    b_alignment: int = 16,
    with_bias: bool = True,
    activation: Activation = Activation.NONE,
    batch: int = 4,
    bias_data: np.ndarray = FC_BIAS,
) -> tuple[Model, dict[str, Tensor]]:
    x = _act("x", (batch, 4), IN_SCALE, IN_ZP)
    w = Tensor("w", (2, 4), np.int8, data=FC_W, quant=Quant(W_SCALES, [0, 0]), alignment=w_alignment)
    b = Tensor(
        "b", (2,), np.int32, data=bias_data,
        quant=Quant(IN_SCALE * W_SCALES, [0, 0]), alignment=b_alignment,
    )  # fmt: skip
    y = _act("y", (batch, 2), OUT_SCALE, OUT_ZP)
    op = Operator(
        "FULLY_CONNECTED", [x, w, b if with_bias else None], [y],
        {"fused_activation_function": activation},
    )  # fmt: skip
    return Model([op], [x], [y]), {"x": x, "w": w, "b": b, "y": y}


def _fc_expected(x: np.ndarray, with_bias: bool = True, relu: bool = False) -> np.ndarray:
    acc = (x.astype(np.int64) - IN_ZP) @ FC_W.T.astype(np.int64)
    if with_bias:
        acc = acc + FC_BIAS
    return _exact_requantize(acc, relu)


# Rows: in range; saturating high; saturating low; negative but in range (for RELU).
FC_INPUT = np.array([[5, -7, 2, 10], [127, 127, 127, 127], [-128, 127, -128, -128], [0, 0, 0, 0]], np.int8)

CONV_W = np.array(  # (out_channels=2, kh=2, kw=2, in_channels=1)
    [[[[1], [-2]], [[3], [0]]], [[[-1], [1]], [[2], [-3]]]], np.int8
)
CONV_BIAS = np.array([7, -4], np.int32)


def conv_model(padding: Padding, stride: int) -> tuple[Model, tuple[int, ...]]:
    h = w = 5
    out = (h - 2) // stride + 1 if padding == Padding.VALID else -(-h // stride)
    out_shape = (1, out, out, 2)
    x = _act("x", (1, h, w, 1), IN_SCALE, IN_ZP)
    filt = Tensor("filter", CONV_W.shape, np.int8, data=CONV_W, quant=Quant(W_SCALES, [0, 0]))
    bias = Tensor("bias", (2,), np.int32, data=CONV_BIAS, quant=Quant(IN_SCALE * W_SCALES, [0, 0]))
    y = _act("y", out_shape, OUT_SCALE, OUT_ZP)
    # dilation_*_factor left out on purpose: the schema default (1) must apply.
    options = {"padding": padding, "stride_w": stride, "stride_h": stride}
    return Model([Operator("CONV_2D", [x, filt, bias], [y], options)], [x], [y]), out_shape


def _conv_expected(x: np.ndarray, padding: Padding, stride: int, out_hw: int) -> np.ndarray:
    """Direct convolution; positions outside the input contribute 0 (the input zero point)."""
    xs = x[0, :, :, 0].astype(np.int64) - IN_ZP
    h = xs.shape[0]
    pad = max((out_hw - 1) * stride + 2 - h, 0) // 2 if padding == Padding.SAME else 0
    padded = np.zeros((h + 4, h + 4), np.int64)
    padded[pad : pad + h, pad : pad + h] = xs  # extra zeros right/bottom cover the remainder
    acc = np.zeros((out_hw, out_hw, 2), np.int64)
    for i in range(out_hw):
        for j in range(out_hw):
            patch = padded[i * stride : i * stride + 2, j * stride : j * stride + 2]
            for c in range(2):
                acc[i, j, c] = np.sum(patch * CONV_W[c, :, :, 0]) + CONV_BIAS[c]
    return _exact_requantize(acc)[None]


ADD_SCALE = 0.05  # any scale: with equal scales TFLM's ADD reduces to integer addition


def add_model() -> Model:
    a = _act("a", (1, 2, 3), ADD_SCALE, 1)
    b = _act("b", (1, 2, 3), ADD_SCALE, -2)
    y = _act("y", (1, 2, 3), ADD_SCALE, 3)
    return Model([Operator("ADD", [a, b], [y])], [a, b], [y])


def zeros_model() -> tuple[Model, Tensor, Tensor]:
    """y = (x + zero_a) + zero_b with two identical all-zero constants (two adapter slots)."""
    x = _act("x", (1, 4), ADD_SCALE, 0)
    zero_a = Tensor("zero_a", (1, 4), np.int8, data=np.zeros((1, 4), np.int8), quant=Quant(ADD_SCALE, 0))
    zero_b = Tensor("zero_b", (1, 4), np.int8, data=np.zeros((1, 4), np.int8), quant=Quant(ADD_SCALE, 0))
    mid = _act("mid", (1, 4), ADD_SCALE, 0)
    y = _act("y", (1, 4), ADD_SCALE, 0)
    ops = [Operator("ADD", [x, zero_a], [mid]), Operator("ADD", [mid, zero_b], [y])]
    return Model(ops, [x], [y]), zero_a, zero_b


# --------------------------------------------------------------------------------------------
# (a) The models run, with the expected results
# --------------------------------------------------------------------------------------------


def test_fully_connected_per_channel_with_bias_runs_exactly():
    model, _ = fc_model()
    out = run_both(build_model(model), FC_INPUT)
    np.testing.assert_array_equal(out, _fc_expected(FC_INPUT))
    # Clamping at both ends is exercised too.
    assert out.max() == 127 and out.min() == -128


def test_fully_connected_fused_relu_option_reaches_the_kernel():
    model, _ = fc_model(activation=Activation.RELU)
    out = run_both(build_model(model), FC_INPUT)
    np.testing.assert_array_equal(out, _fc_expected(FC_INPUT, relu=True))
    assert (out == OUT_ZP).any()  # a negative result was clamped at the zero point


def test_omitted_optional_input_is_written_as_minus_one_and_runs():
    model, _ = fc_model(with_bias=False)
    data = build_model(model)
    (op,) = _layout(data)["operators"]
    assert op.array(OperatorField.INPUTS, "<i4")[2] == -1
    np.testing.assert_array_equal(run_both(data, FC_INPUT), _fc_expected(FC_INPUT, with_bias=False))


@pytest.mark.parametrize(
    ("padding", "stride"), [(Padding.VALID, 1), (Padding.SAME, 1), (Padding.SAME, 2), (Padding.VALID, 2)]
)
def test_conv2d_options_reach_the_kernel(padding, stride):
    model, out_shape = conv_model(padding, stride)
    x = np.arange(-60, 65, 5, dtype=np.int8).reshape(1, 5, 5, 1)
    out = run_both(build_model(model), x)
    assert out.shape == out_shape
    np.testing.assert_array_equal(out, _conv_expected(x, padding, stride, out_shape[1]))


def test_add_of_two_inputs():
    a = np.array([[[-128, -1, 0], [1, 100, 127]]], np.int8)
    b = np.array([[[-128, 5, 2], [-2, 100, 127]]], np.int8)
    out = run_both(build_model(add_model()), a, b)
    # Equal scales: out = (a - 1) + (b + 2) + 3, clamped.
    expected = np.clip(a.astype(int) - 1 + b.astype(int) + 2 + 3, -128, 127)
    np.testing.assert_array_equal(out, expected)


def test_identical_zero_constants_are_separate_slots_the_runtime_reads():
    model, zero_a, zero_b = zeros_model()
    built = build_model_with_layout(model)
    x = np.array([[-100, -1, 0, 90]], np.int8)
    np.testing.assert_array_equal(run_both(built.data, x), x)  # adding zeros is the identity

    # Write into one slot's reported range: only that slot changes, and the runtimes see it.
    for tensor, value in ((zero_a, 7), (zero_b, -20)):
        offset, length = built.buffer_ranges[tensor]
        patched = bytearray(built.data)
        patched[offset : offset + length] = np.full(length, value, np.int8).tobytes()
        out = run_both(bytes(patched), x)
        np.testing.assert_array_equal(out, np.clip(x.astype(int) + value, -128, 127))


def test_big_endian_bias_is_stored_little_endian():
    model, tensors = fc_model(bias_data=FC_BIAS.astype(">i4"))
    built = build_model_with_layout(model)
    offset, length = built.buffer_ranges[tensors["b"]]
    assert built.data[offset : offset + length] == FC_BIAS.astype("<i4").tobytes()
    np.testing.assert_array_equal(run_tflm(built.data, FC_INPUT), _fc_expected(FC_INPUT))


def _offline_plan(offsets: list[int]) -> bytes:
    # TFLM's "OfflineMemoryAllocation": [version, subgraphs, tensor count, offsets...]; -1 = online.
    return np.array([1, 1, len(offsets), *offsets], "<i4").tobytes()


def test_offline_memory_allocation_metadata_is_read_by_tflm(capfd):
    model, tensors = fc_model()
    index = tensor_indices(model)
    assert index == {tensors["x"]: 0, tensors["w"]: 1, tensors["b"]: 2, tensors["y"]: 3}
    # x at arena offset 0 and y at 64; the constants are planned online (they are in flash).
    model.metadata = {"OfflineMemoryAllocation": _offline_plan([0, -1, -1, 64])}
    np.testing.assert_array_equal(run_tflm(build_model(model), FC_INPUT), _fc_expected(FC_INPUT))
    # One entry short: TFLM refuses, which shows it found and parsed our metadata buffer.
    model.metadata = {"OfflineMemoryAllocation": _offline_plan([0, -1, -1])}
    with pytest.raises(RuntimeError, match="allocate tensors"):
        run_tflm(build_model(model), FC_INPUT)
    assert "offline buffer offsets (3) in metadata not equal nbr tensors (4)" in capfd.readouterr().err


# --------------------------------------------------------------------------------------------
# (b) Byte layout, read back from the file
# --------------------------------------------------------------------------------------------


def _check_layout(built: BuiltModel) -> dict:
    """The invariants every built file must satisfy; returns the walked layout."""
    data = built.data
    layout = _layout(data)
    assert data[4:8] == b"TFL3"  # bytes 0..4: uoffset of the root table
    assert layout["version"] == 3
    assert layout["buffer_spans"][0] is None or layout["buffer_spans"][0][1] == 0  # empty sentinel
    constants = {t.name: t for t in built.buffer_ranges}
    assert set(constants) == {n for n, t in layout["tensors"].items() if t["buffer"] != 0}
    buffers_used = [layout["tensors"][n]["buffer"] for n in constants]
    assert len(set(buffers_used)) == len(buffers_used)  # one buffer per constant, never shared
    spans = []
    for name, tensor in constants.items():
        t = layout["tensors"][name]
        assert built.buffer_indices[tensor] == t["buffer"]
        assert built.tensor_indices[tensor] == t["index"]
        start, length = layout["buffer_spans"][t["buffer"]]
        # The builder's report, the file's own offsets and the tensor's bytes all agree.
        assert built.buffer_ranges[tensor] == (start, length)
        assert start % tensor.alignment == 0
        expected = np.asarray(tensor.data).astype(tensor.data.dtype.newbyteorder("<")).tobytes()
        assert data[start : start + length] == expected
        spans.append((start, start + length))
    spans.sort()
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))
    for name, t in layout["tensors"].items():
        if t["scale"] is not None:
            assert len(t["zero_point"]) == len(t["scale"]) >= 1
    return layout


def test_layout_of_the_fully_connected_model():
    model, tensors = fc_model()
    built = build_model_with_layout(model)
    layout = _check_layout(built)
    assert layout["description"] == "tinyswap"
    assert layout["inputs"] == (0,) and layout["outputs"] == (3,)
    assert len(layout["buffer_spans"]) == 3  # sentinel, weights, bias
    x, w = layout["tensors"]["x"], layout["tensors"]["w"]
    assert x["buffer"] == 0 and x["type"] == TensorType.INT8 and x["shape"] == (4, 4)
    assert layout["tensors"]["b"]["type"] == TensorType.INT32
    np.testing.assert_array_equal(w["scale"], W_SCALES)
    np.testing.assert_array_equal(w["zero_point"], [0, 0])
    assert w["quantized_dimension"] == 0
    assert built.range_of("w") == built.buffer_ranges[tensors["w"]]
    with pytest.raises(KeyError, match="x"):
        built.range_of("x")  # not a constant
    (op,) = layout["operators"]
    # FullyConnectedOptions is union member 8; the fused activation given (NONE = 0) is
    # written although it equals the default.
    assert op.scalar(OperatorField.BUILTIN_OPTIONS_TYPE, N.Uint8Flags) == 8
    assert op.table(OperatorField.BUILTIN_OPTIONS).has(0)


def test_layout_of_the_two_identical_zero_tensors():
    model, zero_a, zero_b = zeros_model()
    built = build_model_with_layout(model)
    layout = _check_layout(built)
    a, b = layout["tensors"]["zero_a"], layout["tensors"]["zero_b"]
    assert a["buffer"] != b["buffer"] and 0 not in (a["buffer"], b["buffer"])
    (a_start, a_len), (b_start, b_len) = built.buffer_ranges[zero_a], built.buffer_ranges[zero_b]
    assert a_len == b_len == 4
    assert a_start + a_len <= b_start or b_start + b_len <= a_start  # distinct, non-overlapping
    assert built.data[a_start : a_start + 4] == built.data[b_start : b_start + 4] == bytes(4)


@pytest.mark.parametrize("alignment", [16, 64, 4096])
def test_constant_data_is_aligned_in_the_file(alignment):
    model, tensors = fc_model(w_alignment=alignment, b_alignment=alignment)
    built = build_model_with_layout(model)
    _check_layout(built)
    for name in ("w", "b"):
        offset, _ = built.buffer_ranges[tensors[name]]
        assert offset % alignment == 0, (name, offset)
    # Finish pads the file to the largest alignment requested (the builder's minalign), which
    # is what makes "aligned from the end" (how the builder aligns) aligned from the start.
    assert len(built.data) % alignment == 0
    np.testing.assert_array_equal(run_tflm(built.data, FC_INPUT), _fc_expected(FC_INPUT))


def test_mixed_alignments_in_one_file():
    model, tensors = fc_model(w_alignment=4096, b_alignment=64)
    built = build_model_with_layout(model)
    _check_layout(built)
    assert built.buffer_ranges[tensors["w"]][0] % 4096 == 0
    assert built.buffer_ranges[tensors["b"]][0] % 64 == 0
    # Buffer data lies in buffer order, after the tables.
    assert built.buffer_ranges[tensors["w"]][0] < built.buffer_ranges[tensors["b"]][0]
    np.testing.assert_array_equal(run_both(built.data, FC_INPUT), _fc_expected(FC_INPUT))


def test_operator_codes_are_deduplicated_with_the_highest_version():
    x = _act("x", (1, 4), ADD_SCALE, 0)
    t1, t2, y = (_act(n, (1, 4), ADD_SCALE, 0) for n in ("t1", "t2", "y"))
    ops = [
        Operator("ADD", [x, x], [t1], version=1),
        Operator("RELU", [t1], [t2]),
        Operator("ADD", [t2, t1], [y], version=2),
    ]
    layout = _check_layout(build_model_with_layout(Model(ops, [x], [y])))
    assert layout["opcodes"] == [(0, 0, 2), (19, 19, 1)]  # (deprecated, builtin, version)
    indices = [op.scalar(OperatorField.OPCODE_INDEX, N.Uint32Flags) for op in layout["operators"]]
    assert indices == [0, 1, 0]
    # RELU has no options table: none is written.
    assert not layout["operators"][1].has(OperatorField.BUILTIN_OPTIONS)


def test_extended_builtin_code_writes_the_placeholder_in_the_deprecated_field():
    x = Tensor("x", (4,), np.float32)
    axis = Tensor("axis", (), np.int32, data=np.array(0, np.int32))
    y = Tensor("y", (4,), np.float32)
    layout = _check_layout(build_model_with_layout(Model([Operator("CUMSUM", [x, axis], [y])], [x], [y])))
    assert BUILTIN_OPERATOR_CODES["CUMSUM"] == 128
    assert layout["opcodes"] == [(127, 128, 1)]
    assert layout["tensors"]["axis"]["shape"] == ()  # a scalar: empty shape vector


def test_shape_signature_and_explicit_default_options_are_written():
    model, _ = conv_model(Padding.SAME, 1)
    model.inputs[0].shape_signature = (-1, 5, 5, 1)
    model.operators[0].options["dilation_w_factor"] = 1  # equal to the default, still written
    layout = _check_layout(build_model_with_layout(model))
    assert layout["tensors"]["x"]["shape_signature"] == (-1, 5, 5, 1)
    assert layout["tensors"]["y"]["shape_signature"] is None
    options = layout["operators"][0].table(OperatorField.BUILTIN_OPTIONS)
    fields = [f.name for f in OPTIONS_TABLES["Conv2DOptions"].fields]
    assert options.scalar(fields.index("padding"), N.Int8Flags) == Padding.SAME
    assert options.scalar(fields.index("stride_h"), N.Int32Flags) == 1
    assert options.has(fields.index("dilation_w_factor"))
    assert not options.has(fields.index("dilation_h_factor"))  # omitted: schema default
    np.testing.assert_array_equal(
        run_both(build_model(model), np.zeros((1, 5, 5, 1), np.int8)).shape, (1, 5, 5, 2)
    )


def test_vector_options_are_written():
    x = Tensor("x", (2, 3), np.float32)
    y = Tensor("y", (3, 2), np.float32)
    op = Operator("RESHAPE", [x], [y], {"new_shape": [3, 2]})
    layout = _check_layout(build_model_with_layout(Model([op], [x], [y])))
    options = layout["operators"][0].table(OperatorField.BUILTIN_OPTIONS)
    assert options.array(0, "<i4").tolist() == [3, 2]
    out = run_tflm(build_model(Model([op], [x], [y])), np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(out, np.arange(6, dtype=np.float32).reshape(3, 2))


def test_metadata_entries_have_their_own_buffers():
    model, _ = fc_model()
    model.metadata = {"first": b"\x01\x02\x03", "second": b"\x01\x02\x03", "empty": b""}
    built = build_model_with_layout(model)
    layout = _check_layout(built)
    buffers = layout["metadata"]
    assert set(buffers) == {"first", "second", "empty"}
    assert len(set(buffers.values())) == 3 and 0 not in buffers.values()
    for name, index in buffers.items():
        start, length = layout["buffer_spans"][index]
        assert built.metadata_ranges[name] == (start, length)
        assert built.data[start : start + length] == model.metadata[name]
        assert start % MIN_ALIGNMENT == 0


def test_building_is_deterministic_and_does_not_change_the_model():
    model, tensors = fc_model()
    before = tensors["w"].data.copy()
    assert build_model(model) == build_model(model)
    np.testing.assert_array_equal(tensors["w"].data, before)


_DTYPES = [np.int8, np.uint8, np.int16, np.int32, np.int64, np.float32, np.float64, np.bool_]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(_DTYPES),
            st.lists(st.integers(1, 5), min_size=0, max_size=3),
            st.sampled_from([16, 32, 64, 128, 4096]),
            st.booleans(),  # all zeros (identical content) or random
        ),
        min_size=1,
        max_size=6,
    ),
    st.randoms(use_true_random=False),
)
def test_layout_invariants_hold_for_random_constants(specs, rnd):
    """Any mix of dtypes, shapes, alignments and duplicate contents: every invariant holds.

    Layout only: the chain of ADDs is never run (its dtypes do not match).
    """
    x = Tensor("x", (1,), np.float32)
    prev, ops = x, []
    for i, (dtype, shape, alignment, zeros) in enumerate(specs):
        n = int(np.prod(shape))
        values = np.zeros(n) if zeros else np.array([rnd.randint(0, 100) for _ in range(n)])
        data = values.astype(dtype).reshape(shape)
        const = Tensor(f"c{i}", tuple(shape), dtype, data=data, alignment=alignment)
        out = Tensor(f"t{i}", (1,), np.float32)
        ops.append(Operator("ADD", [prev, const], [out]))
        prev = out
    built = build_model_with_layout(Model(ops, [x], [prev]))
    _check_layout(built)
    assert len(built.data) % max(s[2] for s in specs) == 0


# --------------------------------------------------------------------------------------------
# (c) Misuse
# --------------------------------------------------------------------------------------------


def _x(name: str = "x") -> Tensor:
    return Tensor(name, (1, 4), np.int8, quant=Quant(0.5, 0))


def _const(name: str = "c", **kw) -> Tensor:
    return Tensor(name, (1, 4), np.int8, data=np.zeros((1, 4), np.int8), **kw)


def test_unknown_operator_is_refused():
    with pytest.raises(BuilderError, match="CONV_9D"):
        Operator("CONV_9D", [_x()], [_x("y")])
    with pytest.raises(BuilderError, match="CUSTOM"):
        Operator("CUSTOM", [_x()], [_x("y")])


def test_unknown_option_names_operator_and_option():
    with pytest.raises(OptionError, match=r"CONV_2D.*stride_x.*fields are"):
        Operator("CONV_2D", [], [], {"stride_x": 1})
    # Also when the options are changed after construction: named with the operator's index.
    model, _ = conv_model(Padding.VALID, 1)
    model.operators[0].options["stride_x"] = 1
    with pytest.raises(OptionError, match=r"operator 0 \(CONV_2D\).*stride_x"):
        build_model(model)


@pytest.mark.parametrize(
    ("op", "option", "value"),
    [
        ("CONV_2D", "stride_w", "2"),
        ("CONV_2D", "stride_w", True),  # bool is an int in Python, not here
        ("CONV_2D", "stride_w", 2.0),
        ("CONV_2D", "stride_w", 1 << 31),
        ("CONV_2D", "padding", 300),  # an i8 enum
        ("FULLY_CONNECTED", "keep_num_dims", 1),
        ("SOFTMAX", "beta", "1.0"),
        ("SOFTMAX", "beta", float("nan")),
        ("SOFTMAX", "beta", 1e39),  # overflows float32
        ("RESHAPE", "new_shape", [1, 2.5]),
        ("RESHAPE", "new_shape", 5),
        ("RESHAPE", "new_shape", "12"),
        ("RESHAPE", "new_shape", [True, 2]),
    ],
)
def test_wrong_typed_option_names_operator_and_option(op, option, value):
    with pytest.raises(OptionError, match=rf"{op}.*{option}"):
        Operator(op, [], [], {option: value})


def test_options_for_an_operator_without_options_table():
    with pytest.raises(OptionError, match=r"RELU.*alpha"):
        Operator("RELU", [_x()], [_x("y")], {"alpha": 1.0})


def test_tensor_produced_twice():
    x, y = _x(), _x("y")
    ops = [Operator("RELU", [x], [y]), Operator("RELU6", [x], [y])]
    with pytest.raises(GraphError, match=r"operator 1 \(RELU6\).*'y'.*already produced"):
        build_model(Model(ops, [x], [y]))


def test_tensor_used_before_produced():
    x, t, y = _x(), _x("t"), _x("y")
    ops = [Operator("ADD", [x, t], [y]), Operator("RELU", [x], [t])]
    with pytest.raises(GraphError, match=r"operator 0 \(ADD\).*'t'.*before"):
        build_model(Model(ops, [x], [y]))


def test_writing_a_constant_or_a_graph_input():
    x, c = _x(), _const()
    with pytest.raises(GraphError, match="constant tensor 'c'"):
        build_model(Model([Operator("RELU", [x], [c])], [x], [c]))
    x2 = _x("x2")
    with pytest.raises(GraphError, match="'x2', which is a graph input"):
        build_model(Model([Operator("RELU", [x], [x2])], [x, x2], [x2]))


def test_graph_inputs_and_outputs_must_make_sense():
    x, y, c = _x(), _x("y"), _const()
    with pytest.raises(GraphError, match="graph output 'y'"):
        build_model(Model([Operator("RELU", [x], [_x("z")])], [x], [y]))
    with pytest.raises(GraphError, match="graph input 'c' is a constant"):
        build_model(Model([Operator("ADD", [c, c], [y])], [c], [y]))
    with pytest.raises(GraphError, match="same tensor twice"):
        build_model(Model([Operator("RELU", [x], [y])], [x, x], [y]))


def test_duplicate_tensor_names():
    x, y, y_again = _x(), _x("y"), _x("y")
    ops = [Operator("RELU", [x], [y]), Operator("RELU", [y], [y_again])]
    with pytest.raises(GraphError, match="two different tensors are named 'y'"):
        build_model(Model(ops, [x], [y_again]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": np.zeros((1, 4), np.int16)}, "dtype int16"),
        ({"data": np.zeros((4,), np.int8)}, r"shape \(4,\)"),
        ({"data": [0, 0, 0, 0]}, "numpy array"),
        ({"alignment": 8}, "alignment 8"),
        ({"alignment": 48}, "alignment 48"),
        ({"alignment": 1 << 21}, "alignment"),
        ({"quant": Quant([0.5, 0.25], [0, 0], quantized_dimension=1)}, "per-axis"),
        ({"shape_signature": (1, 4, 1)}, "shape_signature"),
        ({"shape_signature": (1, 3)}, "shape_signature"),
        ({"dtype": np.complex64}, "no TFLite tensor type"),
        ({"dtype": "no such dtype"}, "not a dtype"),
        ({"shape": (1, -4)}, r"shape \(1, -4\)"),
        ({"shape": (1, 4.0)}, "ints"),
    ],
)
def test_bad_tensor(kwargs, message):
    args = {"name": "t", "shape": (1, 4), "dtype": np.int8} | kwargs
    with pytest.raises(BuilderError, match=message):
        Tensor(**args)


@pytest.mark.parametrize(
    ("scale", "zero_point", "axis", "message"),
    [
        ([0.5, 0.25], [0], 0, "2 entries but zero_point has 1"),
        (np.array([], np.float32), np.array([], np.int64), 0, "empty"),
        ([float("inf")], [0], 0, "non-finite"),
        ([0.5], [0.5], 0, "zero_point must be integers"),
        (["a"], [0], 0, "scale must be numbers"),
        ([[0.5]], [[0]], 0, "1-D"),
        ([0.5], [0], -1, "quantized_dimension"),
        ([0.5], [0], 1.0, "quantized_dimension"),
    ],
)
def test_bad_quantization(scale, zero_point, axis, message):
    with pytest.raises(BuilderError, match=message):
        Quant(scale, zero_point, quantized_dimension=axis)


def test_empty_constant_is_refused():
    with pytest.raises(BuilderError, match="at least one element"):
        Tensor("c", (0, 4), np.int8, data=np.zeros((0, 4), np.int8))


def test_changes_after_construction_are_checked_at_build():
    model, tensors = fc_model()
    tensors["w"].data = np.zeros((4, 2), np.int8)
    with pytest.raises(BuilderError, match=r"tensor 'w'.*shape"):
        build_model(model)
    model, tensors = fc_model()
    tensors["b"].quant.zero_point = np.array([0, 0, 0])
    with pytest.raises(BuilderError, match=r"tensor 'b'.*zero_point has 3"):
        build_model(model)


def test_bad_operator_fields():
    with pytest.raises(BuilderError, match="version"):
        Operator("RELU", [_x()], [_x("y")], version=0)
    with pytest.raises(BuilderError, match="outputs"):
        Operator("RELU", [_x()], [None])
    with pytest.raises(BuilderError, match="inputs"):
        Operator("RELU", [np.zeros(4)], [_x("y")])


def test_bad_metadata():
    model, _ = fc_model()
    model.metadata = {"OfflineMemoryAllocation": np.zeros(4, np.int32)}
    with pytest.raises(BuilderError, match="OfflineMemoryAllocation.*bytes"):
        build_model(model)
    model.metadata = {"": b""}
    with pytest.raises(BuilderError, match="metadata names"):
        build_model(model)


def test_custom_operator_round_trips_its_code_options_and_scratch_tensor():
    from tinyswap.reader import read_model

    stream = Tensor("stream", (8,), np.uint8, data=np.arange(8, dtype=np.uint8))
    scratch = Tensor("scratch", (64,), np.uint8)  # made by no operator: an NPU's arena area
    x, y = _x(), _x("y")
    options = bytes(range(5))
    op = Operator("CUSTOM", [stream, scratch, x], [y], custom_code="ethos-u", custom_options=options)
    data = build_model(Model([op], [x], [y], scratch_tensors=[scratch]))
    parsed = read_model(data)
    (custom,) = parsed.main.operators
    assert custom.op_name == "CUSTOM:ethos-u"
    lo, n = custom.custom_options_span
    assert data[lo : lo + n] == options
    assert [parsed.main.tensors[i].name for i in custom.inputs] == ["stream", "scratch", "x"]
    assert parsed.tensor_data(parsed.main.tensors[custom.inputs[0]]).tolist() == list(range(8))
    with pytest.raises(GraphError, match="scratch"):  # without the declaration it is read before it exists
        build_model(Model([op], [x], [y]))
    with pytest.raises(BuilderError, match="custom_code"):
        Operator("RELU", [x], [y], custom_code="ethos-u")
