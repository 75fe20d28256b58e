"""Model images a `SwapManager` writes slots into on the simulated device.

`FlashModelImage` (XIP, the `mcu-qspi` placement): the interpreter reads the model in place
from the model partition, through the flash's live view, so a slot's new bytes are what the
next `invoke()` uses, as on a Cortex-M executing from memory-mapped QSPI NOR. A slot write
erases the slot's sectors and programs its bytes; it must cover whole sectors, because an
erase always clears a whole sector: a slot range that shares a sector with base-model bytes
(a bundle compiled with 16-byte slot alignment on a 4 KB-sector part) would erase the base
model, so such a range is refused before anything is touched.

Reads (the manager's read-back verification, the boot's digest checks) go through the same
memory-mapped view the interpreter executes from: what is verified is exactly what will run.
They are charged to the timeline as in-place reads at the medium's read bandwidth, not as
flash commands (the simulator's READERROR bad-block mode applies to read commands only).

A slot write is whatever the swap manager hands over: the slot's whole aligned range, frame
bytes (the flatbuffer length prefixes between the slot tensors, owned by the slot map) and
tensors alike, so the image never rebuilds a write; it erases and programs exactly that.

Only hardware faults of the flash (worn-out sectors, injected failures) become
`SlotWriteError`s; `PowerLoss` passes through, and a `FlashMisuseError` (a driver bug: an
unerased or misaligned program) propagates as itself, so that no caller can mistake a bug
for wear and retire a good slot.

`RamModelImage` (the `mcu-ram` / `gateway` placement): the model is copied from its partition
into RAM at boot and slots are written in RAM only; the flash copy is never written, so a
slot's contents do not survive a reboot and the device rewrites them from the adapter store.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

from tinyswap.firmware_sim.errors import (
    FlashError,
    PowerLoss,
    SlotAlignmentError,
    SlotWornError,
    SlotWriteError,
    WearNotRecordedError,
)
from tinyswap.firmware_sim.flash import FlashOp, OpKind, Partition
from tinyswap.firmware_sim.flashio import erase_sectors, pad_to_unit, program_runs, split_units
from tinyswap.firmware_sim.timeline import Timeline
from tinyswap.firmware_sim.storage import StorageProfile, op_seconds
from tinyswap.image import RamImage
from tinyswap.slotmap import SlotMap


@dataclass(frozen=True)
class _Prepared:
    """A pre-erased range: the non-tensor bytes programmed, the tensor runs still erased."""

    blank: bytes
    frame_runs: tuple[tuple[int, int], ...]
    tensor_runs: tuple[tuple[int, int], ...]

    def matches(self, data: bytes) -> bool:
        """`data` agrees with what is programmed already (a write keeps the frame as it is)."""
        return len(data) == len(self.blank) and all(data[a:b] == self.blank[a:b] for a, b in self.frame_runs)


class FlashModelImage:
    """The model read in place from a flash partition; slot writes erase and program sectors.

    partition: the model partition (its first `length` bytes are the model file).
    timeline / storage: where in-place reads are charged (optional).
    erase_budget: erases a sector may take before a write into it is refused (None: no limit);
        erase_counts: the firmware's own count per sector index (persisted by the device).

    Why an erase budget: a worn NOR sector that still erases but no longer programs (littlefs
    emubd PROGERROR / PROGNOOP) would lose the slot's frame bytes and leave a model that no
    longer parses. Firmware cannot read wear from the part, so it counts its own erases against
    the datasheet endurance and retires the slot first (`SlotWornError`, nothing touched).
    """

    def __init__(self, partition: Partition, length: int, *, timeline: Timeline | None = None,
                 storage: StorageProfile | None = None, erase_budget: int | None = None,
                 erase_counts: Mapping[int, int] | None = None) -> None:
        if not 0 < length <= partition.size:
            raise SlotAlignmentError(
                f"a {length}-byte model does not fit partition {partition.name!r} of {partition.size} bytes")
        self.partition = partition
        self.length = length
        self._view = partition.view(0, length)  # zero copy: later programs show through
        self._timeline = timeline
        self._storage = storage
        self.erase_budget = erase_budget
        self.erase_counts: dict[int, int] = dict(erase_counts or {})
        self.persisted: dict[int, int] = dict(self.erase_counts)  # what the metadata records
        self.writes = 0
        self.bytes_written = 0
        self._repairing = False
        # Pre-erase (the device's idle step): ranges erased in this power cycle, by offset, and
        # the offsets whose range holds `blank` (frame programmed, tensors erased) as far as this
        # device knows; `erases_on_write` counts writes that had to erase first.
        self._prepared: dict[int, _Prepared] = {}
        self.blank: set[int] = set()
        self.erases_on_write = 0

    @property
    def buffer(self) -> memoryview:
        return self._view

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        self._charge_read(length)
        return bytes(self._view[offset:offset + length])

    def check_range(self, offset: int, length: int) -> None:
        """Refuse a write range that does not start and end on sector boundaries."""
        self._check(offset, length)
        g = self.partition.geometry
        start = self.partition.absolute(offset)
        if length <= 0 or not (g.is_sector_boundary(start) and g.is_sector_boundary(start + length)):
            touched = sorted(set(g.sectors[s] for s in g.sectors_in(start, max(length, 1))))
            raise SlotAlignmentError(
                f"slot range [{offset:#x}, {offset + length:#x}) of the model image is not aligned to the "
                f"{'/'.join(str(s) for s in touched)}-byte sectors of {g.name}: erasing it would erase "
                f"base-model bytes (compile the bundle with alignment >= the sector size)")

    def check_slots(self, slotmap: SlotMap) -> None:
        """Every slot of the bundle can be rewritten without touching the base model."""
        for info in slotmap.slots:
            self.check_range(info.offset, info.length)

    def mark_persisted(self) -> None:
        """The device committed the current erase counts to its metadata."""
        self.persisted = dict(self.erase_counts)

    def note_interrupted_erase(self, offset: int, length: int) -> None:
        """Count an erase the metadata missed (found at boot: bytes differ from the record)."""
        g = self.partition.geometry
        for s in g.sectors_in(self.partition.absolute(offset), length):
            self.erase_counts[s] = self.erase_counts.get(s, 0) + 1

    @contextlib.contextmanager
    def repairing(self) -> Iterator[None]:
        """Boot-time repair of slots: writes are allowed although a sector's last erase is not
        yet recorded in the metadata (a slot whose frame an interrupted write damaged must be
        rewritten for the model to parse at all); the erase budget still holds."""
        self._repairing = True
        try:
            yield
        finally:
            self._repairing = False

    def write(self, offset: int, data: bytes) -> None:
        """Program `data` into [offset, offset + len(data)): into a range `pre_erase` prepared in
        this power cycle, only the tensor bytes are programmed; otherwise its sectors are erased
        first (counted in `erases_on_write` and stated in the trace)."""
        data = bytes(data)
        self.check_range(offset, len(data))
        prepared = self._prepared.pop(offset, None)
        self.blank.discard(offset)  # from here on the range holds what this write leaves
        if prepared is not None and prepared.matches(data):
            self._program(offset, data, prepared.tensor_runs)
        else:
            g = self.partition.geometry
            sectors = self._erase(offset, len(data))
            if not g.managed:
                self.erases_on_write += 1
                if self._timeline is not None:
                    self._timeline.instant("erase (no pre-erased sector)", cat="flash", offset=offset,
                                           sectors=len(sectors), erases_on_write=self.erases_on_write)
            self._program(offset, data, [(0, len(data))])
        self.writes += 1
        self.bytes_written += len(data)

    def pre_erase(self, offset: int, blank: bytes, tensor_spans: Sequence[tuple[int, int]]) -> bool:
        """Idle time: erase the range's sectors and program its non-tensor bytes from `blank`
        (the slot's frame and zeros), leaving the tensor bytes erased, so that the next `write`
        of this range programs only. False, with nothing touched, on managed media (a write
        never erases there) or when a write unit would hold both tensor and non-tensor bytes
        (they could not be programmed at different times). The erase counts against the wear
        budget exactly as a write's does; the range is trusted as erased in this power cycle
        only (`blank` lists it across reboots, as the device records it, but a boot cannot tell
        an erased unit from one programmed with the erase value)."""
        g = self.partition.geometry
        self.check_range(offset, len(blank))
        split = split_units(len(blank), list(tensor_spans), g.write_align, self.partition.absolute(offset))
        if g.managed or split is None:
            return False
        if offset in self._prepared and self._prepared[offset].blank == blank:
            return True  # erased in this power cycle and not written since
        tensor_runs, frame_runs = split
        self._prepared.pop(offset, None)
        self.blank.discard(offset)
        self._erase(offset, len(blank))
        self._program(offset, blank, frame_runs)
        self._prepared[offset] = _Prepared(bytes(blank), tuple(frame_runs), tuple(tensor_runs))
        self.blank.add(offset)
        return True

    def reads_blank(self, offset: int, blank: bytes, tensor_spans: Sequence[tuple[int, int]]) -> bool:
        """Does the range hold what `pre_erase` leaves: `blank` outside the tensors, the erase
        value inside them? (Boot's check of a range the record lists as pre-erased.)"""
        split = split_units(len(blank), list(tensor_spans), 1)
        if split is None:
            return False
        tensor_runs, frame_runs = split
        data = self.read(offset, len(blank))
        erased = bytes([self.partition.geometry.erase_value])
        return (all(data[a:b] == blank[a:b] for a, b in frame_runs)
                and all(data[a:b] == erased * (b - a) for a, b in tensor_runs))

    @property
    def prepared(self) -> set[int]:
        """Offsets of ranges erased by `pre_erase` in this power cycle and not written since."""
        return set(self._prepared)

    def _erase(self, offset: int, length: int) -> list[int]:
        """Erase the range's sectors after the wear checks (counted before the erase: a cut after
        it must not under-count). Returns the sector indices."""
        g = self.partition.geometry
        sectors = list(g.sectors_in(self.partition.absolute(offset), length))
        if self.erase_budget is not None and not g.managed:
            worn = [s for s in sectors if self.erase_counts.get(s, 0) >= self.erase_budget]
            if worn:
                raise SlotWornError(f"slot range [{offset:#x}, {offset + length:#x}): sector(s) {worn} used their "
                                    f"budget of {self.erase_budget} erases; the slot is retired")
            pending = [s for s in sectors if self.erase_counts.get(s, 0) > self.persisted.get(s, 0)]
            if pending and not self._repairing:
                raise WearNotRecordedError(
                    f"slot range [{offset:#x}, {offset + length:#x}): the last erase of sector(s) {pending} is not "
                    f"recorded in the metadata yet (its commit failed); not erasing again")
        try:
            if not g.managed:
                for s in sectors:
                    self.erase_counts[s] = self.erase_counts.get(s, 0) + 1
            erase_sectors(self.partition, offset, length)
        except PowerLoss:
            raise
        except FlashError as exc:  # faults only: a FlashMisuseError (driver bug) propagates as is
            raise SlotWriteError(f"erasing [{offset:#x}, {offset + length:#x}) of the model image "
                                 f"failed: {exc}") from exc
        return sectors

    def _program(self, offset: int, data: bytes, runs: Sequence[tuple[int, int]]) -> None:
        padded = pad_to_unit(data, self.partition.geometry)
        runs = [(a, len(padded) if b == len(data) else b) for a, b in runs]
        try:
            program_runs(self.partition, offset, padded, runs)
        except PowerLoss:
            raise
        except FlashError as exc:
            raise SlotWriteError(f"slot write [{offset:#x}, {offset + len(data):#x}) of the model image "
                                 f"failed: {exc}") from exc

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.length:
            raise SlotAlignmentError(f"range [{offset:#x}, {offset + length:#x}) is outside the "
                                     f"{self.length}-byte model image")

    def _charge_read(self, length: int) -> None:
        if self._timeline is not None and self._storage is not None and length:
            seconds = op_seconds(FlashOp(OpKind.READ, 0, length), self._storage, self._timeline.worst)
            self._timeline.advance(seconds, "xip read", cat="xip", bytes=length)


class RamModelImage(RamImage):
    """The model copied into RAM at boot (`mcu-ram`); slot writes never reach flash.

    ram_bandwidth: bytes/s of the RAM the copy lives in (PSRAM), to charge slot writes and
        read-backs to the timeline; None charges nothing (host DRAM).
    """

    def __init__(self, data: bytes | bytearray, *, timeline: Timeline | None = None,
                 ram_bandwidth: float | None = None) -> None:
        super().__init__(data)
        self._timeline = timeline
        self._bandwidth = ram_bandwidth

    @classmethod
    def load(cls, partition: Partition, length: int, *, timeline: Timeline | None = None,
             ram_bandwidth: float | None = None) -> RamModelImage:
        """Copy the model from its partition (one counted flash read, charged to the timeline)."""
        return cls(partition.read(0, length), timeline=timeline, ram_bandwidth=ram_bandwidth)

    def check_slots(self, slotmap: SlotMap) -> None:
        """Any slot alignment works in RAM (nothing is erased)."""

    def read(self, offset: int, length: int) -> bytes:
        self._charge(length, "ram read")
        return super().read(offset, length)

    def write(self, offset: int, data: bytes) -> None:
        super().write(offset, data)
        self._charge(len(data), "ram write")

    def _charge(self, length: int, what: str) -> None:
        if self._timeline is not None and self._bandwidth and length:
            self._timeline.advance(length / self._bandwidth, what, cat="ram", bytes=length)


__all__ = ["FlashModelImage", "RamModelImage"]
