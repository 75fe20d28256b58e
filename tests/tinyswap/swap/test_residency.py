"""Slot residency: eviction by policy, pins by requests in flight, draining, and the one retry
loop, through the manager (oracle: TFLite Micro) and on `Residency` alone."""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap.swap import SlotBusyError

from tests.tinyswap.swap.swap_cases import golden, inputs, manager


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


# -- Residency alone ----------------------------------------------------------------------------
def _residency(bundle, policy="lru", adapters=None, wait=0.2):
    from tinyswap.slotmap import SlotMap
    from tinyswap.swap import EvictionPolicy
    from tinyswap.swap.residency import Residency

    table = adapters if adapters is not None else {}
    return Residency(SlotMap.from_json(bundle.smap), EvictionPolicy(policy), wait, lambda: table, lambda d: d[:4])


def test_free_slot_takes_empty_slots_first_and_never_a_busy_one(bundle) -> None:
    from tinyswap.swap import AdapterState

    adapters = {"A": AdapterState("A", "a" * 64)}
    r = _residency(bundle, adapters=adapters)
    assert r.free_slot() == 0
    r.slots[0].digest = "old"  # a stale version nobody points at
    assert r.free_slot() == 1  # empty first
    r.slots[1].digest = "a" * 64  # the live version of A
    assert r.free_slot() == 0
    r.slots[0].pinned = 1
    assert r.free_slot() is None
    r.slots[0].pinned, r.slots[0].retired = 0, True
    assert r.free_slot() is None
    assert r.resident_slots({"a" * 64}) == {"a" * 64: 1} and r.resident_slots({"old"}) == {"old": 0}
    r.slots[1].writing = True  # a slot being written serves nothing
    assert r.resident_slots({"a" * 64}) is None


def test_victim_follows_the_policy(bundle) -> None:
    from tinyswap.swap import AdapterState

    adapters = {"A": AdapterState("A", "a" * 64, priority=1.0), "B": AdapterState("B", "b" * 64, priority=9.0)}
    for policy, expected in (("lru", 1), ("priority", 0)):
        r = _residency(bundle, policy, adapters)
        r.slots[0].digest, r.slots[0].last_used = "a" * 64, 5  # A: more recent, less important
        r.slots[1].digest, r.slots[1].last_used = "b" * 64, 2
        assert r.victim(keep=set(), exclude_digests=set()) == expected, policy
        assert r.victim(keep={"a" * 64, "b" * 64}, exclude_digests=set()) is None


def test_drain_outcomes(bundle) -> None:
    import threading
    import time

    from tinyswap.swap.residency import DrainOutcome

    r = _residency(bundle)
    for s in r.slots:
        s.retired = True
    assert r.drain_one(set(), set(), time.monotonic() + 1).outcome is DrainOutcome.IMPOSSIBLE
    r = _residency(bundle)
    r.slots[1].draining = True  # another swap drains: one drain at a time
    assert r.drain_one(set(), set(), time.monotonic() + 1).outcome is DrainOutcome.RETRY
    r = _residency(bundle, wait=5.0)
    r.slots[0].pinned = r.slots[1].pinned = 1
    r.slots[1].last_used = 9

    def finish() -> None:  # the request in flight on slot 0 ends
        time.sleep(0.05)
        r.release([0])

    threading.Thread(target=finish).start()
    drain = r.drain_one(set(), set(), time.monotonic() + 5)
    assert drain.outcome is DrainOutcome.DRAINED and drain.slot == 0 and r.slots[0].draining
    assert r.resident_slots(set()) == {}
    r.undrain(0)
    assert not r.slots[0].draining
    r.pin([0])  # both slots held for good: the drain gives up after the deadline
    with pytest.raises(SlotBusyError, match="stayed pinned"):
        r.drain_one(set(), set(), time.monotonic() + 0.1)
    assert not any(s.draining for s in r.slots)


