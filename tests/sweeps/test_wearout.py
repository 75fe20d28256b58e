"""Wear-out: a tiny device whose sectors endure 10 erase cycles, under each of littlefs's five
bad-block behaviours (emubd PROGERROR, ERASEERROR, READERROR, PROGNOOP, ERASENOOP).

Swaps keep coming until the slots, the metadata areas (and possibly the store) wear out. Every
failure must be a typed `TinySwapError`; after every power cycle the device boots the last
state it reported as committed, and inference equals TFLite Micro for it.
"""

from __future__ import annotations

import pytest

from tinyswap.firmware_sim.device import Device
from tinyswap.firmware_sim.flash import KIB, BadBlock, FlashGeometry
from tinyswap.firmware_sim.storage import W25Q128JV
from tinyswap.errors import TinySwapError

from tests.adapter_cases import package, slot_holding
from tests.tinyswap.firmware_sim.device_cases import KEYRING, bundle_for, golden, inputs

B = bundle_for(4096)
X = inputs(2)
VERSIONS = {seq: package(B.smap, 500 + seq, "A", seq) for seq in range(1, 31)}


def tiny(mode: BadBlock, images=None) -> Device:
    g = FlashGeometry.uniform(4 * KIB, 7 + 2 + 64, erase_cycles=10, name="tiny-nor")
    return Device("mcu-qspi", B.data, B.smap, KEYRING, model_geometry=g, model_storage=W25Q128JV,
                  shared_store=True, store_bytes=256 * KIB, badblock=mode, store_block_cycles=5,
                  record_ops=False, flash_images=images)


def logical(d: Device) -> tuple:
    st = d.state()
    return repr(st["adapters"]), repr(st["last_sequence"]), repr(d.status()["active"])


def check_serving(d: Device) -> None:
    a = d.active_adapters()["A"]
    image = d.model_bytes_now()
    slot = slot_holding(B.smap, image, VERSIONS[a.sequence])
    assert slot is not None and slot == a.slot
    assert (d.infer(X)[0] == golden(B.smap, image, X, {slot: 1.0})).all()


@pytest.mark.parametrize("mode", list(BadBlock), ids=[m.value for m in BadBlock])
def test_a_worn_out_device_reports_typed_errors_and_boots_its_last_good_state(mode):
    d = tiny(mode)
    d.provision()
    d.boot()
    d.update(VERSIONS[1], permanent=True)
    d.activate("A", permanent=True)
    good = logical(d)
    errors: list[str] = []
    for seq in range(2, 31):
        try:
            d.update(VERSIONS[seq], permanent=True)
            good = logical(d)
        except TinySwapError as exc:  # anything else fails the test
            errors.append(type(exc).__name__)
            if not d.booted:  # never expected, but a device must come back
                d.power_on()
                d.boot()
        if seq % 5 == 0:  # power cycles along the way
            d.power_cut()
            d.power_on()
            d.boot()
            assert logical(d) == good, f"after {seq}: booted state differs from the last committed one"
            check_serving(d)
    assert errors, "a 10-cycle device should wear out within 30 swaps"
    assert logical(d) == good
    # Finally, on a fresh device made from the worn flash (no RAM state at all).
    c = tiny(mode, images=d.flash_images())
    for s in range(c.flashes["model"].geometry.sector_count):  # the wear travels with the part
        c.flashes["model"].set_wear(s, d.flashes["model"].wear(s))
    c.boot()
    assert logical(c) == good
    check_serving(c)
    print(f"\n{mode.value}: {len(errors)} typed errors {sorted(set(errors))}; last good A v{c.active_adapters()['A'].sequence}")
