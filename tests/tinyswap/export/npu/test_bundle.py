"""An Ethos-U bundle keeps its slots as plain buffers and everything else as Vela made it.

Held on the digits CNN and the examples depthwise CNN, for Ethos-U55-128 (the other three
configurations are stitched by the cost table and `test_stitch.py`). Without an NPU the checks
are: writing adapter packages through the swap manager changes no byte outside the slot map's
ranges, and Vela's command streams and weight areas are byte for byte Vela's output; the
reference twin (each `ethos-u` operator replaced by its segment's operators) equals TFLite
Micro on random slot bytes, and its segments are exactly the operators Vela compiled; Vela
places at least 90% of the base's MACs (its own report) on the NPU.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("ethosu.vela")

from tinyswap.interpreter import Interpreter  # noqa: E402
from tinyswap.oracles import run_tflm  # noqa: E402
from tinyswap.package import Keyring  # noqa: E402
from tinyswap.reader import read_model  # noqa: E402
from tinyswap.slotmap import SlotMap  # noqa: E402
from tinyswap.swap.manager import SwapManager  # noqa: E402

from tests.adapter_cases import KEY, outside_slots, package  # noqa: E402
from tests.npu_cases import MODELS, base_only, npu_bundle, smap_of  # noqa: E402

NAMES = list(MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_writing_adapters_changes_no_byte_outside_the_slot_ranges(name):
    b = npu_bundle(name)
    smap = smap_of(b.stitched)
    SlotMap.from_json(smap).check_model(b.data)  # the post-Vela slot map describes the stitched file
    manager = SwapManager(bytearray(b.data), smap, Keyring([KEY.public_key()]))
    before = outside_slots(smap, b.data)
    kinds = sorted({t["kind"] for t in smap["slots"][0]["tensors"]})
    written = 0
    for seed, kind in enumerate(kinds * 2):
        manager.load_adapter(package(smap, 100 + seed, f"{kind}{seed}", kind=kind))
        written += 1
        assert outside_slots(smap, bytes(manager.image.buffer)) == before
    image = bytes(manager.image.buffer)
    assert written >= 2 and image != b.data  # the slots did change
    # Vela's own bytes, read from Vela's output file, sit unchanged in the written image.
    for n in b.operators:
        vela = read_model(n.run.output)
        for t in vela.main.tensors:
            buf = vela.buffers[t.buffer]
            if buf.length:
                offset, length = b.stitched.built.buffer_ranges[next(c for c in n.constants if c.name.endswith(t.name))]
                assert bytes(image[offset : offset + length]) == n.run.output[buf.offset : buf.offset + buf.length]


@pytest.mark.parametrize("name", NAMES)
def test_slot_ranges_are_aligned_and_hold_no_vela_byte(name):
    b = npu_bundle(name)
    smap = smap_of(b.stitched)
    alignment = b.source.plan.alignment
    spans = b.vela_spans()
    assert spans and all(s["sha256"] == hashlib.sha256(b.data[s["offset"] : s["offset"] + s["length"]]).hexdigest()
                         for s in spans)
    for slot in smap["slots"]:
        assert slot["offset"] % alignment == 0
        lo, hi = slot["offset"], slot["offset"] + slot["length"]
        assert all(s["offset"] + s["length"] <= lo or s["offset"] >= hi for s in spans)


def _random_slots(compiled, rng: np.random.Generator) -> bytes:
    """`compiled`'s bytes with every slot tensor random: int8 bytes anything, int32 biases
    within +-2^20 (an accumulator a real adapter can reach; wider ones overflow int32)."""
    data = bytearray(compiled.data)
    for st_ in compiled.slot_tensors:
        offset, length = compiled.built.buffer_ranges[st_.tensor]
        if np.dtype(st_.tensor.dtype) == np.int32:
            values = rng.integers(-(1 << 20), 1 << 20, length // 4, dtype=np.int32).astype("<i4").tobytes()
        else:
            values = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        data[offset : offset + length] = values
    return bytes(data)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=6)
@given(seed=st.integers(0, 2**32 - 1))
def test_twin_equals_tflite_micro_on_random_slot_bytes(name, seed):
    b = npu_bundle(name)
    rng = np.random.default_rng(seed)
    twin = _random_slots(b.twin, np.random.default_rng(seed))
    source = _random_slots(b.source, np.random.default_rng(seed))  # the same slot values, the compiler's file
    shape = tuple(b.source.model.inputs[0].shape)
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    gates = [rng.integers(-128, 128, (1, 1), dtype=np.int8) for _ in b.source.gates]
    golden = run_tflm(twin, [x, *gates])[0]
    ours = Interpreter(model_content=twin)
    ours.allocate_tensors()
    np.testing.assert_array_equal(ours.run(x, *gates)[0], golden)
    np.testing.assert_array_equal(run_tflm(source, [x, *gates])[0], golden)


def _op_digest(model, op) -> str:
    """An operator as the file states it: kind, options, and every tensor it touches (name,
    shape, type, quantization, constant bytes)."""
    h = hashlib.sha256(f"{op.op_name}|{sorted((k, str(v)) for k, v in op.options.items())}".encode())
    for i in (*op.inputs, *op.outputs):
        t = model.main.tensors[i]
        q = t.quantization
        h.update(f"{t.name}|{t.shape}|{t.type.name}|".encode())
        if q is not None:
            h.update(np.asarray(q.scale, "<f4").tobytes() + np.asarray(q.zero_point, "<i8").tobytes())
        buf = model.buffers[t.buffer]
        h.update(bytes(model.data[buf.offset : buf.offset + buf.length]))
    return h.hexdigest()


@pytest.mark.parametrize("name", NAMES)
def test_twin_segments_are_exactly_what_vela_compiled(name):
    b = npu_bundle(name)
    twin = read_model(b.twin.data)
    stitched = read_model(b.data)
    ops = twin.main.operators
    position = 0  # the twin's operator index; the stitched graph has one operator per segment
    for k, step in enumerate(stitched.main.operators):
        if step.op_name != "CUSTOM:ethos-u":
            assert _op_digest(twin, ops[position]) == _op_digest(stitched, step)  # CPU side: the same operators
            position += 1
            continue
        n = next(n for n in b.operators if n.segment.first == position)
        given_to_vela = b.segment_models()[n.segment.index]
        assert hashlib.sha256(given_to_vela).hexdigest() == n.run.input_sha256
        seg = read_model(given_to_vela)
        mine = [_op_digest(twin, op) for op in ops[position : position + len(seg.main.operators)]]
        assert mine == [_op_digest(seg, op) for op in seg.main.operators]
        position += len(seg.main.operators)
    assert position == len(ops)


@pytest.mark.parametrize("name", NAMES)
def test_vela_places_at_least_90_percent_of_the_base_macs_on_the_npu(name):
    from tinyswap.export.npu.vela import compile_with_vela

    b = npu_bundle(name)
    base = compile_with_vela(base_only(name).data, b.config, "base")
    assert base.cpu_operators == 0
    assert all(n.run.npu_operators == 1 and n.run.cpu_operators == 0 for n in b.operators)
    on_npu = sum(n.run.summary.macs for n in b.operators)
    print(f"\n{name}: {on_npu} of the base's {base.summary.macs} MACs on the NPU (Vela's reports)")
    assert on_npu >= 0.9 * base.summary.macs
