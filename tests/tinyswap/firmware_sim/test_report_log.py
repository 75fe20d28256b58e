"""The device report log: one typed entry per operation and refusal, bounded, in the adapter
store, and consistent with the metadata record after any power cut and boot."""

from __future__ import annotations

import json
import random
from functools import lru_cache

import numpy as np
import pytest

from tinyswap.firmware_sim.device import Device
from tinyswap.firmware_sim.errors import DeviceClassError, DeviceStateError, PowerLoss, StoreFullError
from tinyswap.firmware_sim.flash import CutPoint, PowerCut
from tinyswap.firmware_sim.report_log import (
    LOG_NAME,
    EntryKind,
    EntryOutcome,
    LogState,
    ReportLogError,
    decode_log,
    draft,
    max_file_bytes,
)
from tinyswap.package import RollbackError, build_package, parse_package

from tests.adapter_cases import KEY, package
from tests.tinyswap.firmware_sim.device_cases import KEYRING, RIGS, bundle_for, digest_of, packages_for

B = bundle_for(4096)
P = packages_for(4096)


def resign(pkg: bytes, **meta_changes) -> bytes:
    """The same tensors under changed metadata, signed again (validly)."""
    p = parse_package(pkg)
    meta = {k: v for k, v in p.metadata.items() if k != "tensors"}
    meta.update(meta_changes)
    tensors = [(t.layer, t.role, np.frombuffer(bytes(p.tensor_bytes(t)), np.dtype(t.dtype)).reshape(t.shape))
               for t in p.tensors]
    return build_package(meta, tensors, KEY)


def logged_device(entries: int = 32, **kw) -> Device:
    d = Device("mcu-qspi", B.data, B.smap, KEYRING, **kw)
    d.enable_report_log(entries)
    d.provision()
    d.boot()
    return d


def reboot(d: Device) -> None:
    d.power_cut()
    d.power_on()
    d.boot()


def kinds(d: Device) -> list[tuple[str, str]]:
    return [(e.kind.value, e.outcome.value) for e in d.report_log()]


def check_log(d: Device, max_entries: int) -> LogState:
    """What every boot must leave: the file parses, is bounded, equals the device's copy, and
    every entry's record sequence is consistent with the committed record."""
    raw = d.store.read(LOG_NAME)
    assert len(raw) <= max_file_bytes(max_entries)
    state = decode_log(raw, max_entries)
    assert state == d.report_log_state(), "the device's copy differs from the file"
    seqs = [e.sequence for e in state.entries]
    assert 1 <= len(seqs) <= max_entries
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and state.next_sequence == seqs[-1] + 1
    assert state.dropped + len(seqs) == state.next_sequence - 1  # nothing lost without being counted
    records = [e.record_sequence for e in state.entries]
    assert all(r is not None for r in records) and records == sorted(records)
    assert records[-1] == d.metadata.current.sequence, (records, d.metadata.current.sequence)
    return state


# ------------------------------------------------------------------------------ what is logged

def test_install_swap_activate_confirm_rollback_delete_and_refusals_are_logged_with_reasons():
    d = logged_device()
    d.update(P["A1"], permanent=True)
    d.activate("A", permanent=True)
    d.update(P["A2"])  # on trial
    assert d.confirm() is True
    assert d.confirm() is False  # nothing on trial: reported as unchanged
    old = package(B.smap, 99, "A", 1)  # a new digest under an old sequence number
    with pytest.raises(RollbackError) as refused:
        d.install(old)
    with pytest.raises(DeviceClassError):
        d.install(resign(P["B1"], device_class="gateway"))
    d.update(P["B1"], permanent=True)
    d.delete("B", permanent=True)
    assert d.rollback("A", permanent=True) == digest_of(P["A1"])
    assert kinds(d) == [
        ("boot", "applied"),  # the log started at the first boot
        ("install", "applied"), ("swap", "applied"), ("activate", "applied"),
        ("install", "applied"), ("swap", "applied"), ("confirm", "applied"), ("confirm", "unchanged"),
        ("install", "refused"), ("install", "refused"),
        ("install", "applied"), ("swap", "applied"), ("delete", "applied"), ("rollback", "applied")]
    log = d.report_log()
    swap_a2 = log[5]
    assert (swap_a2.adapter, swap_a2.version, swap_a2.digest) == ("A", "1.2", digest_of(P["A2"]))
    rollback = log[-1]
    assert (rollback.adapter, rollback.version, rollback.digest) == ("A", "1.1", digest_of(P["A1"]))
    rollback_refusal, class_refusal = log[8], log[9]
    assert rollback_refusal.reason == f"RollbackError: {refused.value}"
    assert rollback_refusal.digest == digest_of(old) and rollback_refusal.adapter == "A"
    assert class_refusal.reason.startswith("DeviceClassError: package 'B' is for device class(es) ['gateway']")
    assert [e.sequence for e in log] == list(range(1, len(log) + 1))
    check_log(d, 32)


