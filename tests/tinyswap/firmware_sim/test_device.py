"""The simulated device end to end: profiles, test-then-confirm, OTA refusals, 1,000 swaps,
metadata write failures, RAM budget, routing, trace and time."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyswap.arena import tflm_arena_figure
from tinyswap.firmware_sim.device import Device
from tinyswap.firmware_sim.errors import (
    DeviceClassError,
    DeviceStateError,
    MetadataWriteError,
    PackageTooLargeError,
    PowerLoss,
    RamBudgetError,
    SlotAlignmentError,
)
from tinyswap.firmware_sim.flash import FailRange, FaultPlan
from tinyswap.firmware_sim.profiles import DEVICES, MCU_QSPI
from tinyswap.firmware_sim.storage import elapsed
from tinyswap.package import (
    PackageDigestError,
    PackageError,
    PackageFormatError,
    RollbackError,
    SignatureError,
    UnknownKeyError,
    WrongBaseModelError,
    build_package,
    parse_package,
)
from tinyswap.router import Request

from tests.adapter_cases import KEY, gates_for_rows, package, slot_holding, tflm_rows
from tests.tinyswap.firmware_sim.device_cases import KEYRING, bundle_for, digest_of, fresh_store_lists, golden, inputs, \
    packages_for

B = bundle_for(4096)
P = packages_for(4096)
X = inputs(3)


def new_device(profile: str = "mcu-qspi", bundle=B, **kw) -> Device:
    d = Device(profile, bundle.data, bundle.smap, KEYRING, **kw)
    d.provision()
    d.boot()
    return d


def with_a1(profile: str = "mcu-qspi", **kw) -> Device:
    d = new_device(profile, **kw)
    d.update(P["A1"], permanent=True)
    d.activate("A", permanent=True)
    return d


def reboot(d: Device) -> None:
    d.power_cut()
    d.power_on()
    d.boot()


def assert_matches_tflm(d: Device, name_pkg: str, x: np.ndarray = X) -> None:
    """The device's output for its active set equals TFLM with gates from slotmap.json."""
    image = d.model_bytes_now()
    slot = slot_holding(B.smap, image, P[name_pkg])
    assert slot is not None, f"{name_pkg} is in no slot"
    np.testing.assert_array_equal(d.infer(x)[0], golden(B.smap, image, x, {slot: 1.0}))


def flash_state(d: Device) -> tuple:
    return (d.flash_images(), {n: f.snapshot() for n, f in d.flashes.items()},
            {n: [f.wear(s) for s in range(f.geometry.sector_count)] for n, f in d.flashes.items()})


# ------------------------------------------------------------------------------ profiles

@pytest.mark.parametrize("profile", list(DEVICES))
def test_update_swap_and_revert_match_tflm_on_every_profile(profile):
    d = with_a1(profile)
    assert_matches_tflm(d, "A1")
    base = d.infer(X, adapters="__base__")[0]
    np.testing.assert_array_equal(base, golden(B.smap, d.model_bytes_now(), X, {}))
    d.update(P["A2"])
    assert d.trial and d.active_adapters()["A"].version == "1.2"
    assert_matches_tflm(d, "A2")
    reboot(d)
    assert not d.trial and d.last_boot.reverted
    assert d.active_adapters()["A"].version == "1.1"
    assert_matches_tflm(d, "A1")
    if profile != "mcu-qspi":  # model in RAM: the flash copy of the model is never written
        assert d.flashes["model"].image_bytes(0, len(B.data)) == B.data


def test_mcu_ram_runs_a_bundle_aligned_to_16_bytes_but_xip_refuses_it():
    b16, p16 = bundle_for(16), packages_for(16)
    d = Device("mcu-ram", b16.data, b16.smap, KEYRING)
    d.provision()
    d.boot()
    d.update(p16["A1"], permanent=True)
    image = d.model_bytes_now()
    slot = slot_holding(b16.smap, image, p16["A1"])
    np.testing.assert_array_equal(d.infer(X, adapters="A")[0], golden(b16.smap, image, X, {slot: 1.0}))
    xip = Device("mcu-qspi", b16.data, b16.smap, KEYRING)
    xip.provision()
    frozen = xip.flash_images()
    with pytest.raises(SlotAlignmentError, match="4096-byte sectors"):
        xip.boot()
    assert xip.flash_images() == frozen and not xip.booted


# ------------------------------------------------------------------------------ test then confirm

