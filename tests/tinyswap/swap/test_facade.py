"""SwapManager, the facade: every swap's effect equals TFLite Micro on the patched model bytes.

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
    PlanAction,
    SlotBusyError,
    StalePlanError,
    SwapManager,
    UnknownAdapterError,
)

from tinyswap.cache import CacheError, PackageCache

from tests.adapter_cases import KEY, example_bundle, gates_for_rows, package, slot_holding, tflm_rows
from tests.tinyswap.swap.swap_cases import golden, inputs, manager


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
    # Disabling in one thread must not change what another thread computes (a shared switch would).
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


def _package_bytes_held(root: object, skip: tuple[object, ...]) -> int:
    """Bytes of distinct package files (b"TSAP" ...) reachable from `root`'s containers, not
    counting what is reachable only through `skip` (the budgeted cache). Package bytes may be
    held as the file itself or through views into it."""
    import gc
    import types

    seen: set[int] = {id(s) for s in skip}
    found: dict[int, int] = {}
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, memoryview):
            obj = obj.obj
        if isinstance(obj, (bytes, bytearray)):
            if bytes(obj[:4]) == b"TSAP":
                found[id(obj)] = len(obj)
            continue
        if isinstance(obj, (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                            str, int, float)):
            continue  # code and scalars hold no package bytes of this manager
        stack.extend(gc.get_referents(obj))
    return sum(found.values())


def test_package_bytes_live_only_in_the_budgeted_cache_and_delete_prunes_metadata(bundle) -> None:
    """The RAM budget of `PackageCache` is the manager's whole budget for package bytes: its
    metadata and per-package records keep no package file; deleting an adapter forgets it."""
    from tinyswap.cache import PackageCache

    smap = bundle.smap
    pkgs = {f"p{i}": package(smap, 40 + i, f"p{i}") for i in range(5)}
    size = max(len(p) for p in pkgs.values())
    cache = PackageCache(2 * size)
    m = manager(bundle, cache=cache, fetch=lambda digest: store[digest])
    store = {parse_package(p).content_digest: p for p in pkgs.values()}
    for name, data in pkgs.items():
        m.load_adapter(data)
        m.infer(inputs(1), adapters=name)  # written into a slot, evicting another
    assert cache.used <= cache.budget
    held = _package_bytes_held(m, skip=(cache,))
    assert held == 0, f"the manager holds {held} package bytes outside its {cache.budget}-byte cache"
    assert 0 < _package_bytes_held(m, skip=()) <= cache.budget  # the walk does find the cached ones
    # What is known about a package without its bytes: enough for labels and hot swaps.
    assert m.adapter_info("p0").kind == "lora" and m.resident()  # labels from metadata
    x = inputs(2)
    y0 = m.infer(x, adapters="p0")[0]  # p0 was evicted from the cache: fetched and verified again
    np.testing.assert_array_equal(y0, golden(m, bundle, x, [{"p0": 1.0}] * 2, pkgs))
    # Deleting an adapter removes its metadata everywhere the manager keeps any.
    digest = parse_package(pkgs["p1"]).content_digest
    m.delete_adapter("p1")
    assert digest not in m.registry and digest not in cache
    assert digest not in m._bytes.known()
    assert "p1" not in m.registry.names() and "p1" not in m.export_state()["adapters"]
    assert _package_bytes_held(m, skip=(cache,)) == 0


def test_plans_and_events_name_their_action_by_enum(bundle, packages) -> None:
    smap = bundle.smap
    events: list[tuple[str, dict]] = []
    m = manager(bundle, on_event=lambda kind, details: events.append((kind, details)))
    with pytest.raises(AdapterError, match="eviction is 'fifo'"):
        manager(bundle, eviction="fifo")
    plan = m.plan_load(packages["A"])
    assert plan.action is PlanAction.load and plan.action == "load"  # an enum that reads as before
    m.apply(plan)
    m.hotswap_adapter("A", package(smap, 70, "A", sequence=2))
    m.load_adapter(packages["B"])  # over A's first version, which no name points at any more
    m.rollback("A")  # A's first version is written again ("restore"), then A points at it
    m.delete_adapter("B")
    kinds = [kind for kind, _ in events]
    assert kinds == ["load", "hotswap", "load", "restore", "rollback", "delete"], kinds
    assert all(isinstance(kind, str) for kind in kinds)
    assert events[0][1]["version"] == "1.1" and events[1][1]["slot"] is not None


def test_a_package_the_cache_cannot_hold_is_refused_before_any_write_or_commit(bundle, packages) -> None:
    # The manager caches a package after its commit, where nothing may fail any more: a package
    # larger than the cache budget must be refused up front, with the image and state untouched.
    budget = len(packages["A"]) - 1
    commits: list = []
    m = manager(bundle, cache=PackageCache(budget), on_commit=commits.append)
    image_before = bytes(m.image.buffer)
    with pytest.raises(CacheError, match="exceeds the cache budget"):
        m.load_adapter(packages["A"])
    assert bytes(m.image.buffer) == image_before
    assert m.adapters == [] and commits == []


def _loaded(bundle, packages, commits: list, **kw) -> SwapManager:
    """A, B resident (A active), C cached, a `kws` of tenant acme at sequence 1."""
    m = manager(bundle, on_commit=commits.append, **kw)
    for name in "ABC":
        m.load_adapter(packages[name])
    m.load_adapter(package(bundle.smap, 20, "kws", 1, tags={"tenant": "acme"}))
    m.set_adapter({"A": 1.0})
    commits.clear()
    return m


@pytest.mark.parametrize("tags", [["tenant", "acme"], "acme", 3, {"tenant": 7}, {"tenant": ["acme"]}])
def test_a_trusted_package_with_malformed_tags_is_refused_before_any_write(bundle, packages, tags) -> None:
    from tests.tinyswap.swap.swap_cases import resign, state_of

    commits: list = []
    m = _loaded(bundle, packages, commits)
    before = state_of(m)
    bad_new = resign(packages["A"], name="fresh", tags=tags)
    bad_next = resign(packages["A"], sequence=5, version="1.5", tags=tags)
    with pytest.raises(PackageFormatError, match="package 'fresh': (metadata field 'tags'|tag 'tenant')"):
        m.load_adapter(bad_new)
    with pytest.raises(PackageFormatError, match="package 'A': (metadata field 'tags'|tag 'tenant')"):
        m.hotswap_adapter("A", bad_next)
    assert state_of(m) == before and commits == []
    assert not any(s.writing or s.draining for s in m._slots.slots)  # no slot left "writing"
    m.hotswap_adapter("A", resign(packages["A"], sequence=5, version="1.5"))  # the manager still works


def test_hotswap_refuses_another_package_name_or_tenant(bundle, packages) -> None:
    from tinyswap.swap import HotswapMismatchError, HotswapTenantError, TenantIsolationError
    from tests.tinyswap.swap.swap_cases import resign, state_of

    commits: list = []
    m = _loaded(bundle, packages, commits)
    before = state_of(m)
    kws = package(bundle.smap, 20, "kws", 1, tags={"tenant": "acme"})
    cases = [
        # tenant B's adapter of another name, newer: tenant acme's kws would run its weights
        ("kws", package(bundle.smap, 21, "other", 9, tags={"tenant": "globex"}), HotswapMismatchError,
         "hotswap of 'kws': the package is named 'other', the adapter runs package 'kws'"),
        # the right name, another tenant
        ("kws", resign(kws, sequence=2, version="1.2", tags={"tenant": "globex"}), HotswapTenantError,
         "hotswap of 'kws': the package belongs to tenant 'globex', the adapter to tenant 'acme'"),
        ("kws", resign(kws, sequence=2, version="1.2", tags={}), HotswapTenantError,
         "belongs to tenant None, the adapter to tenant 'acme'"),
        # an older, differently named release must not slip past A's anti-rollback counter
        ("A", package(bundle.smap, 22, "A-old", 0), HotswapMismatchError, "the package is named 'A-old'"),
        ("A", resign(packages["A"], sequence=3, version="1.3", tags={"tenant": "acme"}), HotswapTenantError,
         "belongs to tenant 'acme', the adapter to tenant None"),
    ]
    for name, data, error, message in cases:
        with pytest.raises(error, match=message):
            m.plan_hotswap(name, data)
        with pytest.raises(error, match=message):
            m.hotswap_adapter(name, data)
        assert state_of(m) == before and commits == [], message
    assert issubclass(HotswapTenantError, TenantIsolationError) and issubclass(HotswapMismatchError, AdapterError)
    m.hotswap_adapter("kws", resign(kws, sequence=2, version="1.2"))  # same name, same tenant: accepted
    assert m.adapter_info("kws").version == "1.2" and len(commits) == 1


def test_one_name_at_version_is_one_package(bundle, packages) -> None:
    from tinyswap.swap import VersionConflictError
    from tests.tinyswap.swap.swap_cases import resign, state_of

    commits: list = []
    m = _loaded(bundle, packages, commits)
    before = state_of(m)
    accepted = m.adapter_info("A").digest
    twin = resign(packages["A"], tensors_from=packages["B"], sequence=7)  # A@1.1, other bytes, higher sequence
    twin_digest = parse_package(twin).content_digest
    message = f"package A@1.1 was accepted as {accepted}; this package {twin_digest} has other bytes"
    with pytest.raises(VersionConflictError, match=message):
        m.hotswap_adapter("A", twin)
    with pytest.raises(VersionConflictError, match=message):
        m.load_adapter(twin, "A-copy")
    with pytest.raises(VersionConflictError, match=message):
        m.verify(twin)
    assert state_of(m) == before and commits == []
    assert [e.version for e in m.registry.with_version("A", "1.1")] == ["1.1"]
    m.hotswap_adapter("A", resign(twin, version="1.7"))  # a new version is fine
    # A plan made before another package took that name@version is refused at apply.
    plan = m.plan_load(resign(packages["C"], name="D", version="1.0", sequence=1), "D")
    m.load_adapter(resign(packages["B"], name="D", version="1.0", sequence=1), "D2")
    snapshot = state_of(m)
    with pytest.raises((VersionConflictError, StalePlanError)):
        m.apply(plan)
    assert state_of(m) == snapshot
