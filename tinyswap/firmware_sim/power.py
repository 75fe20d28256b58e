"""One power supply for every flash part of a device: power cuts counted across all of them.

Why: a device such as `mcu-qspi` keeps its model and metadata on QSPI NOR and its adapter
store on an SD card. A real power cut stops both at the same instant, and an MCUboot-style
sweep ("count the N mutating operations of a clean run, then cut before / after each one",
mcu-tools/mcuboot `sim/src/image.rs` `run_perm_with_fails`) must number the operations of the
whole device, not of one part. A `FlashDevice`'s own fault plan counts only its operations, so
the device routes every program and erase through `DomainPartition`s that count them here.

Cut semantics are those of `tinyswap.firmware_sim.flash.CutPoint`: BEFORE (the operation never reaches
the medium), AFTER (it completes, then power is lost), TORN (only a prefix lands; delegated to
the part's own torn-write model by arming it for that one operation, which replaces whatever
fault plan the part had). Whatever the cut, every part is powered off and `PowerLoss` raised.
"""

from __future__ import annotations

from typing import Callable, Iterable

from tinyswap.firmware_sim.errors import PowerLoss
from tinyswap.firmware_sim.flash import CutPoint, FaultPlan, FlashDevice, Partition, PowerCut


class PowerDomain:
    """The flash parts sharing one supply, and the cut plan numbered across all of them."""

    def __init__(self, flashes: Iterable[FlashDevice] = ()) -> None:
        self.flashes: list[FlashDevice] = []
        for f in flashes:
            self.add(f)
        self.mutations = 0  # mutating operations attempted since `arm` (1-based numbering of cuts)
        self._cuts: dict[int, PowerCut] = {}

    def add(self, flash: FlashDevice) -> None:
        if all(f is not flash for f in self.flashes):
            self.flashes.append(flash)

    @property
    def powered(self) -> bool:
        return all(f.powered for f in self.flashes)

    def arm(self, cuts: Iterable[PowerCut] = ()) -> None:
        """Cut power at these mutating operations (numbered from 1 after this call)."""
        self.mutations = 0
        self._cuts = {}
        for c in cuts:
            if c.op in self._cuts:
                raise ValueError(f"two power cuts at operation {c.op}")
            self._cuts[c.op] = c

    def disarm(self) -> None:
        self.arm(())

    def cut(self) -> None:
        """Power is lost now: every part stops."""
        for f in self.flashes:
            f.power_off()

    def power_on(self) -> None:
        for f in self.flashes:
            f.power_on()

    def partition(self, flash: FlashDevice, offset: int, size: int, name: str) -> DomainPartition:
        self.add(flash)
        return DomainPartition(self, flash, offset, size, name)

    def _mutate(self, part: Partition, what: str, op: Callable[[], None]) -> None:
        if not part.flash.powered:
            op()  # the part refuses it with PowerLoss; not an attempt that counts
            return
        self.mutations += 1
        cut = self._cuts.pop(self.mutations, None)
        if cut is not None and cut.when is CutPoint.BEFORE:
            self.cut()
            raise PowerLoss(f"power cut before mutating op {self.mutations} ({what} on {part.name!r})")
        if cut is not None and cut.when is CutPoint.TORN:
            part.flash.arm(FaultPlan(cuts=(PowerCut(1, CutPoint.TORN, cut.keep),)))
        error: Exception | None = None
        try:
            op()
        except PowerLoss:
            self.cut()
            raise
        except Exception as exc:  # a failed operation (bad block, injected failure)
            if cut is None:
                raise
            error = exc  # the cut still happens after it
        finally:
            if cut is not None and cut.when is CutPoint.TORN:
                part.flash.disarm()
        if cut is not None:  # AFTER (a TORN cut raised PowerLoss above)
            self.cut()
            raise PowerLoss(f"power cut after mutating op {self.mutations} ({what} on {part.name!r})") from error


class DomainPartition(Partition):
    """A `Partition` whose programs and erases are numbered by its `PowerDomain`."""

    def __init__(self, domain: PowerDomain, flash: FlashDevice, offset: int, size: int, name: str) -> None:
        super().__init__(flash, offset, size, name)
        self.domain = domain

    def program(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self._check(offset, len(data))
        self.domain._mutate(self, f"program at {offset:#x}", lambda: Partition.program(self, offset, data))

    def erase(self, offset: int, length: int) -> None:
        self._check(offset, length)
        self.domain._mutate(self, f"erase at {offset:#x}", lambda: Partition.erase(self, offset, length))


__all__ = ["DomainPartition", "PowerDomain"]
