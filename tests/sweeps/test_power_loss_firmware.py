"""Sweep: power cuts against the device C code (`tinyswap_fw.c` through the cffi harness), on
the flash geometries of the simulated rigs, at every flash operation of each C operation:
install (permanent), install as a trial, confirm, the boot that reverts a trial, and clearing a
slot (delete). Each cut comes before the operation, after it, or in the middle of it (a torn
write). After the cut the device reboots on a fresh C context over the surviving flash:

* the boot succeeds; the model file still matches its slot map (base bytes and frames intact);
* every slot is either exactly the image the Python swap path writes for the package the record
  names there, or exactly blank (zeros and frame) when the record says empty: never a mix, so
  inference equals TFLite Micro for the state the record reports (the byte-identical images are
  compared with TFLite Micro in tests/tinyswap/firmware_sim/test_c_harness.py);
* the outcome is one the operation allows (a trial never survives a reboot unconfirmed; a
  cleared slot is old or blank, and so on);
* repeating the operation on the recovered device converges.

CI runs a seeded sample of cut points per geometry and operation; `TINYSWAP_FULL=1` runs every
cut point of every combination.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import pytest

from tinyswap.export.fw_host import FwHost, FwStatus, Geometry, compiler
from tinyswap.firmware_sim.flash import FlashDevice, FlashGeometry, Partition
from tinyswap.firmware_sim.power import CutPoint, PowerCut, PowerSupply
from tinyswap.image import RamImage
from tinyswap.package import parse_package
from tinyswap.slotmap import SlotMap
from tinyswap.swap.slot_bytes import SlotBytes

from tests.adapter_cases import KEY
from tests.conftest import FULL
from tests.tinyswap.firmware_sim.device_cases import bundle_for, packages_for

pytestmark = pytest.mark.skipif(compiler() is None, reason="no C compiler (gcc or cc) on this host: the device C "
                                "code cannot be built, so it cannot be run under the simulator")

# (model sector, erase value, program unit): the rigs' flash: QSPI NOR 4 KB with 1- and 8-byte
# program units (nor4k, qspi+sd, and ram-nor4k, whose PSRAM copy is written the same way),
# SAM-style 8 KB internal flash with 4- and 16-byte units, and the STM32F4's mixed map (the model
# in its 16 KB sectors, the record in two of its 128 KB sectors).
GEOMETRIES = [(4096, 0xFF, 1), (4096, 0x00, 8), (8192, 0xFF, 4), (8192, 0x00, 16), (16384, 0xFF, 4),
              (16384, 0x00, 16)]
RECORD_SECTOR = {16384: 128 * 1024}  # else the model's sector size
OPERATIONS = ["install", "install-trial", "confirm", "revert", "clear"]
CI_CUTS = 4  # cut points per geometry, operation and cut kind in the default run
WHENS = [CutPoint.BEFORE, CutPoint.AFTER, CutPoint.TORN]


@dataclass
class _Parts:
    """The model's and the record's flash parts, cut as one (one power supply)."""

    model: FlashDevice
    record: FlashDevice
    supply: PowerSupply

    def image_bytes(self, start: int = 0, length: int | None = None) -> bytes:
        data = self.model.image_bytes() + self.record.image_bytes()
        return data[start:] if length is None else data[start : start + length]

    def arm(self, op: int, when: CutPoint) -> None:
        self.supply.arm([PowerCut(op, when)])


@dataclass
class Rig:
    flash: _Parts
    host: FwHost
    smap: SlotMap


@lru_cache(maxsize=None)
def _bundle(sector: int) -> tuple[SlotMap, bytes, dict[str, bytes]]:
    b = bundle_for(sector)
    return SlotMap.from_json(b.smap), b.data, packages_for(sector)


def _rig(sector: int, ev: int, unit: int, image: bytes | None = None) -> Rig:
    smap, data, _ = _bundle(sector)
    model_sectors = -(-smap.model_bytes // sector)
    record_sector = RECORD_SECTOR.get(sector, sector)
    # One part per partition: each area has its own uniform sectors (as the STM32F4 map's regions).
    g_model = FlashGeometry.uniform(sector, model_sectors, erase_value=ev, write_align=unit, name="fw-model")
    g_record = FlashGeometry.uniform(record_sector, 2, erase_value=ev, write_align=unit, name="fw-record")
    if image is None:
        raw = bytearray([ev]) * (g_model.size + g_record.size)
        raw[: len(data)] = data
        image = bytes(raw)
    supply = PowerSupply()  # both parts on one supply: operations are numbered across them
    flash = _Parts(FlashDevice(g_model, image=image[: g_model.size], supply=supply),
                   FlashDevice(g_record, image=image[g_model.size :], supply=supply), supply)
    model = Partition(flash.model, 0, g_model.size, "model")
    record = Partition(flash.record, 0, g_record.size, "record")
    host = FwHost(smap, model, Geometry(model.size, sector, unit, ev), record,
                  Geometry(record.size, record_sector, unit, ev), [KEY.public_key()])
    assert host.init_status == FwStatus.TSFW_OK, host.init_status
    return Rig(flash, host, smap)


def _reboot(rig: Rig, sector: int, ev: int, unit: int) -> Rig:
    return _rig(sector, ev, unit, rig.flash.image_bytes())


def _start(sector: int, ev: int, unit: int, op: str) -> Rig:
    """A booted device with A1 confirmed in slot 0 and, for confirm and revert, B1 on trial in
    slot 1 (for revert, powered off there: the operation is the next boot)."""
    _, _, p = _bundle(sector)
    rig = _rig(sector, ev, unit)
    assert rig.host.format() == FwStatus.TSFW_OK and rig.host.boot()[0] == FwStatus.TSFW_OK
    assert rig.host.install(p["A1"], 0)[0] == FwStatus.TSFW_OK
    if op in ("confirm", "revert"):
        assert rig.host.install(p["B1"], 1, trial=True)[0] == FwStatus.TSFW_OK
    if op == "revert":
        rig = _reboot(rig, sector, ev, unit)
    return rig


def _operation(op: str, p: dict[str, bytes]) -> Callable[[FwHost], FwStatus]:
    return {
        "install": lambda h: h.install(p["B1"], 1)[0],
        "install-trial": lambda h: h.install(p["B1"], 1, trial=True)[0],
        "confirm": lambda h: h.confirm(),
        "revert": lambda h: h.boot()[0],
        "clear": lambda h: h.clear_slot(0),
    }[op]


# The target slot's states each operation may leave after a cut and a reboot.
ALLOWED = {
    "install": {1: {"blank", "B1"}},
    "install-trial": {1: {"blank"}},  # a trial never survives a reboot unconfirmed
    "confirm": {1: {"blank", "B1"}},
    "revert": {1: {"blank"}},
    "clear": {0: {"A1", "blank"}},
}


def _state(rig: Rig, sector: int, p: dict[str, bytes]) -> dict[int, str]:
    """Each slot's state after boot: the package the record names (its bytes checked against
    the Python swap path's), or blank (checked against zeros + frame)."""
    smap, _, _ = _bundle(sector)
    status, _ = rig.host.boot()
    assert status == FwStatus.TSFW_OK, status
    image = rig.flash.image_bytes(0, smap.model_bytes)
    smap.check_model(image)  # base bytes and frames intact
    by_name = {parse_package(pkg).name + "@" + parse_package(pkg).metadata["version"]: label for label, pkg in p.items()}
    states = {}
    for s in range(smap.num_slots):
        info = smap.slots[s]
        got = image[info.offset : info.offset + info.length]
        _, entry = rig.host.slot_entry(s)
        if entry.installed:
            label = by_name[f"{entry.name}@{entry.version}"]
            want = RamImage(bytearray(image))
            SlotBytes(want, smap).write(s, parse_package(p[label]))
            assert got == bytes(want.buffer[info.offset : info.offset + info.length]), \
                f"slot {s}: the record says {label}, the bytes differ"
            states[s] = label
        else:
            assert got == info.template(), f"slot {s}: the record says empty, the bytes are not blank"
            states[s] = "blank"
    return states