def test_the_retry_loop_retries_stale_plans_then_gives_up(bundle) -> None:
    from tinyswap.swap import StalePlanError
    from tinyswap.swap.residency import Attempt

    r = _residency(bundle, wait=0.2)
    applied: list[int] = []

    def stale(plan) -> None:
        applied.append(1)
        raise StalePlanError("changed")

    with pytest.raises(SlotBusyError, match="op: the slots kept changing"):
        r.until_done(lambda: Attempt(plan=object(), label="op: "), stale, may_drain=True)  # type: ignore[arg-type]
    assert len(applied) > 1
    looks = iter([Attempt(plan=object()), Attempt(done=True)])  # type: ignore[arg-type]
    r.until_done(lambda: next(looks), lambda plan: None, may_drain=True)  # applied, looked again, done
    r.until_done(lambda: Attempt(plan=object(), last=True), lambda plan: None, may_drain=True)  # type: ignore[arg-type]


def test_the_retry_loop_refuses_when_no_slot_can_ever_be_freed_and_undrains(bundle) -> None:
    from tinyswap.swap.residency import Attempt

    r = _residency(bundle, wait=0.2)
    for s in r.slots:
        s.retired = True
    with pytest.raises(SlotBusyError, match="stuck"):
        r.until_done(lambda: Attempt(stuck="stuck"), lambda plan: None, may_drain=True)
    with pytest.raises(SlotBusyError, match="idle for"):  # requests wait for a slot, never drain
        r.until_done(lambda: Attempt(idle="idle for x"), lambda plan: None, may_drain=False)
    r = _residency(bundle, wait=1.0)
    looks = iter([Attempt(), Attempt()])

    def look() -> Attempt:
        step = next(looks, None)
        if step is None:
            assert r.slots[0].draining  # the loop drained slot 0 and waits for nothing else
            raise RuntimeError("stop")
        return step

    with pytest.raises(RuntimeError, match="stop"):
        r.until_done(look, lambda plan: None, may_drain=True)
    assert not any(s.draining for s in r.slots)  # undrained however the loop ended


# -- a swap that drained a slot returns once it wrote it (no wait for its own drain) -------------
def _pin_until_a_drain(m, names, released):
    """A request in another thread pins `names` until a swap drains one of their slots."""
    import threading
    import time

    held = threading.Event()

    def request() -> None:
        with m.pinned(names):
            held.set()
            deadline = time.monotonic() + 5.0
            while not any(s.draining for s in m._slots.slots) and time.monotonic() < deadline:
                time.sleep(0.005)
        released.set()

    t = threading.Thread(target=request)
    t.start()
    assert held.wait(5.0)
    return t


@pytest.mark.parametrize("operation", ["make_resident", "set_adapter", "rollback"])
def test_an_operation_that_drained_and_wrote_a_slot_returns_once_it_is_written(bundle, packages, operation) -> None:
    import threading
    import time

    from tests.adapter_cases import package

    wait = 1.5
    m = manager(bundle, wait_seconds=wait)
    m.load_adapter(packages["A"])
    m.load_adapter(packages["B"])  # both slots hold A and B
    if operation == "rollback":  # kws v1 and v2 accepted, v1 evicted from every slot
        m.load_adapter(package(bundle.smap, 10, "kws", 1), priority=0.0)
        m.hotswap_adapter("kws", package(bundle.smap, 11, "kws", 2))
        m.infer(inputs(1), adapter_names=[["A", "B"]])  # A and B resident again, kws in no slot
        target = m.registry.versions("kws")[0]
    else:
        m.load_adapter(packages["C"])  # cached, in no slot
        target = m.registry.versions("C")[0]
    assert target not in m._slots.digests()
    released = threading.Event()
    t = _pin_until_a_drain(m, ["A", "B"], released)
    start = time.monotonic()
    if operation == "make_resident":
        slot = m.make_resident("C")
    elif operation == "set_adapter":
        m.set_adapter("C")
    else:
        assert m.rollback("kws") == target
    elapsed = time.monotonic() - start
    t.join()
    assert released.is_set()
    assert elapsed < wait, f"{operation} waited {elapsed:.2f} s for its own drain"
    assert target in m._slots.digests() and not any(s.draining or s.writing for s in m._slots.slots)
    if operation == "make_resident":
        assert m._slots.digests()[slot] == target
    if operation == "set_adapter":
        assert m.active_adapters == ["C"]
    x = inputs(2)
    name = "kws" if operation == "rollback" else "C"
    pkgs = {name: package(bundle.smap, 10, "kws", 1)} if operation == "rollback" else packages
    np.testing.assert_array_equal(m.infer(x, adapters=name)[0], golden(m, bundle, x, [{name: 1.0}] * 2, pkgs))
