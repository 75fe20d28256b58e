"""The tf.lite-style surface, zero-copy patching, batching and typed errors."""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap import Interpreter, InterpreterError, UnsupportedOpError
from tinyswap.oracles import run_litert, run_tflm
from tinyswap.reader import read_model

from tests.conftest import TFLM_MODELS

HELLO = TFLM_MODELS / "hello_world_int8.tflite"


def all_inputs() -> np.ndarray:
    return np.arange(-128, 128, dtype=np.int8).reshape(256, 1)


def test_patching_weight_bytes_changes_the_next_invoke_exactly_like_a_fresh_interpreter() -> None:
    data = bytearray(HELLO.read_bytes())
    live = Interpreter(model_content=data)
    before = live.run(all_inputs())[0]
    model = read_model(bytes(data))
    weights = model.main.tensors[model.main.operators[1].inputs[1]]
    buf = model.buffers[weights.buffer]
    rng = np.random.default_rng(7)
    data[buf.offset : buf.offset + buf.length] = rng.integers(-127, 128, buf.length, dtype=np.int8).tobytes()
    after = live.run(all_inputs())[0]  # same interpreter, no re-allocation
    fresh = Interpreter(model_content=bytes(data)).run(all_inputs())[0]
    assert not np.array_equal(before, after), "the patch had no effect"
    np.testing.assert_array_equal(after, fresh)
    golden = np.concatenate([run_tflm(bytes(data), [x[None]])[0] for x in all_inputs()])
    np.testing.assert_array_equal(after, golden)


def test_batch_resize_equals_row_by_row() -> None:
    interp = Interpreter(model_path=HELLO)
    batched = interp.run(all_inputs())[0]
    rows = np.concatenate([interp.run(x[None])[0] for x in all_inputs()])
    np.testing.assert_array_equal(batched, rows)


def test_details_match_litert() -> None:
    ours = Interpreter(model_path=HELLO)
    ours.allocate_tensors()
    from tinyswap.oracles import litert_interpreter

    theirs = litert_interpreter(HELLO.read_bytes())
    for a, b in zip(ours.get_input_details() + ours.get_output_details(),
                    theirs.get_input_details() + theirs.get_output_details()):
        for key in ("name", "index", "dtype", "quantization"):
            assert a[key] == b[key], key
        np.testing.assert_array_equal(a["shape"], b["shape"])
        np.testing.assert_array_equal(a["quantization_parameters"]["scales"], b["quantization_parameters"]["scales"])
    x = all_inputs()[:1]
    np.testing.assert_array_equal(ours.run(x)[0], run_litert(HELLO.read_bytes(), [x])[0])


def test_tf_lite_call_sequence() -> None:
    interp = Interpreter(model_path=str(HELLO))
    interp.resize_tensor_input(0, [3, 1])
    interp.allocate_tensors()
    d_in, d_out = interp.get_input_details()[0], interp.get_output_details()[0]
    rows = np.array([[1], [2], [3]], np.int8)
    interp.set_tensor(d_in["index"], rows)
    interp.invoke()
    got = interp.get_tensor(d_out["index"])
    golden = np.concatenate([run_tflm(HELLO.read_bytes(), [row[None]])[0] for row in rows])
    np.testing.assert_array_equal(got, golden)
    # hello_world's peak is two live [batch, 16] int8 activations: 16 bytes per row, already
    # aligned, so a batch of 3 needs exactly three times the arena of one row.
    single = Interpreter(model_path=HELLO)
    single.allocate_tensors()
    assert interp.arena_bytes == 3 * single.arena_bytes > 0


def test_usage_errors_are_typed() -> None:
    interp = Interpreter(model_path=HELLO)
    with pytest.raises(InterpreterError, match="allocate_tensors"):
        interp.invoke()
    interp.allocate_tensors()
    with pytest.raises(InterpreterError, match="type int8"):
        interp.set_tensor(0, np.zeros((1, 1), np.float32))
    with pytest.raises(ValueError, match="shape"):  # InterpreterError is a ValueError, as in tf.lite
        interp.set_tensor(0, np.zeros((2, 1), np.int8))
    with pytest.raises(InterpreterError, match="not a graph input"):
        interp.set_tensor(5, np.zeros((16,), np.int32))
    with pytest.raises(InterpreterError):
        Interpreter()
    with pytest.raises(InterpreterError, match="profile"):
        Interpreter(model_path=HELLO, profile="nope")


def test_unsupported_operator_is_refused_at_allocate_with_its_name() -> None:
    data = bytearray(HELLO.read_bytes())
    # Re-point the FULLY_CONNECTED operator code at SQUARED_DIFFERENCE (99) in place: find the
    # OperatorCode table's builtin_code field (int32 9) via the parsed code's position.
    import struct

    from tinyswap.reader import _Reader  # the same checked walker the reader uses
    from tinyswap.schema import ModelField, OperatorCodeField, field_offset

    r = _Reader(bytes(data))
    root = r.table(struct.unpack_from("<I", data, 0)[0], "Model")
    code_tab = r.table_vector(root, ModelField.OPERATOR_CODES, "codes")[0]
    for index, value in ((OperatorCodeField.BUILTIN_CODE, "<i"), (OperatorCodeField.DEPRECATED_BUILTIN_CODE, "<b")):
        off = code_tab.Offset(field_offset(index))
        assert off, "the example model writes both opcode fields"
        struct.pack_into(value, data, code_tab.Pos + off, 99)
    interp = Interpreter(model_content=data)
    with pytest.raises(UnsupportedOpError, match="SQUARED_DIFFERENCE"):
        interp.allocate_tensors()


