"""Sweep: slot maps tampered in a structured way are refused by `SlotMap.check_model` with a
`SlotMapError`, never accepted, whether the base digest is the genuine one or was made again for
the tampered ranges (and, for tampers that leave the frames alone, with the frames made again
from the file too: the map a forger would write). 100 cases in CI, 2,000 in the full run, over
the mlp (LoRA) and cnn (LoRA and bottleneck, 4096-byte alignment) bundles.

The tampers: a gate's zero point or scale; two tensor offsets swapped; a tensor's or a range's
offset shifted; a range grown or shrunk into its neighbour; a frame byte changed or added; a
tensor entry pointed at another tensor's index; two gates on one graph input.
"""

from __future__ import annotations

import copy
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from tinyswap.reader import read_model
from tinyswap.slotmap import SlotMap, SlotMapError, base_digest, frame_runs

from tests.adapter_cases import example_bundle
from tests.conftest import FULL

CASES = 2_000 if FULL else 100


@pytest.fixture(scope="module")
def bundles():
    out = []
    for name in ("mlp", "cnn"):
        b = example_bundle(name)
        SlotMap.from_json(b.smap).check_model(b.data)  # the genuine map passes
        out.append((name, b.data, b.smap, len(read_model(b.data).main.tensors)))
    return out


def _tensor(raw, rng):
    slot = raw["slots"][int(rng.integers(len(raw["slots"])))]
    return slot, slot["tensors"][int(rng.integers(len(slot["tensors"])))]


def _gate_zero_point(raw, rng, n_tensors):
    g = raw["gates"][int(rng.integers(len(raw["gates"])))]
    g["zero_point"] = int(rng.choice([v for v in range(-128, 128) if v != g["zero_point"]]))


def _gate_scale(raw, rng, n_tensors):
    g = raw["gates"][int(rng.integers(len(raw["gates"])))]
    g["scale"] *= float(rng.choice([0.5, 2.0, 1 + 1e-6, 1 - 1e-9, 255.0, 1 / 255]))


def _swap_offsets(raw, rng, n_tensors):
    slot = raw["slots"][int(rng.integers(len(raw["slots"])))]
    i, j = rng.choice(len(slot["tensors"]), 2, replace=False)
    a, b = slot["tensors"][int(i)], slot["tensors"][int(j)]
    a["offset"], b["offset"] = b["offset"], a["offset"]


def _shift(rng, alignment):
    return int(rng.choice([-1, 1])) * int(rng.choice([1, 2, 4, 8, 16, alignment, int(rng.integers(1, 64))]))


def _shift_offset(raw, rng, n_tensors):
    slot, t = _tensor(raw, rng)
    target = t if rng.random() < 0.7 else slot
    target["offset"] = max(0, target["offset"] + _shift(rng, raw["alignment"]))


def _grow_length(raw, rng, n_tensors):
    slot = raw["slots"][int(rng.integers(len(raw["slots"])))]
    step = abs(_shift(rng, raw["alignment"]))
    slot["length"] = max(1, slot["length"] + (step if rng.random() < 0.8 else -step))


def _frame_byte(raw, rng, n_tensors):
    slot = raw["slots"][int(rng.integers(len(raw["slots"])))]
    frame = {rel: bytearray.fromhex(h) for rel, h in slot["frame"]}
    if frame and rng.random() < 0.6:  # change a byte the base has there
        rel = sorted(frame)[int(rng.integers(len(frame)))]
        k = int(rng.integers(len(frame[rel])))
        frame[rel][k] ^= int(rng.integers(1, 256))
        if not frame[rel][k]:
            frame[rel][k] = 0xFF
    else:  # a non-zero byte where the base has padding
        busy = {r + k for r, h in frame.items() for k in range(len(h))}
        busy |= {t["offset"] - slot["offset"] + k for t in slot["tensors"] for k in range(t["length"])}
        free = [r for r in range(slot["length"]) if r not in busy]
        frame[int(rng.choice(free))] = bytearray([int(rng.integers(1, 256))])
    slot["frame"] = [[rel, bytes(frame[rel]).hex()] for rel in sorted(frame) if any(frame[rel])]


def _point_tensor(raw, rng, n_tensors):
    _, t = _tensor(raw, rng)
    t["tensor_index"] = int(rng.choice([i for i in range(n_tensors) if i != t["tensor_index"]]))


def _duplicate_gate(raw, rng, n_tensors):
    i, j = rng.choice(len(raw["gates"]), 2, replace=False)
    a, b = raw["gates"][int(i)], raw["gates"][int(j)]
    b["input_index"], b["tensor_index"] = a["input_index"], a["tensor_index"]


TAMPERS = [_gate_zero_point, _gate_scale, _swap_offsets, _shift_offset, _grow_length, _frame_byte, _point_tensor,
           _duplicate_gate]


def _recompute_digest(raw, data):
    raw["base_digest"] = base_digest(data, [(s["offset"], s["length"]) for s in raw["slots"]])


def _refit_frames(raw, data):
    for s in raw["slots"]:
        tensors = [SimpleNamespace(offset=t["offset"], length=t["length"]) for t in s["tensors"]]
        inside = s["offset"] + s["length"] <= len(data)  # else `from_json` refuses the range
        if inside and all(s["offset"] <= t.offset and t.offset + t.length <= s["offset"] + s["length"] for t in tensors):
            s["frame"] = [[rel, run.hex()] for rel, run in frame_runs(data, s["offset"], s["length"], tensors)]


def _refusal(raw, data) -> str:
    with pytest.raises(SlotMapError) as info:
        SlotMap.from_json(raw).check_model(data)
    return str(info.value)


def test_tampered_slot_maps_are_refused_with_or_without_a_recomputed_digest(bundles) -> None:
    rng = np.random.default_rng(20240601)
    by_check: Counter[str] = Counter()
    variants = 0
    for case in range(CASES):
        name, data, genuine, n_tensors = bundles[case % len(bundles)]
        tamper = TAMPERS[(case // len(bundles)) % len(TAMPERS)]
        raw = copy.deepcopy(genuine)
        tamper(raw, rng, n_tensors)
        assert raw != genuine, (name, tamper.__name__)
        forged = [copy.deepcopy(raw)]  # the genuine digest kept
        recomputed = copy.deepcopy(raw)
        _recompute_digest(recomputed, data)
        forged.append(recomputed)
        if tamper is not _frame_byte:  # frames made again from the file as well
            refit = copy.deepcopy(raw)
            _refit_frames(refit, data)
            _recompute_digest(refit, data)
            forged.append(refit)
        for k, variant in enumerate(forged):
            message = _refusal(variant, data)
            variants += 1
            if k:  # with the digest made again, the checks against the file refuse it
                assert "digest" not in message, (name, tamper.__name__, message)
            by_check[f"{tamper.__name__}: {message.split(':')[0] if 'digest' not in message else 'digest'}"[:60]] += 1
    print(f"{CASES} tampered slot maps, {variants} variants, all refused with SlotMapError")
    for key, count in sorted(by_check.items()):
        print(f"  {count:5d}  {key}")
