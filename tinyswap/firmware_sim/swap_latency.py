"""What a swap costs on each storage configuration, in simulated time, beside its floor.

For every configuration (a device profile, optionally with the model on another medium) a
fresh device is provisioned and booted, one adapter is installed and made live, then a second
version arrives: we time the OTA install (store write), the device's idle step (`idle.py`:
the metadata areas and the slot the swap will take erased in advance, off the request path),
the hot swap (slot write, read-back verification, metadata commit), a rollback (a gate flip
plus a metadata commit, after another idle step) and a switch between two resident adapters
per request (gates only: no flash operation at all). The same swap is also timed on a second
device that never ran the idle step: it still works, erasing on its request path (the trace
says so), and that is what the swap cost before the idle step existed.

The floor of a swap is what the medium needs at the very least to hold the new slot: erase
the slot's sectors and program its bytes page by page (typical datasheet timings, the same
`storage.op_seconds` the simulator charges), with no verification and no metadata. The ratio
simulated / floor is the price of the safety protocol on the request path; with the idle step
it can fall below 1, because the erase then happened before the request. The program-only
floor (the slot's pages alone, its sectors erased beforehand) is shown beside it: the ratio to
it is the price of the read-back and the record. Where the slot lives in RAM (the model was
copied to RAM at boot) there is no flash floor; the swap is then charged as a RAM copy plus
the record's commit.

This stays in the simulator rather than in `tinyswap.benchmarks`: every figure is simulated time
from the device model's own cost functions (deterministic, independent of the host), not a
wall-clock measurement; it needs nothing but the simulator and the runtime; and `tinyswap demo`
reports it too, which must not depend on the benchmarks. The benchmark suite only prints it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from tinyswap.firmware_sim.device import Device
from tinyswap.firmware_sim.flash import FlashOp, OpKind
from tinyswap.firmware_sim.profiles import DEVICES, DeviceProfile
from tinyswap.firmware_sim.storage import PROFILES, op_seconds
from tinyswap.package import Keyring, parse_package
from tinyswap.slotmap import SlotMap

#: (label, device profile, datasheet maximum timings instead of typical ones).
CONFIGURATIONS: tuple[tuple[str, str, bool], ...] = (
    ("mcu-qspi: model XIP on QSPI NOR (W25Q128JV), store on SD (SPI)", "mcu-qspi", False),
    ("mcu-qspi, datasheet maximum timings", "mcu-qspi", True),
    ("mcu-ram: model copied to PSRAM, store on QSPI NOR", "mcu-ram", False),
    ("gateway: model in DRAM, store on NVMe", "gateway", False),
)


@dataclass(frozen=True)
class SwapLatency:
    configuration: str
    device: str
    model_medium: str
    store_medium: str
    install_ms: float
    idle_ms: float  # the idle step before the swap (pre-erase), off the request path
    swap_ms: float  # the hot swap's request path after the idle step
    swap_erases: int  # erase commands on that path (0: it only programs)
    swap_floor_ms: float | None  # None: the slot lives in RAM
    program_floor_ms: float | None  # programming the slot alone (sectors erased beforehand)
    swap_without_idle_ms: float  # the same swap on a device that never ran the idle step
    swap_without_idle_erases: int
    rollback_ms: float
    per_request_switch_flash_ops: int
    slot_bytes: int

    @property
    def swap_over_floor(self) -> float | None:
        return None if not self.swap_floor_ms else self.swap_ms / self.swap_floor_ms

    @property
    def swap_over_program_floor(self) -> float | None:
        return None if not self.program_floor_ms else self.swap_ms / self.program_floor_ms

    @property
    def without_idle_over_floor(self) -> float | None:
        return None if not self.swap_floor_ms else self.swap_without_idle_ms / self.swap_floor_ms


def swap_floor_seconds(slot_offset: int, slot_length: int, medium_name: str, sector_sizes: list[int],
                       worst: bool = False) -> float:
    """Erase the sectors under the slot range and program it page by page: nothing else."""
    erase = FlashOp(OpKind.ERASE, slot_offset, slot_length, erased=tuple(sector_sizes))
    return op_seconds(erase, PROFILES[medium_name], worst) + program_seconds(slot_length, medium_name, worst)


def program_seconds(slot_length: int, medium_name: str, worst: bool = False) -> float:
    """Program the slot range page by page into erased sectors: the floor of a pre-erased swap."""
    medium = PROFILES[medium_name]
    pages = math.ceil(slot_length / medium.page_size)
    return op_seconds(FlashOp(OpKind.PROGRAM, 0, slot_length, pages=pages), medium, worst)


@dataclass(frozen=True)
class _Timed:
    install: float
    idle: float
    swap: float
    swap_erases: int
    rollback: float
    switch_ops: int


def _erase_ops(device: Device) -> int:
    return sum(f.snapshot().erase_ops for f in device.flashes.values())


def _run(profile: DeviceProfile, worst: bool, model: bytes, slotmap: Mapping[str, Any], keyring: Keyring,
         v1: bytes, v2: bytes, other: bytes, idle: bool) -> tuple[Device, _Timed]:
    device = Device(profile, model, slotmap, keyring, record_ops=False, worst=worst)
    device.provision()
    device.boot()
    device.update(v1, permanent=True)
    device.update(other, permanent=True)
    name = parse_package(v1).name
    tl = device.timeline
    start = tl.now
    device.install(v2)
    install = tl.now - start
    start = tl.now
    if idle:
        device.idle(prepare_for=name)
    idle_s = tl.now - start
    start, erases = tl.now, _erase_ops(device)
    device.swap(parse_package(v2).content_digest, permanent=True)
    swap, swap_erases = tl.now - start, _erase_ops(device) - erases
    if idle:
        device.idle()
    start = tl.now
    device.rollback(name, permanent=True)
    rollback = tl.now - start
    x = _zero_rows(device)
    device.infer(x, adapters=parse_package(other).name)  # make both resident again
    before = device.mutations
    device.infer(x, per_row=[name, parse_package(other).name])
    switch_ops = device.mutations - before
    return device, _Timed(install, idle_s, swap, swap_erases, rollback, switch_ops)


def measure(model: bytes, slotmap: Mapping[str, Any], keyring: Keyring, v1: bytes, v2: bytes, other: bytes,
            configurations: tuple[tuple[str, str, bool], ...] = CONFIGURATIONS) -> list[SwapLatency]:
    """`v1` and `v2` are two versions of one adapter, `other` a second adapter (all packages)."""
    smap = SlotMap.from_json(dict(slotmap))
    results = []
    for label, device_name, worst in configurations:
        profile = DEVICES[device_name]
        device, timed = _run(profile, worst, model, slotmap, keyring, v1, v2, other, idle=True)
        _, without = _run(profile, worst, model, slotmap, keyring, v1, v2, other, idle=False)
        slot = smap.slots[0]
        floor = program = None
        if profile.model_placement == "xip":
            geometry = device.flashes["model"].geometry
            base = device.layout.model.offset
            sectors = [geometry.sectors[i] for i in geometry.sectors_in(base + slot.offset, slot.length)]
            medium = profile.model_storage.name
            floor = swap_floor_seconds(base + slot.offset, slot.length, medium, sectors, worst)
            program = program_seconds(slot.length, medium, worst)
        results.append(SwapLatency(label, device_name, profile.model_storage.name, device.store_storage.name,
                                   timed.install * 1e3, timed.idle * 1e3, timed.swap * 1e3, timed.swap_erases,
                                   None if floor is None else floor * 1e3, None if program is None else program * 1e3,
                                   without.swap * 1e3, without.swap_erases, timed.rollback * 1e3, timed.switch_ops,
                                   slot.length))
    return results


def _zero_rows(device: Device) -> Any:
    import numpy as np

    from tinyswap.reader import read_model

    graph = read_model(device.model).main
    x = graph.tensors[graph.inputs[0]]
    return np.zeros((2, *x.shape[1:]), np.int8)


def as_rows(results: list[SwapLatency]) -> list[dict[str, Any]]:
    return [{**asdict(r), "swap_over_floor": r.swap_over_floor, "swap_over_program_floor": r.swap_over_program_floor,
             "without_idle_over_floor": r.without_idle_over_floor} for r in results]


def _ms(value: float | None, ram: str = "RAM") -> str:
    return ram if value is None else f"{value:.2f}"


def markdown(results: list[SwapLatency]) -> str:
    lines = ["| configuration | install ms | idle step ms (pre-erase) | hot swap ms | erases on swap path | "
             "swap floor ms (erase + program) | swap / floor | program-only floor ms | swap / program floor | "
             "without idle step: hot swap ms (erases), / floor | rollback ms | per-request switch |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in results:
        ratio = "-" if r.swap_over_floor is None else f"{r.swap_over_floor:.2f}"
        program_ratio = "-" if r.swap_over_program_floor is None else f"{r.swap_over_program_floor:.2f}"
        without = f"{r.swap_without_idle_ms:.2f} ({r.swap_without_idle_erases})"
        if r.without_idle_over_floor is not None:
            without += f", {r.without_idle_over_floor:.2f}"
        lines.append(f"| {r.configuration} | {r.install_ms:.2f} | {r.idle_ms:.2f} | {r.swap_ms:.2f} | {r.swap_erases} | "
                     f"{_ms(r.swap_floor_ms)} | {ratio} | {_ms(r.program_floor_ms)} | {program_ratio} | {without} | "
                     f"{r.rollback_ms:.2f} | {r.per_request_switch_flash_ops} flash ops |")
    return "\n".join(lines)


__all__ = ["CONFIGURATIONS", "SwapLatency", "as_rows", "markdown", "measure", "program_seconds", "swap_floor_seconds"]