def _clean_count(sector: int, ev: int, unit: int, op: str) -> int:
    _, _, p = _bundle(sector)
    rig = _start(sector, ev, unit, op)
    before = rig.host.flash_ops
    assert _operation(op, p)(rig.host) == FwStatus.TSFW_OK
    return rig.host.flash_ops - before


def _cuts(total: int, seed: int) -> list[int]:
    every = list(range(1, total + 2))
    return every if FULL else sorted(random.Random(seed).sample(every, min(CI_CUTS, len(every))))


@pytest.mark.parametrize("op", OPERATIONS)
@pytest.mark.parametrize("sector,ev,unit", GEOMETRIES)
def test_a_cut_at_any_flash_operation_leaves_every_slot_as_its_record_says(sector, ev, unit, op):
    _, _, p = _bundle(sector)
    total = _clean_count(sector, ev, unit, op)
    assert total > 0, f"{op} wrote nothing"
    outcomes: dict[str, int] = {}
    for when in WHENS:
        for cut in _cuts(total, hash((sector, ev, unit, op, when.value)) & 0xFFFF):
            rig = _start(sector, ev, unit, op)
            rig.flash.arm(cut, when)
            status = _operation(op, p)(rig.host)
            assert status in (FwStatus.TSFW_OK, FwStatus.TSFW_E_FLASH), status
            after = _reboot(rig, sector, ev, unit)
            states = _state(after, sector, p)
            target, allowed = next(iter(ALLOWED[op].items()))
            assert states[target] in allowed, (when, cut, states)
            assert states[0 if target == 1 else 1] == ("A1" if target == 1 else "blank"), (when, cut, states)
            outcomes[states[target]] = outcomes.get(states[target], 0) + 1
            # The recovered device takes the operation again (or has nothing left to do).
            if op in ("install", "install-trial"):
                assert after.host.install(p["B1"], 1)[0] in (FwStatus.TSFW_OK, FwStatus.TSFW_E_ROLLBACK)
                assert _state(_reboot(after, sector, ev, unit), sector, p)[1] == "B1"
            elif op == "clear":
                assert after.host.clear_slot(0) == FwStatus.TSFW_OK
                assert _state(_reboot(after, sector, ev, unit), sector, p)[0] == "blank"
    print(f"{sector} B sectors, erase {ev:#04x}, unit {unit}, {op}: {total} flash operations, outcomes {outcomes}")
