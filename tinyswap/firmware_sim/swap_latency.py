"""What a swap costs on each storage configuration, in simulated time, beside its floor.

For every configuration (a device profile, optionally with the model on another medium) a
fresh device is provisioned and booted, one adapter is installed and made live, then a second
version arrives: we time the OTA install (store write), the hot swap (slot write, read-back
verification, metadata commit), a rollback (a gate flip plus a metadata commit) and a switch
between two resident adapters per request (gates only: no flash operation at all).

The floor of a swap is what the medium needs at the very least to hold the new slot: erase
the slot's sectors and program its bytes page by page (typical datasheet timings, the same
`storage.op_seconds` the simulator charges), with no verification and no metadata. The ratio
simulated / floor is the price of the safety protocol. Where the slot lives in RAM (the model
was copied to RAM at boot) there is no flash floor; the swap is then charged as a RAM copy.

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
from tinyswap.firmware_sim.profiles import DEVICES
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
    swap_ms: float
    swap_floor_ms: float | None  # None: the slot lives in RAM
    rollback_ms: float
    per_request_switch_flash_ops: int
    slot_bytes: int

    @property
    def swap_over_floor(self) -> float | None:
        return None if not self.swap_floor_ms else self.swap_ms / self.swap_floor_ms


def swap_floor_seconds(slot_offset: int, slot_length: int, medium_name: str, sector_sizes: list[int],
                       worst: bool = False) -> float:
    """Erase the sectors under the slot range and program it page by page: nothing else."""
    medium = PROFILES[medium_name]
    pages = math.ceil(slot_length / medium.page_size)
    erase = FlashOp(OpKind.ERASE, slot_offset, slot_length, erased=tuple(sector_sizes))
    program = FlashOp(OpKind.PROGRAM, slot_offset, slot_length, pages=pages)
    return op_seconds(erase, medium, worst) + op_seconds(program, medium, worst)


def measure(model: bytes, slotmap: Mapping[str, Any], keyring: Keyring, v1: bytes, v2: bytes, other: bytes,
            configurations: tuple[tuple[str, str, bool], ...] = CONFIGURATIONS) -> list[SwapLatency]:
    """`v1` and `v2` are two versions of one adapter, `other` a second adapter (all packages)."""
    smap = SlotMap.from_json(dict(slotmap))
    results = []
    for label, device_name, worst in configurations:
        profile = DEVICES[device_name]
        device = Device(profile, model, slotmap, keyring, record_ops=False, worst=worst)
        device.provision()
        device.boot()
        device.update(v1, permanent=True)
        device.update(other, permanent=True)
        tl = device.timeline
        start = tl.now
        device.install(v2)
        install = tl.now - start
        start = tl.now
        device.swap(parse_package(v2).content_digest, permanent=True)
        swap = tl.now - start
        start = tl.now
        device.rollback(parse_package(v1).name, permanent=True)
        rollback = tl.now - start
        x = _zero_rows(device)
        device.infer(x, adapters=parse_package(other).name)  # make both resident again
        before = device.mutations
        device.infer(x, per_row=[parse_package(v1).name, parse_package(other).name])
        switch_ops = device.mutations - before
        slot = smap.slots[0]
        floor = None
        if profile.model_placement == "xip":
            geometry = device.flashes["model"].geometry
            base = device.layout.model.offset
            sectors = [geometry.sectors[i] for i in geometry.sectors_in(base + slot.offset, slot.length)]
            floor = swap_floor_seconds(base + slot.offset, slot.length, profile.model_storage.name, sectors, worst)
        results.append(SwapLatency(label, device_name, profile.model_storage.name, device.store_storage.name,
                                   install * 1e3, swap * 1e3, None if floor is None else floor * 1e3,
                                   rollback * 1e3, switch_ops, slot.length))
    return results


def _zero_rows(device: Device) -> Any:
    import numpy as np

    from tinyswap.reader import read_model

    graph = read_model(device.model).main
    x = graph.tensors[graph.inputs[0]]
    return np.zeros((2, *x.shape[1:]), np.int8)


def as_rows(results: list[SwapLatency]) -> list[dict[str, Any]]:
    return [{**asdict(r), "swap_over_floor": r.swap_over_floor} for r in results]


def markdown(results: list[SwapLatency]) -> str:
    lines = ["| configuration | install ms | hot swap ms | swap floor ms | swap / floor | rollback ms | "
             "per-request switch |", "|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        floor = "RAM" if r.swap_floor_ms is None else f"{r.swap_floor_ms:.2f}"
        ratio = "-" if r.swap_over_floor is None else f"{r.swap_over_floor:.2f}"
        lines.append(f"| {r.configuration} | {r.install_ms:.2f} | {r.swap_ms:.2f} | {floor} | {ratio} | "
                     f"{r.rollback_ms:.2f} | {r.per_request_switch_flash_ops} flash ops |")
    return "\n".join(lines)


__all__ = ["CONFIGURATIONS", "SwapLatency", "as_rows", "markdown", "measure", "swap_floor_seconds"]
