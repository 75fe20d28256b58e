"""The device's idle step: metadata areas and the next slot erased off the request path.

Oracles: the flash part's own operation counters (erase commands issued during the swap), the
W25Q-JV datasheet timings through the storage profile, and TFLite Micro on the executed bytes
for what a pre-erased slot contributes with its gate off (nothing: the base model's outputs).
"""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap.firmware_sim.device import Device
from tinyswap.firmware_sim.flash import CutPoint, PowerCut
from tinyswap.firmware_sim.errors import PowerLoss
from tinyswap.package import parse_package

from tests.tinyswap.firmware_sim.device_cases import RIGS, golden, inputs, package_contents, packages_of, \
    slot_contents

RIG = RIGS["qspi+sd"]
SMAP = RIG.bundle().smap
X = inputs(2)


def booted(**kw) -> tuple[Device, dict]:
    p = packages_of("qspi+sd")
    d = RIG.device(RIG.bundle(), 0xFF, 1, **kw)
    d.provision()
    d.boot()
    d.update(p["A1"], permanent=True)
    d.activate("A", permanent=True)
    d.install(p["A2"])
    return d, p


def erase_ops(d: Device) -> int:
    return sum(f.snapshot().erase_ops for f in d.flashes.values())


def fallback_events(d: Device, since: float) -> list[str]:
    return [e.cat for e in d.timeline.events if e.name == "erase (no pre-erased sector)" and e.ts >= since]


def swap_a2(d: Device, p: dict) -> None:
    d.swap(parse_package(p["A2"]).content_digest, permanent=True)


def test_after_the_idle_step_a_hot_swap_only_programs():
    d, p = booted()
    report = d.idle(prepare_for="A")
    assert report.slot == 1 and report.slot_note == ""  # A1 lives in slot 0: the swap takes slot 1
    assert report.metadata_areas >= 1 and report.seconds > 0
    idle_events = [e for e in d.timeline.events if e.name == "idle"]
    assert len(idle_events) == 1 and idle_events[0].args["slot"] == 1  # its own event in the trace
    assert d.record.erased == (1,)
    start, before = d.timeline.now, erase_ops(d)
    swap_a2(d, p)
    assert erase_ops(d) == before  # not one erase command on the request path
    assert fallback_events(d, start) == []
    assert d.record.erased == ()  # the slot holds A2 now
    assert slot_contents(SMAP, d.model_bytes_now(), 1) == package_contents(SMAP, p["A2"])
    y = d.infer(X, adapters="A")[0]
    np.testing.assert_array_equal(y, golden(SMAP, d.model_bytes_now(), X, {1: 1.0}))


def test_without_the_idle_step_the_swap_erases_on_its_path_and_says_so():
    d, p = booted()
    start, before = d.timeline.now, erase_ops(d)
    writes, commits = d.image.erases_on_write, d.metadata.erases_on_commit
    swap_a2(d, p)
    assert erase_ops(d) - before == 2  # the slot's sector and a metadata area (one 4 KB sector each)
    assert (d.image.erases_on_write - writes, d.metadata.erases_on_commit - commits) == (1, 1)
    assert sorted(fallback_events(d, start)) == ["flash", "metadata"]
    assert d.active_adapters()["A"].digest == parse_package(p["A2"]).content_digest


def test_a_pre_erased_slot_contributes_nothing_and_survives_a_reboot_untrusted():
    d, p = booted()
    before_bytes = d.model_bytes_now()  # A1 in slot 0, zeros in slot 1
    before = d.infer(X)[0]
    d.idle(prepare_for="A")
    ev = d.flashes["model"].geometry.erase_value
    blank = tuple(bytes([ev]) * len(t) for t in package_contents(SMAP, None))
    assert slot_contents(SMAP, d.model_bytes_now(), 1) == blank  # tensors erased, frame intact
    # TFLite Micro on the executed bytes: slot 1's gate is off, its erased tensors change nothing.
    np.testing.assert_array_equal(golden(SMAP, d.model_bytes_now(), X, {0: 1.0}),
                                  golden(SMAP, before_bytes, X, {0: 1.0}))
    np.testing.assert_array_equal(d.infer(X)[0], before)
    wear = dict(d.record.wear)
    d.power_cut()
    d.power_on()
    report = d.boot()
    assert report.cleared_slots == [] and report.errors == []  # kept as it is: listed and still blank
    assert d.record.erased == (1,) and dict(d.record.wear) == wear  # no erase counted twice
    assert slot_contents(SMAP, d.model_bytes_now(), 1) == blank
    np.testing.assert_array_equal(d.infer(X)[0], before)
    # Nothing is trusted as erased after a reboot: the swap erases again, counted and traced.
    start, ops = d.timeline.now, erase_ops(d)
    swap_a2(d, p)
    assert erase_ops(d) - ops == 2 and sorted(fallback_events(d, start)) == ["flash", "metadata"]


