"""The slot map module: writer and reader, validation against the model (the fuzzing sweep is
`tests/sweeps/test_fuzz_slotmap.py`)."""

from __future__ import annotations

import copy
import json

import pytest

from tinyswap.slotmap import SlotMap, SlotMapError

from tests.adapter_cases import example_bundle



@pytest.fixture(scope="module")
def bundle():
    return example_bundle("cnn")


def test_reads_the_compiler_output_and_checks_the_model(bundle) -> None:
    smap = SlotMap.from_json(json.loads(json.dumps(bundle.smap)))
    assert smap.num_slots == 2 and smap.base_digest == bundle.smap["base_digest"]
    assert [g.input_index for g in smap.gates] == [1, 2]
    assert smap.gates[0].quantize(0.0) == -128 and smap.gates[0].quantize(1.0) == 127
    smap.check_model(bundle.data)
    patched = bytearray(bundle.data)
    for slot in bundle.smap["slots"]:  # slot bytes do not change the base digest
        patched[slot["offset"]] = 0x55
    smap.check_model(patched)
    first = bundle.smap["slots"][0]["offset"]
    patched[first - 1] ^= 1  # one base byte does
    with pytest.raises(SlotMapError, match="digest"):
        smap.check_model(patched)
    with pytest.raises(SlotMapError, match="bytes"):
        smap.check_model(bytes(bundle.data) + b"\0")


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.update(format="other"), "format"),
    (lambda d: d.update(base_digest="abc"), "base_digest"),
    (lambda d: d["slots"].pop(), "at least 2"),
    (lambda d: d["slots"][0].update(length=d["slots"][1]["offset"] - d["slots"][0]["offset"] + 16), "overlap"),
    (lambda d: d["slots"][0]["tensors"][0].update(offset=0), "outside the slot"),
    (lambda d: d["slots"][0]["tensors"][0].update(dtype="float32"), "dtype"),
    (lambda d: d["slots"][0]["tensors"][0].update(shape=[999]), "do not hold"),
    (lambda d: d["slots"][1]["tensors"][0].update(role="Z"), "different tensor layout"),
    (lambda d: d["gates"][0].update(scale=0), "scale"),
    (lambda d: d["slots"][0].update(length=10**9), "runs past"),
])
def test_each_inconsistency_is_named(bundle, mutate, message) -> None:
    raw = copy.deepcopy(bundle.smap)
    mutate(raw)
    with pytest.raises(SlotMapError, match=message):
        SlotMap.from_json(raw)


# -- the writer and the reader, one module ------------------------------------------------------
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_writer_and_reader_loop_back(name) -> None:
    from tinyswap.export.bundle import slot_map

    compiled = example_bundle(name).compiled
    written = slot_map(compiled)
    text = json.dumps(written.to_json())
    read = SlotMap.from_json(json.loads(text))
    assert read == written and json.dumps(read.to_json()) == text  # nothing lost either way
    read.check_model(compiled.data)
    assert read.damaged_frames(compiled.data) == []
    for s in read.slots:  # the frame is the compiled range with the slot tensors zeroed
        assert s.template() == bytes(compiled.data[s.offset : s.offset + s.length]) and s.frame
    assert read.alignment == compiled.plan.alignment and read.plan == compiled.plan.to_json()
    assert all(t.name and t.zero_points for t in read.layout)


def test_one_base_digest_for_writer_and_reader(bundle) -> None:
    from tinyswap.slotmap import base_digest

    smap = SlotMap.from_json(bundle.smap)
    ranges = [(s.offset, s.length) for s in smap.slots]
    zeroed = bytearray(bundle.data)
    for offset, length in ranges:
        zeroed[offset : offset + length] = bytes(length)
    import hashlib

    assert base_digest(bundle.data, ranges) == hashlib.sha256(zeroed).hexdigest() == smap.digest_of(bundle.data)
    assert base_digest(bundle.data, reversed(ranges)) == smap.base_digest  # any order of ranges


def test_the_writer_takes_typed_records_and_derives_ranges_and_frames(bundle) -> None:
    from tinyswap.slotmap import build_slotmap, frame_runs, slot_ranges

    smap = SlotMap.from_json(bundle.smap)
    tensors = [t for s in smap.slots for t in s.tensors]
    again = build_slotmap(bundle.data, tensors, list(smap.gates), alignment=smap.alignment,
                          headroom=smap.headroom, plan=smap.plan)
    assert again == smap
    assert slot_ranges(tensors, smap.alignment) == [(s.offset, s.length) for s in smap.slots]
    s = smap.slots[0]
    assert frame_runs(bundle.data, s.offset, s.length, s.tensors) == s.frame
    with pytest.raises(SlotMapError, match="expected 0..0"):
        slot_ranges([t for t in tensors if t.slot == 1], smap.alignment)
    slot_free = build_slotmap(b"\x01" * 40, [], [])
    assert slot_free.num_slots == 0 and slot_free.to_json()["slots"] == [] and slot_free.to_json()["num_slots"] == 0
    with pytest.raises(SlotMapError, match="compiled without slots"):  # a slot-free bundle is no swap target
        SlotMap.from_json(slot_free.to_json())


def test_a_slot_map_without_frames_is_refused_naming_the_field(bundle) -> None:
    raw = copy.deepcopy(bundle.smap)
    del raw["slots"][1]["frame"]
    with pytest.raises(SlotMapError, match="slot 1: the required field 'frame' is missing"):
        SlotMap.from_json(raw)


def test_damaged_frames_are_found_from_the_frame_alone(bundle) -> None:
    smap = SlotMap.from_json(bundle.smap)
    image = bytearray(bundle.data)
    s = smap.slots[1]
    rel, data = s.frame[0]
    image[s.offset + rel] ^= 0xFF  # a length prefix inside the range
    for t in smap.slots[0].tensors:  # tensor bytes are the slot's content, not its frame
        image[t.offset] = 0x55
    assert smap.damaged_frames(image) == [1]
    smap.check_model(image)  # the base digest zeroes whole ranges: only the frame notices