def test_unconfirmed_reverts_at_next_boot_and_confirmed_never_does():
    d = with_a1()
    d.update(P["A2"])
    d.update(P["B1"])
    d.activate({"A": 0.5, "B": 0.5})
    reboot(d)  # everything since the last confirmation reverts
    assert d.last_boot.reverted and sorted(d.manager.adapters) == ["A"]
    assert d.active_adapters()["A"].version == "1.1" and set(d.active_adapters()) == {"A"}
    assert d.manager.last_sequence("A") == 1
    # A2 went to slot 1 and B evicted A1 from slot 0: both slots held trial bytes. They are
    # cleared (not merely disabled) and A1 is written back from the store.
    assert d.last_boot.cleared_slots == [0, 1]
    image = d.model_bytes_now()
    assert slot_holding(B.smap, image, P["A2"]) is None and slot_holding(B.smap, image, P["B1"]) is None
    assert_matches_tflm(d, "A1")
    d.update(P["A2"])  # re-applying after a revert works (same package, same sequence)
    assert d.confirm() is True and d.confirm() is False
    for _ in range(3):
        reboot(d)
        assert not d.last_boot.reverted and not d.trial
        assert d.active_adapters()["A"].version == "1.2"
        assert_matches_tflm(d, "A2")


def test_a_slot_only_change_of_a_confirmed_state_stays_confirmed():
    d = with_a1()
    for name in ("B1", "C1"):
        d.update(P[name], permanent=True)  # 3 adapters, 2 slots: C waits in the store
    d.infer(X, adapters="C")  # residency write, no new adapter: not a trial
    assert not d.trial
    reboot(d)
    assert not d.last_boot.reverted and sorted(d.manager.adapters) == ["A", "B", "C"]


# ------------------------------------------------------------------------------ OTA refusals

OTHER_KEY = Ed25519PrivateKey.generate()


def resign(pkg: bytes, key=KEY, **meta_changes) -> bytes:
    """The same tensors under changed metadata, signed again (validly) with `key`."""
    p = parse_package(pkg)
    meta = {k: v for k, v in p.metadata.items() if k != "tensors"}
    meta.update(meta_changes)
    tensors = [(t.layer, t.role, np.frombuffer(bytes(p.tensor_bytes(t)), np.dtype(t.dtype)).reshape(t.shape))
               for t in p.tensors]
    return build_package(meta, tensors, key)


