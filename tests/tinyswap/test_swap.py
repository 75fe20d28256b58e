"""SwapManager: every swap's effect equals TFLite Micro on the patched model bytes.

Oracle comparisons use gates built here from `slotmap.json` (not by the manager) and find the
slot an adapter lives in by comparing the image's bytes with the package file's payload.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyswap.package import (
    Keyring,
    MissingSlotTensorsError,
    PackageDigestError,
    PackageFormatError,
    RollbackError,
    SlotShapeError,
    UnknownKeyError,
    UnknownLayerError,
    WrongBaseModelError,
    build_package,
    parse_package,
)
from tinyswap.swap import (
    AdapterError,
    AdapterExistsError,
    GateWeightError,
    SlotBusyError,
    StalePlanError,
    SwapManager,
    UnknownAdapterError,
)

from tests.adapter_cases import KEY, example_bundle, gates_for_rows, package, slot_holding, tflm_rows


@pytest.fixture(scope="module")
def bundle():
    return example_bundle("mlp")


@pytest.fixture(scope="module")
def packages(bundle):
    smap = bundle.smap
    return {name: package(smap, seed, name) for seed, name in enumerate(["A", "B", "C"], start=1)}


def manager(bundle, **kw) -> SwapManager:
    return SwapManager(bytearray(bundle.data), bundle.smap, Keyring([KEY.public_key()]), **kw)


def inputs(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, (n, 64), dtype=np.int8)


def golden(m: SwapManager, bundle, x: np.ndarray, rows: list[dict[str, float]], packages: dict) -> np.ndarray:
    """TFLM on the manager's image as it is now, with gates derived from where the bytes are."""
    image = m.image.buffer
    slot_rows = []
    for row in rows:
        slots = {}
        for name, weight in row.items():
            s = slot_holding(bundle.smap, image, packages[name])
            assert s is not None, f"{name} is not in any slot"
            slots[s] = weight
        slot_rows.append(slots)
    return tflm_rows(image, x, gates_for_rows(bundle.smap, slot_rows))


def test_a_b_a_outputs_differ_then_return_bit_identical_and_match_tflm(bundle, packages) -> None:
    m = manager(bundle)
    m.load_adapter(packages["A"])
    m.load_adapter(packages["B"])
    x = inputs()
    base = m.infer(x)[0]
    m.set_adapter("A")
    ya = m.infer(x)[0]
    np.testing.assert_array_equal(ya, golden(m, bundle, x, [{"A": 1.0}] * len(x), packages))
    m.set_adapter("B")
    yb = m.infer(x)[0]
    np.testing.assert_array_equal(yb, golden(m, bundle, x, [{"B": 1.0}] * len(x), packages))
    m.set_adapter("A")
    ya2 = m.infer(x)[0]
    assert np.mean(ya != yb) > 0.3 and np.mean(ya != base) > 0.3  # the adapters have an effect
    np.testing.assert_array_equal(ya, ya2)
    np.testing.assert_array_equal(base, tflm_rows(m.image.buffer, x, gates_for_rows(bundle.smap, [{}] * len(x))))


def test_more_adapters_than_slots_lru_eviction_matches_tflm(bundle, packages) -> None:
    m = manager(bundle)
    for name in "ABC":
        m.load_adapter(packages[name])
    assert sorted(v for v in m.resident().values()) == ["A@1.1", "B@1.1"]  # C waits, cached
    x = inputs(3)
    m.infer(x, adapters="A")  # A used more recently than B
    yc = m.infer(x, adapters="C")[0]  # evicts the least recently used: B
    assert sorted(m.resident().values()) == ["A@1.1", "C@1.1"]
    np.testing.assert_array_equal(yc, golden(m, bundle, x, [{"C": 1.0}] * 3, packages))
    assert m.stats["evictions"] == 1


def test_priority_eviction_keeps_the_important_adapter(bundle, packages) -> None:
    m = manager(bundle, eviction="priority")
    m.load_adapter(packages["A"], priority=10.0)
    m.load_adapter(packages["B"], priority=1.0)
    m.load_adapter(packages["C"], priority=5.0)
    x = inputs(2)
    m.infer(x, adapters="B")  # B is the most recently used, but the least important
    m.infer(x, adapters="C")
    assert sorted(m.resident().values()) == ["A@1.1", "C@1.1"]


def test_an_adapter_in_use_by_an_in_flight_request_is_never_evicted(bundle, packages) -> None:
    m = manager(bundle, wait_seconds=0.2)
    for name in "ABC":
        m.load_adapter(packages[name])
    with m.pinned("A"), m.pinned("B"):
        before = bytes(m.image.buffer)
        with pytest.raises(SlotBusyError):
            m.infer(inputs(1), adapters="C")
        assert bytes(m.image.buffer) == before
    with m.pinned("A"):
        m.infer(inputs(1), adapters="C")  # B's slot is taken, A's never
        assert sorted(m.resident().values()) == ["A@1.1", "C@1.1"]


