"""The zero-copy reader: structure of real models, zero-copy views, and typed errors."""

from __future__ import annotations

import mmap
import struct

import numpy as np
import pytest

from tinyswap.errors import ModelError
from tinyswap.reader import MAX_SUBGRAPHS, read_model
from tinyswap.schema import TensorType

from tests.conftest import TFLM_MODELS

HELLO = TFLM_MODELS / "hello_world_int8.tflite"
SPEECH = TFLM_MODELS / "micro_speech_quantized.tflite"
PERSON = TFLM_MODELS / "person_detect.tflite"


def test_reads_the_structure_of_hello_world() -> None:
    model = read_model(HELLO.read_bytes())
    graph = model.main
    assert model.version == 3
    assert [op.op_name for op in graph.operators] == ["FULLY_CONNECTED"] * 3
    assert len(graph.tensors) == 10
    weights = graph.tensors[graph.operators[1].inputs[1]]
    assert weights.type == TensorType.INT8 and weights.shape == (16, 16)
    assert model.buffers[0].length == 0  # the empty sentinel


def test_reads_options_and_ops_of_every_example_model() -> None:
    speech = read_model(SPEECH.read_bytes()).main
    dw = speech.operators[1]
    assert dw.op_name == "DEPTHWISE_CONV_2D"
    assert dw.options["depth_multiplier"] == 8 and dw.options["stride_w"] == 2
    person = read_model(PERSON.read_bytes()).main
    assert {op.op_name for op in person.operators} == {
        "CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "SOFTMAX"
    }


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "mmap"])
def test_accepts_every_buffer_kind_and_returns_views(kind: str, tmp_path) -> None:
    raw = HELLO.read_bytes()
    if kind == "bytes":
        data = raw
    elif kind == "bytearray":
        data = bytearray(raw)
    elif kind == "memoryview":
        data = memoryview(bytearray(raw))
    else:
        path = tmp_path / "m.tflite"
        path.write_bytes(raw)
        f = open(path, "r+b")
        data = mmap.mmap(f.fileno(), 0)
    model = read_model(data)
    tensor = model.main.tensors[model.main.operators[1].inputs[1]]
    view = model.tensor_data(tensor)
    buf = model.buffers[tensor.buffer]
    assert bytes(memoryview(data)[buf.offset : buf.offset + buf.length]) == view.tobytes()
    if kind != "bytes":
        # Writing into the model buffer is seen through the view: nothing was copied.
        before = int(view[0, 0])
        memoryview(data)[buf.offset] = (before + 1) & 0xFF
        assert int(view[0, 0]) == np.int8(np.uint8((before + 1) & 0xFF))
    else:
        assert not view.flags.writeable
    if kind == "mmap":
        del view
        data.close()


def test_rejects_non_tflite_identifier() -> None:
    raw = bytearray(HELLO.read_bytes())
    raw[4:8] = b"XXXX"
    with pytest.raises(ModelError, match="identifier"):
        read_model(raw)


@pytest.mark.parametrize("length", [0, 3, 7, 8, 12, 100, 1000, 2000, 2703])
def test_truncated_files_raise_model_error(length: int) -> None:
    with pytest.raises(ModelError):
        read_model(HELLO.read_bytes()[:length])


def test_every_truncation_of_hello_world_is_a_model_error() -> None:
    raw = HELLO.read_bytes()
    for n in range(len(raw)):
        with pytest.raises(ModelError):
            read_model(raw[:n])


def _find_u32(raw: bytes, value: int, start: int = 0) -> int:
    return raw.index(struct.pack("<I", value), start)


def test_huge_vector_length_is_refused_without_allocating() -> None:
    raw = bytearray(HELLO.read_bytes())
    model = read_model(bytes(raw))
    buf = model.buffers[model.main.tensors[4].buffer]  # the 16x16 weights
    struct.pack_into("<I", raw, buf.offset - 4, 0x7FFFFFF0)  # its length prefix
    with pytest.raises(ModelError, match="needs bytes"):
        read_model(raw)


def test_constant_buffer_of_the_wrong_size_is_refused() -> None:
    raw = bytearray(HELLO.read_bytes())
    model = read_model(bytes(raw))
    buf = model.buffers[model.main.tensors[4].buffer]
    struct.pack_into("<I", raw, buf.offset - 4, buf.length - 16)  # a shorter data vector
    with pytest.raises(ModelError, match="holds 240 bytes"):
        read_model(raw)


def test_wrong_type_is_refused() -> None:
    with pytest.raises(ModelError, match="must be bytes"):
        read_model("not a buffer")  # type: ignore[arg-type]


def _subgraphs_vector(raw: bytes) -> int:
    """The position of Model.subgraphs' length prefix in `raw`."""
    root = struct.unpack_from("<I", raw, 0)[0]
    vtable = root - struct.unpack_from("<i", raw, root)[0]
    field = struct.unpack_from("<H", raw, vtable + 4 + 2 * 2)[0]  # field 2: subgraphs
    return root + field + struct.unpack_from("<I", raw, root + field)[0]


def test_more_subgraphs_than_the_interpreter_runs_are_refused_before_parsing() -> None:
    raw = bytearray(HELLO.read_bytes())
    at = _subgraphs_vector(bytes(raw))
    assert struct.unpack_from("<I", raw, at)[0] == 1
    # The entries after the first are whatever bytes follow: never read.
    struct.pack_into("<I", raw, at, MAX_SUBGRAPHS + 1)
    with pytest.raises(ModelError, match=f"Model.subgraphs: {MAX_SUBGRAPHS + 1} subgraphs, over the supported "
                                         f"maximum of {MAX_SUBGRAPHS}"):
        read_model(raw)
    struct.pack_into("<I", raw, at, 0)
    with pytest.raises(ModelError, match="Model.subgraphs is empty"):
        read_model(raw)


def test_reading_a_real_model_spends_a_fraction_of_the_budget() -> None:
    from tinyswap.reader import VISITS_PER_WORD, _Reader

    raw = PERSON.read_bytes()
    spent = []
    original = _Reader.charge

    def charge(self, units, where):
        original(self, units, where)
        spent[:] = [self.spent, self.size]

    _Reader.charge = charge
    try:
        read_model(raw)
    finally:
        _Reader.charge = original
    # An unshared file costs well under one unit per 4-byte word: far from the refusal.
    assert spent[0] < spent[1] // 4 < VISITS_PER_WORD * spent[1] // 4