def slot_erase_op(d: Device, slot: int) -> int:
    """The number (from 1, as `arm_power_cuts` counts) of the idle step's first erase of `slot`,
    read from a clean run's trace on an identical device."""
    probe = Device(d.profile, d.model, SMAP, d.keyring, flash_images=d.flash_images(),
                   model_geometry=d.flashes["model"].geometry, shared_store=False,
                   store_geometry=d.flashes["store"].geometry, model_storage=d.model_storage)
    probe.boot()
    probe.install(packages_of("qspi+sd")["A2"])
    start = probe.timeline.now
    probe.idle(prepare_for="A")
    mutations = [e for e in probe.timeline.events if e.cat == "flash" and e.name in ("erase", "program")
                 and e.ts >= start]
    at = d.layout.model.offset + d.slotmap.slots[slot].offset
    return next(i for i, e in enumerate(mutations, 1) if e.name == "erase" and e.args["offset"] == at)


@pytest.mark.parametrize("when", [CutPoint.AFTER, CutPoint.TORN])
def test_a_cut_after_the_slot_erase_is_counted_once_and_the_slot_rewritten_blank(when):
    d, p = booted()
    g = d.flashes["model"].geometry
    info = d.slotmap.slots[1]
    (sector,) = g.sectors_in(d.layout.model.offset + info.offset, info.length)
    wear = d.record.wear.get(sector, 0)
    d.arm_power_cuts([PowerCut(slot_erase_op(d, 1), when)])
    with pytest.raises(PowerLoss):
        d.idle(prepare_for="A")
    d.power.disarm()
    d.power_on()
    report = d.boot()
    assert report.cleared_slots == [1]  # bytes the record did not describe: rewritten blank (zeros)
    assert d.record.erased == ()
    assert d.record.wear[sector] == wear + 2  # the interrupted erase, counted at boot, and the repair
    assert slot_contents(SMAP, d.model_bytes_now(), 1) == package_contents(SMAP, None)
    swap_a2(d, p)  # the next swap still lands
    assert d.active_adapters()["A"].digest == parse_package(p["A2"]).content_digest


def test_without_a_free_slot_a_plain_idle_step_prepares_only_the_metadata():
    d, p = booted()
    swap_a2(d, p)  # A2 in slot 1, A1 kept in slot 0 for a gate-flip rollback
    report = d.idle()
    assert report.slot is None and "no slot" in report.slot_note
    assert d.record.erased == ()
    start, ops = d.timeline.now, erase_ops(d)
    d.rollback("A", permanent=True)  # a gate flip and a commit into a pre-erased area
    assert erase_ops(d) == ops and fallback_events(d, start) == []


def test_on_a_ram_placed_model_the_idle_step_erases_metadata_areas_only():
    rig = RIGS["ram-nor4k"]
    p = packages_of("ram-nor4k")
    d = rig.device(rig.bundle(), 0xFF, 1)
    d.provision()
    d.boot()
    d.update(p["A1"], permanent=True)
    d.install(p["A2"])
    report = d.idle(prepare_for="A")
    assert report.slot is None and "RAM" in report.slot_note and report.metadata_areas >= 1
    start, ops = d.timeline.now, erase_ops(d)
    swap_a2(d, p)
    assert erase_ops(d) == ops and fallback_events(d, start) == []