def test_mixed_batch_and_weighted_composition_match_tflm(bundle, packages) -> None:
    m = manager(bundle)
    m.load_adapter(packages["A"])
    m.load_adapter(packages["B"])
    rows = ["A", "__base__", {"A": 0.5, "B": 0.5}, "B", ["A", "B"], {"B": 0.25}, {"A": 1.0, "B": 0.0}]
    x = inputs(len(rows), seed=3)
    ours = m.infer(x, adapter_names=rows)[0]
    expected_rows = [{"A": 1.0}, {}, {"A": 0.5, "B": 0.5}, {"B": 1.0}, {"A": 1.0, "B": 1.0}, {"B": 0.25}, {"A": 1.0}]
    np.testing.assert_array_equal(ours, golden(m, bundle, x, expected_rows, packages))
    # Each row equals the same row run alone: a mixed batch is not adapter-by-adapter serving.
    for r, spec in enumerate(rows):
        np.testing.assert_array_equal(ours[r], m.infer(x[r : r + 1], adapter_names=[spec])[0][0])


def test_hotswap_in_place_then_rollback_is_a_gate_flip(bundle) -> None:
    smap = bundle.smap
    v1, v2 = package(smap, 10, "kws", 1), package(smap, 11, "kws", 2)
    m = manager(bundle)
    m.load_adapter(v1)
    m.set_adapter("kws")
    x = inputs(4)
    y1 = m.infer(x)[0]
    m.hotswap_adapter("kws", v2)
    y2 = m.infer(x)[0]
    assert np.mean(y1 != y2) > 0.3
    np.testing.assert_array_equal(y2, golden(m, bundle, x, [{"kws": 1.0}] * 4, {"kws": v2}))
    assert m.active_adapters == ["kws"] and m.adapter_info("kws").version == "1.2"
    writes = m.stats["swaps"]
    m.rollback("kws")
    np.testing.assert_array_equal(m.infer(x)[0], y1)
    assert m.stats["swaps"] == writes  # v1 was still resident: no byte written
    with pytest.raises(RollbackError):  # the old package cannot be installed again (anti-rollback)
        m.hotswap_adapter("kws", v1)
    assert [e.version for e in m.registry.history("kws")] == ["1.1", "1.2"]


def test_rollback_rewrites_an_evicted_version_from_the_cache(bundle, packages) -> None:
    smap = bundle.smap
    m = manager(bundle)
    m.load_adapter(package(smap, 10, "kws", 1))
    x = inputs(2)
    y1 = m.infer(x, adapters="kws")[0]
    m.hotswap_adapter("kws", package(smap, 11, "kws", 2))
    m.load_adapter(packages["A"])
    m.infer(x, adapters="A")  # A takes the slot that held kws v1
    m.rollback("kws")
    np.testing.assert_array_equal(m.infer(x, adapters="kws")[0], y1)


def test_delete_adapter_clears_its_slot_with_zeros(bundle, packages) -> None:
    m = manager(bundle)
    m.load_adapter(packages["A"])
    m.set_adapter("A")
    slot = slot_holding(bundle.smap, m.image.buffer, packages["A"])
    m.delete_adapter("A")
    for t in bundle.smap["slots"][slot]["tensors"]:
        assert not any(m.image.buffer[t["offset"] : t["offset"] + t["length"]])
    assert m.active_adapters == []
    with pytest.raises(UnknownAdapterError):
        m.infer(inputs(1), adapters="A")
    # The image is the freshly compiled model again.
    assert bytes(m.image.buffer) == bundle.data


def test_enable_disable_and_the_per_thread_context_manager(bundle, packages) -> None:
    m = manager(bundle)
    m.load_adapter(packages["A"])
    m.set_adapter("A")
    x = inputs(2)
    ya, base = m.infer(x)[0], m.infer(x, adapters="__base__")[0]
    m.disable_adapters()
    np.testing.assert_array_equal(m.infer(x)[0], base)
    m.enable_adapters()
    np.testing.assert_array_equal(m.infer(x)[0], ya)
    # peft #176: disabling in one thread must not change what another thread computes.
    inside, barrier, seen = threading.Event(), threading.Barrier(2), {}

    def other() -> None:
        barrier.wait()
        inside.wait()
        seen["other"] = m.infer(x)[0]

    t = threading.Thread(target=other)
    t.start()
    with m.disable_adapter():
        barrier.wait()
        inside.set()
        t.join()
        seen["this"] = m.infer(x)[0]
    np.testing.assert_array_equal(seen["other"], ya)
    np.testing.assert_array_equal(seen["this"], base)
    np.testing.assert_array_equal(m.infer(x)[0], ya)


def test_requests_that_cannot_be_served_are_refused_by_type(bundle, packages) -> None:
    m = manager(bundle)
    for name in "ABC":
        m.load_adapter(packages[name])
    x = inputs(3)
    with pytest.raises(GateWeightError):
        m.infer(x, adapters={"A": -0.5})
    with pytest.raises(GateWeightError):
        m.infer(x, adapters={"A": 1.5})  # gate_max is 1.0
    with pytest.raises(UnknownAdapterError):
        m.set_adapter("nope")
    with pytest.raises(SlotBusyError, match="3 adapters"):
        m.infer(x, adapter_names=["A", "B", "C"])  # two slots
    with pytest.raises(AdapterExistsError):
        m.load_adapter(packages["A"])