def test_a_refusal_changes_nothing_but_the_log():
    d = logged_device()
    d.update(P["A1"], permanent=True)
    record, state = d.metadata.current, d.state()
    model = d.partitions["model"].image_bytes()
    with pytest.raises(RollbackError):
        d.install(package(B.smap, 98, "A", 1))
    assert d.metadata.current == record and d.state() == state
    assert d.partitions["model"].image_bytes() == model
    last = d.report_log()[-1]
    assert (last.kind, last.outcome, last.record_sequence) == (EntryKind.INSTALL, EntryOutcome.REFUSED,
                                                                 record.sequence)


def test_a_boot_that_reverts_a_trial_logs_the_revert():
    d = logged_device()
    d.update(P["A1"], permanent=True)
    d.activate("A", permanent=True)
    d.update(P["A2"])
    assert d.trial
    reboot(d)
    last = d.report_log()[-1]
    assert (last.kind, last.outcome) == (EntryKind.REVERT, EntryOutcome.APPLIED)
    assert "not confirmed" in last.reason and d.active_adapters()["A"].version == "1.1"
    check_log(d, 32)


def test_the_log_is_bounded_and_its_sequence_survives_reboots():
    d = logged_device(entries=4)
    d.update(P["A1"], permanent=True)
    d.activate("A", permanent=True)
    for _ in range(3):
        d.update(P["A2"])
        reboot(d)  # reverts
    state = check_log(d, 4)
    assert len(state.entries) == 4 and state.dropped == state.next_sequence - 1 - 4 > 0
    assert state.entries[-1].kind is EntryKind.REVERT
    exported = d.report_log_json()
    assert exported["dropped"] == state.dropped and exported["unlogged"] == 0
    assert json.loads(json.dumps(exported))["entries"] == [e.to_json() for e in state.entries]


def test_a_log_append_that_fails_neither_fails_nor_undoes_the_operation(monkeypatch):
    """The store is full: the swap stands, the entry is counted as unlogged, and the next
    boot reports that a record was committed without its report."""
    d = logged_device()
    d.update(P["A1"], permanent=True)
    d.activate("A", permanent=True)
    write = d.store.write

    def full(name, data):
        if name == LOG_NAME:
            raise StoreFullError("no space left (simulated)")
        write(name, data)

    monkeypatch.setattr(d.store, "write", full)
    d.update(P["A2"], permanent=True)
    assert d.active_adapters()["A"].version == "1.2"
    assert d.report_log_json()["unlogged"] == 2  # the install's and the swap's entries
    committed = d.metadata.current.sequence
    reboot(d)  # a new store object: writes work again
    assert d.active_adapters()["A"].version == "1.2"
    last = d.report_log()[-1]
    assert last.kind is EntryKind.RECOVERED and last.record_sequence == committed
    assert "without a report" in last.reason
    check_log(d, 32)


def test_an_unreadable_log_starts_anew_and_says_so():
    d = logged_device()
    d.update(P["A1"], permanent=True)
    d.store.write(LOG_NAME, b"{not json")
    reboot(d)
    (entry,) = d.report_log()
    assert (entry.kind, entry.outcome) == (EntryKind.BOOT, EntryOutcome.FAILED) and "unreadable" in entry.reason
    check_log(d, 32)


def test_without_a_log_the_device_writes_nothing_extra_and_attest_claims_no_log():
    d = Device("mcu-qspi", B.data, B.smap, KEYRING)
    d.provision()
    d.boot()
    d.update(P["A1"], permanent=True)
    assert d.report_log() == [] and d.report_log_json() is None and LOG_NAME not in d.store.list()
    with pytest.raises(DeviceStateError, match="before boot"):
        d.enable_report_log()


@pytest.mark.parametrize("bad", [0, -1, 1025, "8", True])
def test_impossible_bounds_are_refused(bad):
    d = Device("mcu-qspi", B.data, B.smap, KEYRING)
    with pytest.raises(ReportLogError):
        d.enable_report_log(bad)