def _corrupt(pkg: bytes) -> bytes:
    bad = bytearray(pkg)
    bad[len(bad) // 2] ^= 0x40
    return bytes(bad)


def _unsigned(pkg: bytes) -> bytes:
    return pkg[:-64] + bytes(64)


def _signed_raw_metadata(pkg: bytes, extra: str, **changes) -> bytes:
    """`pkg` with `extra` (raw JSON text: too deep, or an integer too long) appended to its
    metadata object, digest and signature valid: only the parser's bounds can refuse it."""
    import hashlib
    import struct

    from tinyswap.package import key_id

    p = parse_package(pkg)
    meta = json.dumps({**p.metadata, **changes}, separators=(",", ":"))[:-1] + "," + extra + "}"
    raw_meta, payload = meta.encode(), bytes(p.payload)
    body = b"TSAP" + struct.pack("<HI", 1, len(raw_meta)) + raw_meta + struct.pack("<Q", len(payload)) + payload
    signed = body + hashlib.sha256(body).digest() + key_id(KEY.public_key())
    return signed + KEY.sign(signed)


A4 = package(B.smap, 14, "A", 4)  # valid on the A v3 device below: each case breaks one thing

REJECTIONS = {
    "corrupt": (lambda: _corrupt(A4), PackageDigestError),
    "truncated": (lambda: A4[:-10], PackageFormatError),
    "trailing-bytes": (lambda: A4 + b"\0", PackageFormatError),
    "wrong-base-model": (lambda: package(bundle_for(8192).smap, 14, "A", 4), WrongBaseModelError),
    "wrong-device-class": (lambda: resign(A4, device_class=["gateway"]), DeviceClassError),
    "unsigned": (lambda: _unsigned(A4), SignatureError),
    "unknown-key": (lambda: resign(A4, key=OTHER_KEY), UnknownKeyError),
    "lower-sequence": (lambda: P["A2"], RollbackError),
    "same-sequence-other-content": (lambda: package(B.smap, 99, "A", 3), RollbackError),
    "over-size": (lambda: resign(A4, padding="z" * 3000), PackageTooLargeError),
    "json-too-deep": (lambda: _signed_raw_metadata(A4, '"x":' + "[" * 100 + "]" * 100), PackageFormatError),
    "json-integer-too-long": (lambda: _signed_raw_metadata(A4, '"x":' + "9" * 70), PackageFormatError),
    "sequence-over-63-bits": (lambda: _signed_raw_metadata(A4, '"padding":0', sequence=2**63), PackageFormatError),
}


@pytest.fixture(scope="module")
def at_a3():
    """A device at A v3 (so A v1 and another A v3 are rollbacks), accepting <= 2 KB packages."""
    d = Device("mcu-qspi", B.data, B.smap, KEYRING, max_package_bytes=2048)
    d.provision()
    d.boot()
    d.update(P["A1"], permanent=True)
    d.activate("A", permanent=True)
    d.update(package(B.smap, 13, "A", 3), permanent=True)
    return d


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_rejected_packages_leave_the_flash_byte_identical(at_a3, case):
    make, error = REJECTIONS[case]
    d = at_a3
    bad = make()
    before, state, trial, now = flash_state(d), d.state(), d.trial, d.timeline.now
    for op in (d.install, d.update):
        with pytest.raises(error) as err:
            op(bad)
        assert isinstance(err.value, PackageError)
        after = flash_state(d)
        assert after[0] == before[0], "flash bytes changed"
        assert after[1] == before[1], "flash counters changed"
        assert after[2] == before[2], "wear changed"
    assert d.state() == state and d.trial == trial and d.timeline.now == now
    assert d.active_adapters()["A"].sequence == 3


def test_the_unbroken_package_is_accepted_by_the_same_device(at_a3):
    """Control for the rejections: A v4 itself passes every check on a copy of that device."""
    c = Device("mcu-qspi", B.data, B.smap, KEYRING, max_package_bytes=2048, flash_images=at_a3.flash_images())
    c.boot()
    c.update(A4)
    assert c.active_adapters()["A"].sequence == 4


def test_a_matching_device_class_is_accepted():
    d = with_a1()
    d.update(resign(P["A2"], device_class=["gateway", "mcu-qspi"]))
    assert d.active_adapters()["A"].version == "1.2"


# ------------------------------------------------------------------------------ wear of the base

def test_1000_swaps_never_erase_or_program_the_base_model_sectors():
    d = with_a1(record_ops=False)
    for name in ("B1", "C1"):
        d.update(P[name], permanent=True)
    g = d.flashes["model"].geometry
    slot_sectors = {s for info in B.smap["slots"] for s in g.sectors_in(info["offset"], info["length"])}
    model_sectors = list(g.sectors_in(0, len(B.data)))
    base_sectors = [s for s in model_sectors if s not in slot_sectors]
    assert base_sectors and len(slot_sectors) == 2
    before = d.flashes["model"].snapshot()
    swaps0 = d.manager.stats["swaps"]
    x = X[:1]
    names = ["A", "B", "C"]  # three adapters through two slots, LRU: every request is a swap
    i = 0
    while d.manager.stats["swaps"] - swaps0 < 1000:
        d.infer(x, adapters=names[i % 3])
        i += 1
    assert i <= 1003  # all but the first requests found their adapter evicted
    delta = d.flashes["model"].snapshot() - before
    assert [delta.sector_erases[s] for s in base_sectors] == [0] * len(base_sectors)
    assert [delta.sector_programs[s] for s in base_sectors] == [0] * len(base_sectors)
    assert sum(delta.sector_erases[s] for s in slot_sectors) == 1000
    assert d.flashes["model"].image_bytes(0, len(B.data)) != B.data  # the slots did change
    for s in base_sectors:  # and the base bytes are the factory's
        start, size = g.sector_start(s), g.sectors[s]
        end = min(start + size, len(B.data))
        assert d.flashes["model"].image_bytes(start, end - start) == B.data[start:end]
    reboot(d)
    assert not d.last_boot.errors and not d.trial


# ------------------------------------------------------------------------------ metadata failures

def metadata_failures(d: Device, probability: float, seed: int = 1) -> None:
    part = d.partitions["metadata"]
    d.flashes["model"].arm(FaultPlan(failures=(FailRange(part.offset, part.offset + part.size, probability,
                                                         erases=True),), seed=seed))


def clone_boot(d: Device) -> Device:
    c = Device("mcu-qspi", B.data, B.smap, KEYRING, flash_images=d.flash_images())
    c.boot()
    return c


def test_metadata_writes_failing_always_never_report_success():
    d = with_a1()
    state, before_active = d.state(), d.active_adapters()
    metadata_failures(d, 1.0)
    with pytest.raises(MetadataWriteError):
        d.update(P["A2"])
    with pytest.raises(MetadataWriteError):
        d.activate({"A": 0.5})
    assert d.active_adapters() == before_active and d.state()["adapters"] == state["adapters"]
    assert_matches_tflm(d, "A1")  # the half-written slot was never enabled
    c = clone_boot(d)
    assert c.active_adapters()["A"].version == "1.1" and c.manager.adapters == ["A"]


@pytest.mark.parametrize("probability", [0.5, 0.1])
def test_metadata_writes_failing_at_random_never_report_success(probability):
    """Each metadata program/erase fails with `probability` (MCUboot: status writes failing at
    rate 0.5). A commit is ~7 operations, so at 0.5 nearly every commit fails; 0.1 mixes both."""
    d = with_a1()
    metadata_failures(d, probability, seed=7)
    ok = failed = 0
    for seq in range(2, 14):
        pkg = package(B.smap, 100 + seq, "A", seq)
        expected_before = d.active_adapters()["A"].sequence
        try:
            d.update(pkg, permanent=True)
        except MetadataWriteError:
            failed += 1
            assert d.active_adapters()["A"].sequence == expected_before
        else:
            ok += 1
            assert d.active_adapters()["A"].sequence == seq
        # What a reboot finds is exactly what the device last reported.
        c = clone_boot(d)
        assert c.active_adapters()["A"].sequence == d.active_adapters()["A"].sequence
        assert c.state()["adapters"] == d.state()["adapters"]
    assert failed and (ok or probability == 0.5)


def test_confirm_that_fails_to_persist_reverts_at_boot():
    d = with_a1()
    d.update(P["A2"])
    metadata_failures(d, 1.0)
    with pytest.raises(MetadataWriteError):
        d.confirm()
    assert d.trial
    d.flashes["model"].disarm()
    reboot(d)
    assert d.last_boot.reverted and d.active_adapters()["A"].version == "1.1"


# ------------------------------------------------------------------------------ RAM budget

def test_ram_budget_is_enforced():
    with pytest.raises(RamBudgetError, match="arena"):
        new_device(arena_budget=1024)
    with pytest.raises(RamBudgetError, match="cache budget"):
        Device("mcu-qspi", B.data, B.smap, KEYRING, cache_budget=4096, max_package_bytes=8192)
    d = new_device(cache_budget=1024)
    assert d.arena_bytes is not None and d.arena_bytes <= MCU_QSPI.arena_budget
    with pytest.raises(PackageTooLargeError):
        d.install(P["A1"])


def test_the_ram_budget_charges_the_tflite_micro_arena_not_the_activation_plan():
    """The arena TFLM allocates (measured with the wheel, `tinyswap.arena`) is what the device
    reserves: an arena budget that holds the activations but not TFLM's structures is refused."""
    d = new_device()
    figure = d.factory_arena()
    assert d.arena_bytes == d.factory_arena_bytes() == figure.tflm_bytes == tflm_arena_figure(B.data).tflm_bytes
    assert figure.measured and figure.plan_bytes < figure.smallest_bytes <= figure.tflm_bytes
    with pytest.raises(RamBudgetError, match=f"arena needs {figure.tflm_bytes} bytes"):
        new_device(arena_budget=figure.smallest_bytes)  # over the plan, under the figure charged
    assert new_device(arena_budget=figure.tflm_bytes).arena_bytes == figure.tflm_bytes


# ------------------------------------------------------------------------------ power and boot order

def test_operations_need_power_and_a_boot():
    d = with_a1()
    d.power_cut()
    with pytest.raises(DeviceStateError):
        d.infer(X)
    with pytest.raises(DeviceStateError):
        d.boot()
    d.power_on()
    with pytest.raises(DeviceStateError):
        d.install(P["A2"])
    d.boot()
    assert_matches_tflm(d, "A1")


def test_a_cut_between_operations_loses_only_ram():
    d = with_a1()
    d.update(P["B1"], permanent=True)
    d.arm_power_cuts([])
    d.power_cut()
    with pytest.raises(PowerLoss):
        d.flashes["model"].read(0, 4)
    d.power_on()
    d.boot()
    assert sorted(d.manager.adapters) == ["A", "B"]


# ------------------------------------------------------------------------------ routing

def test_routed_requests_get_their_adapter_per_row():
    d = with_a1()
    d.update(P["B1"], permanent=True)
    d.add_rule({"user": "bob"}, "B")
    reqs = [Request(user="alice"), Request(user="bob"), Request(user="bob")]
    d.router.default = "A"
    y = d.infer(X, requests=reqs)[0]
    image = d.model_bytes_now()
    sa, sb = slot_holding(B.smap, image, P["A1"]), slot_holding(B.smap, image, P["B1"])
    want = tflm_rows(image, X, gates_for_rows(B.smap, [{sa: 1.0}, {sb: 1.0}, {sb: 1.0}]))
    np.testing.assert_array_equal(y, want)
    reboot(d)  # rules are configuration: kept across boots
    assert d.router.rules and d.router.route(Request(user="bob")) == "B"


# ------------------------------------------------------------------------------ store image

def test_the_store_image_mounts_in_a_fresh_littlefs_and_lists_the_packages():
    d = with_a1()
    d.update(P["A2"], permanent=True)
    d.update(P["B1"], permanent=True)
    assert fresh_store_lists(d) == sorted(digest_of(P[k]) for k in ("A1", "A2", "B1"))


# ------------------------------------------------------------------------------ time and trace

def test_time_is_a_pure_function_of_counters_and_the_trace_is_perfetto_json(tmp_path):
    d = with_a1()
    d.update(P["A2"])
    d.infer(X)
    d.confirm()
    reboot(d)
    t = d.timeline
    flash_time = (elapsed(d.flashes["model"].snapshot(), d.model_storage)
                  + elapsed(d.flashes["store"].snapshot(), d.store_storage))
    other = sum(v for k, v in t.totals.items() if not k.startswith("flash:"))
    assert t.now == pytest.approx(flash_time + other, rel=1e-9)
    assert t.seconds("cpu") > 0 and t.seconds("flash:model") > 0 and t.seconds("flash:store") > 0
    trace = json.loads(d.write_trace(tmp_path / "trace.json").read_text())
    events = trace["traceEvents"]
    assert {e["ph"] for e in events} == {"M", "X", "i"}
    names = {e["name"] for e in events}
    assert {"provision", "boot", "install", "swap", "commit", "confirm", "infer", "invoke", "erase",
            "program", "read", "hotswap"} <= names
    xs = [e for e in events if e["ph"] == "X"]
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in xs)
    assert max(e["ts"] + e["dur"] for e in xs) == pytest.approx(t.now * 1e6)
    swap = next(e for e in xs if e["name"] == "swap")
    inner = [e for e in xs if e["tid"] != swap["tid"] and swap["ts"] <= e["ts"] < swap["ts"] + swap["dur"]]
    assert sum(e["dur"] for e in inner) == pytest.approx(swap["dur"])  # a span is the work inside it