def test_plan_changes_nothing_and_a_stale_plan_is_refused(bundle, packages) -> None:
    m = manager(bundle)
    before = bytes(m.image.buffer)
    plan = m.plan_load(packages["A"])
    assert plan.slot is not None and bytes(m.image.buffer) == before and m.adapters == []
    m.load_adapter(packages["B"])
    with pytest.raises(StalePlanError):
        m.apply(plan)
    m.apply(m.plan_load(packages["A"]))
    assert sorted(m.adapters) == ["A", "B"]


def _crafted(bundle, tensors, **meta) -> bytes:
    metadata = {"name": "evil", "version": "9", "sequence": 9, "kind": "lora", "tags": {},
                "base_digest": bundle.smap["base_digest"], **meta}
    return build_package(metadata, tensors, KEY)


def test_every_bad_package_gets_its_own_error_and_changes_nothing(bundle, packages) -> None:
    smap = bundle.smap
    layout = [(t["layer"], t["role"], np.zeros(t["shape"], t["dtype"])) for t in smap["slots"][0]["tensors"]]
    over_rank = [(l, r, np.zeros((a.shape[0] * 2, *a.shape[1:]) if r == "A" else a.shape, a.dtype)) for l, r, a in layout]
    subset = [x for x in layout if x[0] != "fc3"]
    unknown = layout + [("fc9", "A", np.zeros((4, 4), np.int8))]
    good = packages["A"]
    corrupt = bytearray(good)
    corrupt[len(good) // 2] ^= 0x40
    cases = {
        SlotShapeError: _crafted(bundle, over_rank),
        MissingSlotTensorsError: _crafted(bundle, subset),
        UnknownLayerError: _crafted(bundle, unknown),
        WrongBaseModelError: _crafted(bundle, layout, base_digest="ab" * 32),
        UnknownKeyError: build_package({"name": "x", "version": "1", "sequence": 1, "kind": "lora", "tags": {},
                                        "base_digest": smap["base_digest"]}, layout, Ed25519PrivateKey.generate()),
        RollbackError: package(smap, 5, "A", sequence=1),  # A@1 is already accepted below
        PackageFormatError: good[:-7],
        PackageDigestError: bytes(corrupt),
    }
    m = manager(bundle)
    m.load_adapter(good)
    m.load_adapter(packages["B"])
    m.set_adapter({"A": 1.0})
    image, table, active = bytes(m.image.buffer), m.slot_table(), m.active_weights
    history = [e.digest for e in m.registry.history("A")]
    for error, data in cases.items():
        with pytest.raises(error):
            m.hotswap_adapter("A", data)
        with pytest.raises(error):
            m.load_adapter(data, "other")
        assert bytes(m.image.buffer) == image, error.__name__
        assert m.slot_table() == table and m.active_weights == active
        assert [e.digest for e in m.registry.history("A")] == history and sorted(m.adapters) == ["A", "B"]


def test_a_subset_adapter_is_zero_filled_and_inert_where_it_does_not_target(bundle) -> None:
    smap = bundle.smap
    m = manager(bundle)
    data = package(smap, 3, "only-fc2", layers=["fc2"])
    m.load_adapter(data)
    pkg = parse_package(data)
    assert all(not any(pkg.tensor_bytes(t)) for t in pkg.tensors if t.layer != "fc2")
    x = inputs(3)
    np.testing.assert_array_equal(m.infer(x, adapters="only-fc2")[0],
                                  golden(m, bundle, x, [{"only-fc2": 1.0}] * 3, {"only-fc2": data}))


def test_a_bottleneck_bundle_swaps_and_matches_tflm() -> None:
    cnn = example_bundle("cnn")
    smap = cnn.smap
    a = package(smap, 1, "bn", kind="bottleneck")
    lora = package(smap, 2, "lo", kind="lora")
    m = SwapManager(bytearray(cnn.data), smap, Keyring([KEY.public_key()]))
    m.load_adapter(a)
    m.load_adapter(lora)
    shape = cnn.compiled.spec.input_shape
    x = np.random.default_rng(0).integers(-128, 128, (3, *shape[1:]), dtype=np.int8)
    base = m.infer(x)[0]
    for rows in (["bn"] * 3, ["lo", "bn", "__base__"], [{"bn": 1.0, "lo": 1.0}] * 3):
        ours = m.infer(x, adapter_names=rows)[0]
        want = [{} if r == "__base__" else ({r: 1.0} if isinstance(r, str) else r) for r in rows]
        slot_rows = [{slot_holding(smap, m.image.buffer, {"bn": a, "lo": lora}[n]): w for n, w in row.items()}
                     for row in want]
        np.testing.assert_array_equal(ours, tflm_rows(m.image.buffer, x, gates_for_rows(smap, slot_rows)))
    assert np.mean(m.infer(x, adapters="bn")[0] != base) > 0.1


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