def test_thread_count_never_changes_a_bit() -> None:
    raw = (TFLM_MODELS / "person_detect.tflite").read_bytes()
    x = np.random.default_rng(5).integers(-128, 128, size=(6, 96, 96, 1), dtype=np.int8)
    one = Interpreter(model_content=raw, num_threads=1).run(x)[0]
    two = Interpreter(model_content=raw, num_threads=2).run(x)[0]
    np.testing.assert_array_equal(one, two)
    with pytest.raises(InterpreterError, match="num_threads"):
        Interpreter(model_content=raw, num_threads=0)


# -- graphs TFLite Micro refuses (or runs out of bounds): typed errors at allocate_tensors --


def _pad_model(declared: tuple[int, ...], pairs, dtype=np.int32) -> bytes:
    from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model

    q = Quant(0.1, 0)
    x, y = Tensor("x", (1, 3), np.int8, quant=q), Tensor("y", declared, np.int8, quant=q)
    p = Tensor("p", (2, 2), dtype, data=np.array(pairs, dtype))
    return build_model(Model([Operator("PAD", [x, p], [y])], [x], [y]))


def with_graph_input(model: bytes, position: int, tensor: int) -> bytes:
    """`model` with graph input `position` of subgraph 0 pointing at tensor `tensor` (the
    builder refuses to write such a graph, so the index is patched in the bytes)."""
    import struct

    import flatbuffers
    from flatbuffers.table import Table

    data = bytearray(model)
    root = Table(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0))
    subgraph = Table(data, root.Indirect(root.Vector(root.Offset(8))))  # Model.subgraphs[0]
    struct.pack_into("<i", data, subgraph.Vector(subgraph.Offset(6)) + 4 * position, tensor)  # SubGraph.inputs
    return bytes(data)


def test_a_declared_output_shape_that_disagrees_is_refused_like_tflm() -> None:
    from tinyswap.errors import ModelError

    model = _pad_model((1, 9), [[0, 0], [1, 2]])
    with pytest.raises(ModelError, match=r"operator 0 \(PAD\): output tensor 2 \('y'\) is declared with "
                                         r"shape \(1, 9\), but the operator computes \(1, 6\)"):
        Interpreter(model_content=model).allocate_tensors()
    with pytest.raises(RuntimeError):  # pad_common.cc: output_dim != expected_dim
        run_tflm(model, [np.zeros((1, 3), np.int8)])


def test_a_declared_conv_output_shape_that_disagrees_is_refused_though_tflm_runs_it() -> None:
    """TFLM's CONV_2D (like RELU, SOFTMAX, FULLY_CONNECTED, CONCATENATION) never compares its
    output tensor's dims with the window: it runs on the declared shape. We refuse instead."""
    from tinyswap.errors import ModelError
    from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model

    q = Quant(0.1, 0)
    x, y = Tensor("x", (1, 4, 4, 2), np.int8, quant=q), Tensor("y", (1, 3, 3, 2), np.int8, quant=q)
    w = Tensor("w", (2, 1, 1, 2), np.int8, data=np.ones((2, 1, 1, 2), np.int8), quant=q)
    b = Tensor("b", (2,), np.int32, data=np.zeros(2, np.int32), quant=Quant(0.01, 0))
    opts = dict(padding=1, stride_w=1, stride_h=1, fused_activation_function=0, dilation_w_factor=1,
                dilation_h_factor=1)
    model = build_model(Model([Operator("CONV_2D", [x, w, b], [y], opts)], [x], [y]))
    with pytest.raises(ModelError, match=r"operator 0 \(CONV_2D\): .* declared with shape \(1, 3, 3, 2\), "
                                         r"but the operator computes \(1, 4, 4, 2\)"):
        Interpreter(model_content=model).allocate_tensors()
    assert run_tflm(model, [np.zeros((1, 4, 4, 2), np.int8)])[0].shape == (1, 3, 3, 2)


def test_after_a_resize_outputs_follow_the_new_inputs() -> None:
    interp = Interpreter(model_path=HELLO)
    interp.resize_tensor_input(interp.get_input_details()[0]["index"], (5, 1))
    interp.allocate_tensors()
    assert tuple(interp.get_output_details()[0]["shape"]) == (5, 1)


def test_a_graph_input_backed_by_a_constant_is_refused() -> None:
    from tinyswap.errors import ModelError
    from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model

    q = Quant(0.1, 0)
    x, y = Tensor("x", (1, 4), np.int8, quant=q), Tensor("y", (1, 4), np.int8, quant=q)
    c = Tensor("c", (1, 4), np.int8, quant=q, data=np.ones((1, 4), np.int8))
    model = with_graph_input(
        build_model(Model([Operator("ADD", [x, c], [y], dict(fused_activation_function=0))], [x], [y])), 0, 1
    )
    with pytest.raises(ModelError, match=r"graph input 1 \('c'\) is backed by a constant buffer"):
        Interpreter(model_content=model).allocate_tensors()


@pytest.mark.parametrize("pairs, dtype", [
    ([[0, 0], [2**62, 2**62]], np.int64),  # the output dimension wraps int64
    ([[0, 0], [2**31 - 1, 2**31 - 1]], np.int32),  # beyond TFLM's int32 dimensions
])
def test_pad_sizes_past_int32_are_refused(pairs, dtype) -> None:
    from tinyswap.errors import ModelError

    with pytest.raises(ModelError, match=r"operator 0 \(PAD\): paddings .* beyond TFLM's int32 dimensions"):
        Interpreter(model_content=_pad_model((1, 3), pairs, dtype)).allocate_tensors()