def test_the_parser_is_bounded_and_typed():
    good = LogState(4).append([draft(EntryKind.BOOT, EntryOutcome.APPLIED, record_sequence=1, time_s=0.0)])
    assert decode_log(good.encode(), 4) == good
    doc = good.to_json()
    for broken in (b"x" * (max_file_bytes(1024) + 1), b"[" * 100, b"{}", json.dumps({**doc, "entries": [{}]}).encode(),
                   json.dumps({**doc, "next_sequence": 1}).encode(),
                   json.dumps({**doc, "entries": [{**doc["entries"][0], "kind": "reboot"}]}).encode()):
        with pytest.raises(ReportLogError):
            decode_log(broken, 4)
    # a log written with a larger bound keeps its newest entries; the rest count as dropped
    many = LogState(8).append([draft(EntryKind.BOOT, EntryOutcome.APPLIED, record_sequence=i, time_s=0.0)
                               for i in range(6)])
    kept = decode_log(many.encode(), 4)
    assert [e.sequence for e in kept.entries] == [3, 4, 5, 6] and kept.dropped == 2


def test_entry_text_is_bounded_printable_ascii():
    e = draft(EntryKind.INSTALL, EntryOutcome.REFUSED, adapter="\u00e9" * 500, reason='"\\' * 500,
              record_sequence=1, time_s=0.0)
    assert len(e.adapter) == 200 and set(e.adapter) == {"?"}
    state = LogState(1).append([e])
    assert len(state.encode()) <= max_file_bytes(1)


# ------------------------------------------------------------------------------ power cuts

MAX = 5  # small, so the sweep also drops entries
SWEEP_RIGS = ("nor4k", "qspi+sd")  # store on the model's part, and on its own SD card


@lru_cache(maxsize=None)
def start_images(rig: str) -> tuple[tuple[str, bytes], ...]:
    r = RIGS[rig]
    p = packages_for(r.alignment)
    d = r.device(bundle_for(r.alignment), 0xFF, 1)
    d.enable_report_log(MAX)
    d.provision()
    d.boot()
    d.update(p["A1"], permanent=True)
    d.activate("A", permanent=True)
    return tuple(d.flash_images().items())


def device_from(rig: str, record_ops: bool = False) -> Device:
    r = RIGS[rig]
    d = r.device(bundle_for(r.alignment), 0xFF, 1, flash_images=dict(start_images(rig)), record_ops=record_ops)
    d.enable_report_log(MAX)
    return d


def install_and_confirm(d: Device, rig: str) -> None:
    d.update(packages_for(RIGS[rig].alignment)["A2"])
    d.confirm()


@lru_cache(maxsize=None)
def clean_run(rig: str) -> tuple[int, tuple[int, ...]]:
    """(mutating operations of install + swap + confirm, the operation counts at which each
    metadata commit completed)."""
    d = device_from(rig, record_ops=True)
    d.boot()
    t0 = d.timeline.now
    d.arm_power_cuts()
    install_and_confirm(d, rig)
    commits = tuple(e.args["mutations"] for e in d.timeline.events if e.name == "commit" and e.ts >= t0)
    return d.mutations, commits


def cut_and_check(rig: str, op: int, when: CutPoint) -> set[EntryKind]:
    d = device_from(rig)
    d.boot()
    d.arm_power_cuts([PowerCut(op, when)])
    with pytest.raises(PowerLoss):
        install_and_confirm(d, rig)
    d.power.disarm()
    d.power_on()
    d.boot()
    return {e.kind for e in check_log(d, MAX).entries}


def sweep(rig: str, points: list[tuple[int, CutPoint]]) -> set[EntryKind]:
    seen: set[EntryKind] = set()
    for op, when in points:
        seen |= cut_and_check(rig, op, when)
    return seen


@pytest.mark.parametrize("rig", SWEEP_RIGS)
def test_the_log_stays_consistent_after_power_cuts_sample(rig):
    """Cut before / after each metadata commit (after: the commit stands, its report is not
    written yet) and at seeded other points; the last point completes everything but the
    confirm's report."""
    n, commits = clean_run(rig)
    assert commits and max(commits) < n, "the report is written after the operation's commit"
    points = [(k, CutPoint.AFTER) for k in commits] + [(k, CutPoint.BEFORE) for k in commits] + [(n, CutPoint.TORN)]
    rng = random.Random(rig)
    rest = [(i, w) for i in range(1, n + 1) for w in CutPoint if (i, w) not in points]
    points += rng.sample(rest, 6)
    seen = sweep(rig, points)
    assert EntryKind.RECOVERED in seen  # some cut fell between a commit and its report


@pytest.mark.slow
@pytest.mark.parametrize("rig", SWEEP_RIGS)
def test_the_log_stays_consistent_after_every_power_cut(rig):
    n, _ = clean_run(rig)
    sweep(rig, [(i, w) for i in range(1, n + 1) for w in CutPoint])
