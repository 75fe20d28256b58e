"""Boot: what it refuses, what it repairs (through the swap manager's clear path), what it
reports, and what it never swallows (power loss, programmer errors)."""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap.firmware_sim import model_image
from tinyswap.firmware_sim.device import Device
from tinyswap.firmware_sim.errors import (
    BaseModelError,
    MetadataMissingError,
    MetadataRecordError,
    PowerLoss,
    UnerasedWriteError,
)
from tinyswap.firmware_sim.power import CutPoint, PowerCut
from tinyswap.slotmap import SlotMap

from tests.adapter_cases import slot_holding
from tests.tinyswap.firmware_sim.device_cases import KEYRING, bundle_for, digest_of, golden, inputs, packages_for

B = bundle_for(4096)
P = packages_for(4096)
SMAP = SlotMap.from_json(B.smap)
X = inputs(2)


def with_a1(**kw) -> Device:
    d = Device("mcu-qspi", B.data, B.smap, KEYRING, **kw)
    d.provision()
    d.boot()
    d.update(P["A1"], permanent=True)
    d.activate("A", permanent=True)
    return d


def serves(d: Device, key: str) -> None:
    image = d.model_bytes_now()
    slot = slot_holding(B.smap, image, P[key])
    assert slot is not None
    np.testing.assert_array_equal(d.infer(X)[0], golden(B.smap, image, X, {slot: 1.0}))


def slot_sectors(d: Device, slot: int) -> list[int]:
    info = SMAP.slots[slot]
    part = d.partitions["model"]
    return list(part.geometry.sectors_in(part.absolute(info.offset), info.length))


def test_boot_refuses_an_unprovisioned_device_and_a_damaged_base_model():
    d = Device("mcu-qspi", B.data, B.smap, KEYRING)
    with pytest.raises(MetadataMissingError):
        d.boot()
    d.provision()
    images = d.flash_images()
    model = bytearray(images["model"])
    model[100] ^= 0xFF  # a base-model byte (outside every slot)
    images["model"] = bytes(model)
    bad = Device("mcu-qspi", B.data, B.smap, KEYRING, flash_images=images)
    with pytest.raises(BaseModelError):
        bad.boot()


def test_an_interrupted_slot_write_is_repaired_through_the_swap_manager():
    """A cut right after the erase of a swap's slot leaves its frame at the erase value (the
    model no longer parses). Boot finds it from the slot map's frames, counts the erase the
    record missed, and clears the slot through `SwapManager.clear_slot`."""
    d = with_a1()
    digest = d.install(P["A2"]).digest
    d.arm_power_cuts([PowerCut(1, CutPoint.AFTER)])  # op 1 of the swap: the slot's erase
    with pytest.raises(PowerLoss):
        d.swap(digest, permanent=True)
    assert SMAP.damaged_frames(d.flashes["model"].image_bytes(0, len(B.data))) == [1]
    d.power.disarm()
    d.power_on()
    report = d.boot()
    assert report.cleared_slots == [1] and not report.reverted
    assert any("frame bytes damaged" in e for e in report.errors)
    assert SMAP.damaged_frames(d.model_bytes_now()) == []
    info = SMAP.slots[1]
    assert d.model_bytes_now()[info.offset:info.offset + info.length] == B.data[info.offset:info.offset + info.length]
    assert d.active_adapters()["A"].version == "1.1"
    serves(d, "A1")
    # the factory erase, the interrupted one, the repair: all counted, and persisted
    (sector,) = slot_sectors(d, 1)
    assert d.image.erase_counts[sector] == 3 and d.record.wear[sector] == 3
    assert d.image.persisted == d.image.erase_counts
    d.swap(digest, permanent=True)  # and the slot takes the swap again
    serves(d, "A2")


def test_a_programmer_error_during_boot_propagates_and_is_never_logged(monkeypatch):
    d = with_a1()
    d.update(P["A2"])  # on trial, in slot 1: the next boot reverts and clears slot 1
    previous = d.last_boot
    d.power_cut()
    d.power_on()
    monkeypatch.setattr(model_image, "erase_sectors", lambda part, offset, length: 0)  # a driver bug
    with pytest.raises(UnerasedWriteError):
        d.boot()
    assert not d.booted and d.last_boot is previous  # no report records it as worked around
    monkeypatch.undo()
    report = d.boot()
    assert report.cleared_slots == [1] and not report.errors
    assert d.state()["retired"] == []  # a bug never retires a slot
    serves(d, "A1")


def test_a_store_that_does_not_mount_is_reported_and_the_base_model_still_runs():
    d = with_a1()
    images = d.flash_images()
    images["store"] = bytes(len(images["store"]))  # a wiped card
    c = Device("mcu-qspi", B.data, B.smap, KEYRING, flash_images=images)
    report = c.boot()
    assert any(e.startswith("adapter store:") for e in report.errors)
    assert report.restored["dropped"] == ["A"] and digest_of(P["A1"]) in report.restored["missing"]
    assert c.manager.adapters == [] and c.active_adapters() == {}
    np.testing.assert_array_equal(c.infer(X)[0], golden(B.smap, c.model_bytes_now(), X, {}))


def test_a_record_of_the_wrong_form_is_a_typed_error():
    d = with_a1()
    payload = dict(d.metadata.current.payload)
    payload["trial"] = "maybe"
    d.metadata.commit(payload)
    d.power_cut()
    d.power_on()
    with pytest.raises(MetadataRecordError, match="trial"):
        d.boot()
    assert not d.booted
