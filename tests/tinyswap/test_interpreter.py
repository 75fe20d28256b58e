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
