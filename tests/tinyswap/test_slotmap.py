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


# -- the slot map against the model file (check_model) ------------------------------------------
def _checked(bundle, mutate, recompute: bool = True) -> None:
    """Tamper with a copy of the slot map; with `recompute` the base digest is made again for the
    tampered ranges, so only the checks against the model file can refuse it."""
    from tinyswap.slotmap import base_digest

    raw = copy.deepcopy(bundle.smap)
    mutate(raw)
    _refit_frames(raw, bundle.data)
    if recompute:
        raw["base_digest"] = base_digest(bundle.data, [(s["offset"], s["length"]) for s in raw["slots"]])
    SlotMap.from_json(raw).check_model(bundle.data)


def _tensor(raw, slot, layer, role):
    return next(t for t in raw["slots"][slot]["tensors"] if (t["layer"], t["role"]) == (layer, role))


def _swap_offsets(raw):
    d, u = _tensor(raw, 0, "dw1", "D"), _tensor(raw, 0, "dw1", "U")  # both 32 bytes
    d["offset"], u["offset"] = u["offset"], d["offset"]


def _drop(raw, layer, role):
    for s in raw["slots"]:
        s["tensors"] = [t for t in s["tensors"] if (t["layer"], t["role"]) != (layer, role)]


def _set_frame_byte(raw, slot, rel, value):
    frame = dict((r, bytes.fromhex(h)) for r, h in raw["slots"][slot]["frame"])
    frame[rel] = bytes([value])
    raw["slots"][slot]["frame"] = [[r, frame[r].hex()] for r in sorted(frame)]


def _each_slot(raw, layer, role, **changes):
    for s in range(len(raw["slots"])):
        _tensor(raw, s, layer, role).update(changes)


