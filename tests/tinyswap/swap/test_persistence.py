"""The committed state: export and restore, the commit hook (one transaction for every change),
damaged frames, retired slots and pruned versions."""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap.package import parse_package
from tinyswap.swap import AdapterError, SlotBusyError, UnknownAdapterError

from tests.adapter_cases import package, slot_holding
from tests.tinyswap.swap.swap_cases import inputs, manager


def test_state_round_trip_restores_without_writing_and_refuses_tampered_slots(bundle, packages) -> None:
    smap = bundle.smap
    committed: list[dict] = []
    m = manager(bundle, on_commit=committed.append)
    m.load_adapter(packages["A"])
    m.load_adapter(packages["B"])
    v2 = package(smap, 21, "A", sequence=2)
    m.hotswap_adapter("A", v2)
    x = inputs(3)
    ya, yb = m.infer(x, adapters="A")[0], m.infer(x, adapters="B")[0]
    state = m.export_state()
    assert committed[-1] == state  # every commit was handed to the hook, the last is the state
    store = {parse_package(p).content_digest: p for p in [packages["A"], packages["B"], v2]}
    image = bytearray(m.image.buffer)
    fresh = manager(bundle)
    fresh.image.buffer[:] = image
    report = fresh.restore_state(state, store)
    assert report == {"disabled_slots": [], "missing": [], "dropped": []}
    assert fresh.image.writes == 0 and fresh.slot_table() == m.slot_table()
    np.testing.assert_array_equal(fresh.infer(x, adapters="A")[0], ya)
    np.testing.assert_array_equal(fresh.infer(x, adapters="B")[0], yb)
    assert fresh.last_sequence("A") == 2
    # One flipped byte in B's slot: that slot is never enabled; B is written again on use.
    slot_b = slot_holding(smap, image, packages["B"])
    t = smap["slots"][slot_b]["tensors"][0]
    image[t["offset"]] ^= 0x01
    tampered = manager(bundle)
    tampered.image.buffer[:] = image
    report = tampered.restore_state(state, store)
    assert report["disabled_slots"] == [slot_b]
    assert tampered.resident()[slot_b] is None
    np.testing.assert_array_equal(tampered.infer(x, adapters="B")[0], yb)
    # A package missing from the store: the adapter is dropped, the others stay.
    partial = manager(bundle)
    partial.image.buffer[:] = bytes(m.image.buffer)
    report = partial.restore_state(state, {d: p for d, p in store.items() if p is not packages["B"]})
    assert report["dropped"] == ["B"] and partial.adapters == ["A"]


def test_a_failing_commit_hook_commits_nothing(bundle, packages) -> None:
    def refuse(state: dict) -> None:
        raise OSError("metadata write failed")

    m = manager(bundle, on_commit=refuse)
    with pytest.raises(OSError):
        m.load_adapter(packages["A"])
    assert m.adapters == [] and all(v is None for v in m.resident().values())
    with pytest.raises(UnknownAdapterError):
        m.infer(inputs(1), adapters="A")


def test_a_damaged_slot_frame_is_reported_and_repaired_from_the_slot_map(bundle, packages) -> None:
    """An interrupted write can erase the flatbuffer length prefixes inside a slot range; the
    base digest does not cover them (slot ranges are zeroed), the slot map's frame does."""
    smap = bundle.smap
    m = manager(bundle)
    m.load_adapter(packages["A"])
    state = m.export_state()
    slot = slot_holding(smap, m.image.buffer, packages["A"])
    info = smap["slots"][slot]
    second = info["tensors"][1]
    image = bytearray(m.image.buffer)
    image[second["offset"] - 4 : second["offset"]] = b"\xff\xff\xff\xff"  # its length prefix, erased
    fresh = manager(bundle)
    fresh.image.buffer[:] = image
    from tinyswap.slotmap import SlotMap

    assert SlotMap.from_json(smap).damaged_frames(image) == [slot]
    report = fresh.restore_state(state, {parse_package(packages["A"]).content_digest: packages["A"]})
    assert report["disabled_slots"] == [slot]
    fresh.clear_slot(slot)
    assert SlotMap.from_json(smap).damaged_frames(fresh.image.buffer) == []
    x = inputs(2)
    np.testing.assert_array_equal(fresh.infer(x, adapters="A")[0], m.infer(x, adapters="A")[0])
    assert slot_holding(smap, fresh.image.buffer, packages["A"]) is not None