def test_what_an_install_and_a_swap_cost_on_mcu_qspi():
    """Measured, not asserted against a target: printed for the report; the physics bounds hold."""
    d = with_a1()
    d.arm_power_cuts()
    t0, c0 = d.timeline.now, {n: f.snapshot() for n, f in d.flashes.items()}
    info = d.install(P["A2"])
    t1, c1 = d.timeline.now, {n: f.snapshot() for n, f in d.flashes.items()}
    d.swap(info.digest)
    t2, c2 = d.timeline.now, {n: f.snapshot() for n, f in d.flashes.items()}
    inst = {n: c1[n] - c0[n] for n in c0}
    swap = {n: c2[n] - c1[n] for n in c1}
    print(f"\nmcu-qspi install of a {len(P['A2'])}-byte package: {inst['store'].mutating_ops} SD writes, "
          f"{inst['store'].read_ops} SD reads, {t1 - t0:.4f} s; swap: {swap['model'].erase_ops} NOR erases, "
          f"{swap['model'].program_ops} NOR programs, {t2 - t1:.4f} s")
    assert inst["model"].mutating_ops == 0 and swap["store"].mutating_ops == 0
    # A swap erases the slot's sector and one metadata area (W25Q 4 KB sector: 45 ms typ each).
    assert swap["model"].erase_ops == 2 and t2 - t1 >= 2 * 0.045
    assert t2 - t1 < 0.2
