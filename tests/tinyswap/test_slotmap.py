"""The runtime's slot map reader: validation against the model, and fuzzing."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from tinyswap.slotmap import SlotMap, SlotMapError

from tests.adapter_cases import example_bundle
from tests.conftest import FULL


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


JUNK = [None, -1, 0, 2**40, "x", [], {}, 1.5, True, [1, "a"], {"k": None}]


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


def test_fuzzed_slot_maps_are_read_or_refused_with_slotmaperror(bundle) -> None:
    rng = np.random.default_rng(0)
    paths = list(_paths(bundle.smap))
    cases = 5_000 if FULL else 500
    refused = 0
    for _ in range(cases):
        raw = copy.deepcopy(bundle.smap)
        for _ in range(int(rng.integers(1, 4))):
            path = paths[int(rng.integers(0, len(paths)))]
            node = raw
            try:
                for key in path[:-1]:
                    node = node[key]
                node[path[-1]] = JUNK[int(rng.integers(0, len(JUNK)))]
            except (KeyError, IndexError, TypeError):
                continue
        try:
            smap = SlotMap.from_json(raw)
            smap.check_model(bundle.data)
        except SlotMapError:
            refused += 1
    print(f"{cases} fuzzed slot maps: {refused} refused with SlotMapError, {cases - refused} accepted")
    assert refused > cases // 2