def test_a_retired_slot_is_never_written_and_versions_can_be_pruned(bundle, packages) -> None:
    smap = bundle.smap
    m = manager(bundle)
    m.load_adapter(packages["A"])
    slot_a = slot_holding(smap, m.image.buffer, packages["A"])
    m.retire_slot(slot_a)  # e.g. its flash sector is worn out: it keeps serving A
    assert m.export_state()["retired"] == [slot_a]
    x = inputs(2)
    ya = m.infer(x, adapters="A")[0]
    m.load_adapter(packages["B"])
    m.load_adapter(packages["C"])
    for name in "BCBC":  # B and C share the one writable slot; A's slot is never chosen
        m.infer(x, adapters=name)
        assert slot_holding(smap, m.image.buffer, packages["A"]) == slot_a
    np.testing.assert_array_equal(m.infer(x, adapters="A")[0], ya)
    with pytest.raises(SlotBusyError, match="retired"):
        m.clear_slot(slot_a)
    b2 = package(smap, 30, "B", sequence=2)
    m.set_adapter("B")
    with pytest.raises(SlotBusyError, match="retired"):  # B's new version has nowhere to go but over B
        m.hotswap_adapter("B", b2)
    m = manager(bundle)
    m.load_adapter(packages["B"])
    versions = [package(smap, 30 + v, "B", sequence=v) for v in range(2, 6)]
    for v in versions:
        m.hotswap_adapter("B", v)
    dropped = m.prune_versions("B", keep=2)
    assert len(dropped) == 3 and len(m.export_state()["adapters"]["B"]["versions"]) == 2
    assert [e.sequence for e in m.registry.history("B")] == [4, 5]
    m.rollback("B")  # to sequence 4, still kept
    with pytest.raises(AdapterError, match="no earlier version"):
        m.rollback("B")



def test_every_change_goes_through_one_commit_and_the_hook_sees_the_state_it_makes_live(bundle, packages) -> None:
    smap = bundle.smap
    committed: list[dict] = []
    m = manager(bundle, on_commit=committed.append)

    def step(action, expected_commits: int = 1) -> None:
        before = len(committed)
        action()
        assert len(committed) - before == expected_commits, action
        assert committed[-1] == m.export_state()

    step(lambda: m.load_adapter(packages["A"]))
    step(lambda: m.hotswap_adapter("A", package(smap, 50, "A", sequence=2)))
    step(lambda: m.hotswap_adapter("A", package(smap, 51, "A", sequence=3)))
    step(lambda: m.rollback("A"))
    step(lambda: m.prune_versions("A", keep=1))
    step(lambda: m.load_adapter(packages["B"]), 1)  # written over a stale version
    step(lambda: m.retire_slot(0))
    slots_of_a = sum(1 for v in m.resident().values() if v is not None and v.startswith("A@"))
    step(lambda: m.delete_adapter("A"), 1 + slots_of_a)  # the delete, then each cleared slot
    free = next(s for s, v in m.resident().items() if v is None and s not in m.export_state()["retired"])
    step(lambda: m.clear_slot(free))
    # The versions the state records are the registry's history (one version history).
    state = m.export_state()
    assert state["adapters"]["B"]["versions"] == list(m.registry.versions("B"))
    assert state["last_sequence"] == dict(m.registry.sequences()) == {"A": 3, "B": 1}  # deletion keeps counters


def test_a_refused_commit_changes_nothing_for_rollback_and_delete(bundle, packages) -> None:
    smap = bundle.smap
    refuse = {"on": False}

    def hook(state: dict) -> None:
        if refuse["on"]:
            raise OSError("metadata write failed")

    m = manager(bundle, on_commit=hook)
    m.load_adapter(package(smap, 60, "kws", 1))
    m.hotswap_adapter("kws", package(smap, 61, "kws", 2))
    m.load_adapter(packages["B"])
    before = m.export_state()
    refuse["on"] = True
    with pytest.raises(OSError):
        m.rollback("kws")
    with pytest.raises(OSError):
        m.delete_adapter("B")
    with pytest.raises(OSError):
        m.prune_versions("kws", keep=1)
    after = m.export_state()
    assert {k: after[k] for k in ("adapters", "last_sequence", "retired")} == \
        {k: before[k] for k in ("adapters", "last_sequence", "retired")}
    # A slot written for the refused rollback stays disabled (it holds nothing usable).
    assert all(a["digest"] in (b["digest"], None) for a, b in zip(after["slots"], before["slots"]))
    assert m.adapter_info("kws").version == "1.2"
    assert [e.sequence for e in m.registry.history("kws")] == [1, 2] and sorted(m.adapters) == ["B", "kws"]


def test_malformed_states_are_refused_by_type(bundle, packages) -> None:
    from tinyswap.swap.persistence import parse_state

    m = manager(bundle)
    m.load_adapter(packages["A"])
    state = m.export_state()
    with pytest.raises(AdapterError, match="fresh manager"):
        m.restore_state(state, {})
    fresh = manager(bundle)
    for broken, message in [
        ({k: v for k, v in state.items() if k != "adapters"}, "malformed manager state"),
        ({**state, "last_sequence": {"A": "x"}}, "malformed manager state"),
        ({**state, "slots": state["slots"][:1]}, "lists 1 slots"),
        ({**state, "adapters": {"A": {"versions": []}}}, "malformed state of adapter 'A'"),
        ({**state, "adapters": {"A": 5}}, "malformed state of adapter 'A'"),
    ]:
        with pytest.raises(AdapterError, match=message):
            fresh.restore_state(broken, {})
        assert fresh.adapters == [] and fresh.image.writes == 0
    saved = parse_state({**state, "retired": [1, 7, True, "x"]}, 2)
    assert saved.retired == (1,) and saved.adapters[0].name == "A" and saved.slot_digests[1] is None