def _move_range(raw, slot, shift, grow, refit=False):
    """Move a slot's range start by `shift` and its length by `grow`, its frame kept in place
    (or, with `refit`, made again from the file for the new range: the frame a forger would
    write)."""
    s = raw["slots"][slot]
    s["offset"] += shift
    s["length"] += grow
    s["frame"] = [[rel - shift, h] for rel, h in s["frame"] if 0 <= rel - shift and rel - shift + len(h) // 2 <= s["length"]]
    if refit:
        raw.setdefault("_refit", []).append(slot)


def _refit_frames(raw, data):
    """The frames of the slots `_move_range` marked, made again from the file."""
    from types import SimpleNamespace

    from tinyswap.slotmap import frame_runs

    for slot in raw.pop("_refit", []):
        s = raw["slots"][slot]
        tensors = [SimpleNamespace(offset=t["offset"], length=t["length"]) for t in s["tensors"]]
        s["frame"] = [[rel, run.hex()] for rel, run in frame_runs(data, s["offset"], s["length"], tensors)]


def _frame_prefix_rel(raw, slot, layer, role):
    return _tensor(raw, slot, layer, role)["offset"] - 4 - raw["slots"][slot]["offset"]


@pytest.mark.parametrize("mutate,message", [
    # tensors: index, data place, shape, dtype, quantization, name
    (lambda d: _tensor(d, 0, "dw1", "D").update(tensor_index=10_000), r"slot 0 tensor dw1/D .*main subgraph has \d+ tensors"),
    (lambda d: _tensor(d, 0, "dw1", "D").update(tensor_index=_tensor(d, 0, "dw1", "U")["tensor_index"]),
     r"slot 0 tensor dw1/D .*'slot0/dw1/U'.* data"),
    (lambda d: _tensor(d, 1, "conv2", "A").update(tensor_index=_tensor(d, 0, "conv2", "A")["tensor_index"]),
     r"slot 1 tensor conv2/A \(tensor_index \d+\): tensor \d+ is already slot 0 tensor conv2/A"),
    (_swap_offsets, r"slot 0 tensor dw1/D .*model holds tensor 'slot0/dw1/D'.*data .* at bytes \[12288, 12320\); "
                    r"the slot map records \[16016, 16048\)"),
    (lambda d: _tensor(d, 1, "conv2", "B").update(offset=_tensor(d, 1, "conv2", "B")["offset"] + 4),
     r"slot 1 tensor conv2/B .*slot map records"),
    (lambda d: _each_slot(d, "dw1", "D", shape=[8, 1, 1, 4]), r"slot 0 tensor dw1/D .*shape \(8, 1, 1, 4\) in the slot map"),
    (lambda d: _each_slot(d, "dw1", "bias_D", dtype="int8", shape=[16]), r"slot 0 tensor dw1/bias_D .*dtype int8 in the slot map, int32"),
    (lambda d: _tensor(d, 0, "conv2", "B").update(scales=[1.0]), r"slot 0 tensor conv2/B .*scales \(1\.0,\) in the slot map"),
    (lambda d: _tensor(d, 1, "dw1", "U").update(zero_points=[3]), r"slot 1 tensor dw1/U .*zero points \(3,\) in the slot map, \(0,\)"),
    (lambda d: _tensor(d, 0, "dw1", "U").update(quantized_dimension=2), r"slot 0 tensor dw1/U .*quantized dimension 2"),
    (lambda d: _tensor(d, 0, "dw1", "U").update(name="head/kernel"), r"slot 0 tensor dw1/U .*names tensor \d+ 'slot0/dw1/U'"),
    # ranges: other buffers, the spacer, geometry, the header
    (lambda d: _drop(d, "dw1", "U"), r"slot 0: range \[12288, 16384\) covers bytes \[16016, 16048\) of buffer \d+ .*'slot0/dw1/U'"),
    (lambda d: d["slots"][0].update(length=d["slots"][0]["length"] + 4),
     r"slot 0: range \[12288, 16388\) covers bytes \[16384, 16388\) of buffer \d+ \(unreferenced\)"),
    (lambda d: _move_range(d, 1, -16, 16), r"slot 1 tensor dw1/D .*'slot1/dw1/D' has no constant data"),
    (lambda d: _move_range(d, 1, -16, 16, refit=True), r"slot 1: range \[20464, 24576\); its tensors need \[20480, 24576\)"),
    (lambda d: _move_range(d, 1, 0, -16), r"slot 1: range \[20480, 24560\); its tensors need \[20480, 24576\)"),
    (lambda d: _move_range(d, 0, -d["slots"][0]["offset"], d["slots"][0]["offset"], refit=True),
     r"slot 0: range \[0, 16384\) covers the flatbuffer header or tables"),
    # frames
    (lambda d: _set_frame_byte(d, 0, 100, 0x7F), r"slot 0: the frame has 0x7f at byte 12388 .*base has 0x00 there \(padding\)"),
    (lambda d: _set_frame_byte(d, 1, _frame_prefix_rel(d, 1, "dw1", "U"), 33),
     r"the model with the frames of slots \[1\] does not parse: .*'slot1/dw1/U'.* holds 33 bytes"),
    (lambda d: _set_frame_byte(d, 0, d["slots"][0]["length"] - 4, 5), r"slot 0: the spacer after the range .* is 5 bytes long"),
    # gates
    (lambda d: d["gates"][1].update(zero_point=-127), r"gate 1 \('gate_1', graph input 2\): .*zero point -127 in the slot map, .* -128 in the model"),
    (lambda d: d["gates"][0].update(scale=d["gates"][0]["scale"] * 2), r"gate 0 \('gate_0', graph input 1\): scale 0\.0078"),
    (lambda d: d["gates"][1].update(input_index=1, tensor_index=1), r"gate 1 .*graph input 1\): tensor 1 is already the input of gate 0"),
    (lambda d: d["gates"][1].update(input_index=3), r"gate 1 .*graph input 3\): the main subgraph has 3 inputs"),
    (lambda d: d["gates"][1].update(tensor_index=0), r"gate 1 .*records tensor 0, the input is tensor 2"),
])
def test_check_model_refuses_a_map_that_does_not_describe_the_file(bundle, mutate, message) -> None:
    with pytest.raises(SlotMapError, match=message):
        _checked(bundle, mutate)


def test_check_model_rechecks_a_map_built_in_code(bundle) -> None:
    """A `SlotMap` made without `from_json` is checked as strictly: slot order, layouts, overlap,
    gates (input 0 is the image, not an int8 [batch, 1] gate)."""
    from dataclasses import replace

    smap = SlotMap.from_json(bundle.smap)
    s0, s1 = smap.slots
    cases = [
        (replace(smap, slots=(s0, replace(s1, tensors=s1.tensors[::-1]))), "slot 1 lists layers/roles"),
        (replace(smap, slots=(s0, replace(s1, slot=0))), r"slots are numbered \[0, 0\]"),
        (replace(smap, slots=(s0, replace(s1, offset=s0.offset))), "ranges of slots 0 and 1 overlap"),
        (replace(smap, gates=(replace(smap.gates[0], input_index=0, tensor_index=-1), smap.gates[1])),
         r"gate 0 .*graph input 0\): tensor 0 \('image'\) has shape \(1, 16, 16, 1\)"),
    ]
    for tampered, message in cases:
        tampered = replace(tampered, base_digest=tampered.digest_of(bundle.data))  # only the structure differs
        with pytest.raises(SlotMapError, match=message):
            tampered.check_model(bundle.data)


@pytest.mark.parametrize("name,changes", [("mlp", {}), ("cnn", {}), ("cnn", {"alignment": 16}),
                                          ("mlp", {"headroom": True})])
def test_genuine_bundles_pass_and_damaged_ranges_do_not_stop_the_check(name, changes) -> None:
    """Every genuine bundle passes; a range an interrupted write left damaged (erased flash,
    adapter bytes) still passes (boot rewrites it from the verified frame), a tampered frame
    does not."""
    b = example_bundle(name, **changes)
    smap = SlotMap.from_json(b.smap)
    smap.check_model(b.data)
    image = bytearray(b.data)
    s = smap.slots[-1]
    image[s.offset : s.offset + s.length] = b"\xff" * s.length  # an erased sector
    for t in smap.slots[0].tensors:
        image[t.offset : t.offset + t.length] = bytes([0x5A]) * t.length
    assert smap.damaged_frames(image) == [s.slot]
    smap.check_model(image)
    with pytest.raises(SlotMapError, match=rf"slots? \[?{s.slot}\b"):
        _checked(b, lambda d: _set_frame_byte(d, s.slot, s.length - 1, 1), recompute=False)
