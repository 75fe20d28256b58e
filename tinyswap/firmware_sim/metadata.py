"""The metadata partition: the device's committed state, changed only by atomic commits.

Why this layout: the slot table, the anti-rollback counters and the trial/confirmed flags must
survive any power cut in exactly their old or their new form. The partition is split into
`areas` (>= 2) equal runs of sectors used in rotation, the scheme of MCUboot's swap status
and of littlefs's metadata pairs: a commit erases the area *after* the one holding the current
record and programs the new record there; the current record is never touched, so a cut at
any point leaves it standing. Boot reads every area and takes the valid record with the
highest sequence number.

Record (little-endian), padded with the erase value to the write unit:

    offset  size  field
    0       4     magic b"TSMD"
    4       2     format version (1)
    6       8     sequence number (one above the highest ever attempted)
    14      4     JSON length L
    18      L     JSON payload (UTF-8)
    18+L    32    SHA-256 of bytes [0, 18+L)

A torn or half-erased record fails its digest and is ignored (a failure MCUboot once had, a
half-written magic accepted as valid, cannot happen: nothing is trusted before the digest).
Every commit is read back and compared before it counts; a failed program or erase, or a
read-back mismatch, raises `MetadataWriteError` (never a silent success). A failed attempt is
retried in the next area that does not hold the current record (with 2 areas there is none:
the error is raised at once); each attempt consumes a sequence number, so two valid records
never share one.

Pre-erased areas (the device's idle step, `prepare`): erasing an area takes a whole sector
erase (45 ms typical on QSPI NOR, more than programming a record), so the device erases every
area but the current one while it is idle, and a commit then only programs. Which areas are
erased is RAM knowledge of this power cycle: after a reboot nothing is trusted as erased,
because firmware cannot tell an erased byte from one programmed with the erase value (or a
torn program that left the erase value behind), and programming a programmed unit is a driver
error. A commit into an area not known to be erased erases it first, as before, and counts it
(`erases_on_commit`), so the fallback is never silent.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

from tinyswap.firmware_sim.errors import FlashError, MetadataFullError, MetadataWriteError, PowerLoss
from tinyswap.firmware_sim.flash import Partition
from tinyswap.firmware_sim.flashio import erase_sectors, pad_to_unit, program_range
from tinyswap.errors import InputFileError
from tinyswap.files import parse_json_bounded

MAGIC = b"TSMD"
VERSION = 1
_HEADER = struct.Struct("<4sHQI")
_DIGEST = 32


@dataclass(frozen=True)
class Record:
    """One committed record: where it lives and what it says."""

    sequence: int
    area: int
    payload: dict[str, Any]


def encode_record(sequence: int, payload: dict[str, Any]) -> bytes:
    """Header + canonical JSON + SHA-256 (unpadded)."""
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    head = _HEADER.pack(MAGIC, VERSION, sequence, len(body)) + body
    return head + hashlib.sha256(head).digest()


class MetadataStore:
    """Rotating-area record store on a partition of whole sectors."""

    def __init__(self, partition: Partition, areas: int = 2) -> None:
        sectors = partition.sectors
        if areas < 2 or len(sectors) % areas:
            raise MetadataWriteError(
                f"metadata partition {partition.name!r} has {len(sectors)} sectors; it needs a multiple of "
                f"areas={areas} (>= 2) so that each area is a whole number of sectors")
        per = len(sectors) // areas
        self.partition = partition
        self.areas: list[tuple[int, int]] = []  # (offset, size) in the partition
        pos = 0
        for a in range(areas):
            size = sum(sectors[a * per:(a + 1) * per])
            self.areas.append((pos, size))
            pos += size
        self.capacity = min(size for _, size in self.areas)  # the largest record that fits every area
        self.current: Record | None = None
        self.next_sequence = 1
        self.read_errors: list[str] = []  # areas that could not be read at the last load
        self.erased: set[int] = set()  # areas erased in this power cycle and not programmed since
        self.erases_on_commit = 0  # commits that had to erase their area first (no pre-erased one)
        self.last_commit_erased = False  # the last commit attempt erased on its own path

    # ---------------------------------------------------------------- boot
    def load(self) -> Record | None:
        """Read every area and keep the newest valid record (None: nothing valid anywhere)."""
        best: Record | None = None
        highest = 0
        self.read_errors = []
        for index in range(len(self.areas)):
            try:
                rec = self._read_area(index)
            except PowerLoss:
                raise
            except FlashError as exc:  # a fault: an unreadable (worn) area holds nothing we can trust
                self.read_errors.append(f"area {index}: {exc}")
                continue
            if rec is not None:
                highest = max(highest, rec.sequence)
                if best is None or rec.sequence > best.sequence:
                    best = rec
        self.current = best
        self.next_sequence = highest + 1
        self.erased = set()  # a boot trusts no area as erased (see the module docstring)
        return best

    def _read_area(self, index: int) -> Record | None:
        offset, size = self.areas[index]
        head = self.partition.read(offset, _HEADER.size)
        magic, version, sequence, length = _HEADER.unpack(head)
        if magic != MAGIC or version != VERSION or _HEADER.size + length + _DIGEST > size:
            return None
        rest = self.partition.read(offset + _HEADER.size, length + _DIGEST)
        body, digest = rest[:length], rest[length:]
        if hashlib.sha256(head + body).digest() != digest:
            return None
        try:
            payload = parse_json_bounded(body.decode(), "metadata record")
        except (UnicodeDecodeError, json.JSONDecodeError, InputFileError):
            return None
        return Record(sequence, index, payload) if isinstance(payload, dict) else None

    # ---------------------------------------------------------------- factory
    def format(self) -> None:
        """Erase every area (factory provisioning): no record anywhere."""
        for offset, size in self.areas:
            erase_sectors(self.partition, offset, size)
        self.erased = set()  # not trusted: a factory commit erases as it always did
        self.current = None
        self.next_sequence = 1

    # ---------------------------------------------------------------- idle
    def prepare(self) -> int:
        """Erase every area that does not hold the current record and is not known to be erased
        (idle time), so that the next commits only program. Returns the areas erased.

        Power safety: the current record is never touched (exactly the areas a commit would
        erase anyway), so a cut at any point leaves it standing; an area whose erase was cut is
        not marked erased (and RAM is lost with the power anyway).
        """
        current_area = None if self.current is None else self.current.area
        count = 0
        for index, (offset, size) in enumerate(self.areas):
            if index == current_area or index in self.erased:
                continue
            erase_sectors(self.partition, offset, size)
            self.erased.add(index)
            count += 1
        return count

    # ---------------------------------------------------------------- commit
    def commit(self, payload: dict[str, Any]) -> Record:
        """Make `payload` the current record, atomically; raise `MetadataWriteError` if it did not land."""
        failures: list[str] = []
        self.last_commit_erased = False
        current_area = None if self.current is None else self.current.area
        n = len(self.areas)
        start = 0 if current_area is None else (current_area + 1) % n
        for step in range(n):
            area = (start + step) % n
            if area == current_area:
                continue
            sequence = self.next_sequence
            self.next_sequence += 1  # consumed even if the attempt fails
            data = encode_record(sequence, payload)
            if len(data) > self.capacity:
                raise MetadataFullError(f"a {len(data)}-byte metadata record exceeds the {self.capacity}-byte area "
                                        f"of partition {self.partition.name!r}")
            try:
                self._write_area(area, data)
            except PowerLoss:
                raise
            except (FlashError, MetadataWriteError) as exc:  # faults only; a misuse error is a bug
                failures.append(f"area {area}: {exc}")
                continue
            self.current = Record(sequence, area, payload)
            return self.current
        raise MetadataWriteError(f"metadata commit failed, the previous record stands "
                                 f"(sequence {None if self.current is None else self.current.sequence}): "
                                 + "; ".join(failures))

    def _write_area(self, area: int, data: bytes) -> None:
        offset, size = self.areas[area]
        g = self.partition.geometry
        pre_erased = area in self.erased or g.managed  # managed media need no erase at all
        self.erased.discard(area)  # from here on the area is being programmed
        if not pre_erased:
            self.last_commit_erased = True
            self.erases_on_commit += 1
            erase_sectors(self.partition, offset, size)
        padded = pad_to_unit(data, g)
        program_range(self.partition, offset, padded)
        back = self.partition.read(offset, len(data))
        if back != data:
            raise MetadataWriteError(f"read-back of the record in area {area} differs from what was programmed")


__all__ = ["MAGIC", "MetadataStore", "Record", "encode_record"]
