"""A flash device over a `bytearray` image, with the physics that update code must respect.

Why a simulator this strict: adapter swaps and the LittleFS store are only trustworthy if they
survive power cuts and worn-out sectors, and those can only be tested exhaustively in
simulation. The rules follow the three simulators the project trusts (see
`docs/storage-facts.md`):

* erase sets whole sectors to the erase value (0xFF or 0x00), and must be sector aligned
  (MCUboot `sim/simflash/src/lib.rs` `erase`: "we'll be strict" where drivers round);
* a program may only target write units erased since they were last programmed. Like
  MCUboot's `write_safe` map we refuse *any* second program of a unit, even one that would
  only clear more bits (NOR parts allow that, ECC parts such as STM32H7 do not). The
  program-only-erased state is tracked per write unit as the caller sees it, separately from
  the bytes, so a bad block that silently drops an erase does not turn into a false
  "unerased write" blamed on the caller;
* programs are aligned to the write unit (1..32 bytes on raw flash);
* worn-out sectors follow littlefs `bd/lfs_emubd.c`: wear counts erases while below the
  limit; a sector is bad once wear >= the limit, and then behaves as one of the five
  `BadBlock` modes (ERASENOOP also drops programs, as emubd does);
* power cuts before or after the Nth program/erase (MCUboot replays "before", littlefs
  "after"), torn programs (Zephyr's flash simulator threshold: only part of the bytes land),
  chained cuts, and probabilistic failures of writes into an address range (MCUboot
  `add_bad_region`, which we apply to any overlap rather than only full containment).
  *When* power fails is decided by the part's `power.PowerSupply` (its own, or one shared
  with the other parts of a device, so cuts are numbered across all of them); the part only
  applies what the cut does to its medium.

Rule violations raise `FlashMisuseError`s (driver bugs), faults raise `FlashError`s; the two
families are disjoint so that no fault handler can hide a bug.

Counters, not clocks: every operation issued to the medium is counted (commands, bytes, pages,
per-sector erases and programs); `tinyswap.firmware_sim.storage` turns counters into seconds.

Managed media (SD, eMMC, NVMe) have a controller that hides erase: `managed=True` makes
programs overwrite in place and erase a counted no-op trim; there is no wear model (the
controller levels wear).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field, fields
from typing import Protocol

import numpy as np

from tinyswap.firmware_sim.errors import (
    AlignmentError,
    BadBlockEraseError,
    BadBlockProgramError,
    BadBlockReadError,
    FlashGeometryError,
    InjectedWriteError,
    OutOfRangeError,
    UnerasedWriteError,
)
from tinyswap.firmware_sim.power import CutPoint, PowerCut, PowerSupply

KIB = 1024

# Raw flash write units seen in practice: 1 (NOR), 2/4/8/16/32 (internal MCU flash with ECC
# words; MCUboot's sim matrix uses 1, 2, 4, 8). Managed media expose logical blocks instead.
MAX_RAW_WRITE_ALIGN = 32
MAX_MANAGED_WRITE_ALIGN = 4096


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class FlashGeometry:
    """Sector map and write rules of one flash part.

    Attributes:
        sectors: size in bytes of each erase sector, in address order (uniform or mixed).
        erase_value: the byte an erased location reads as (0xFF for NOR, 0x00 for some parts).
        write_align: program offsets and lengths must be multiples of this (bytes, power of two).
        page_size: the most bytes one program command writes (NOR page 256 B, STM32F4 word 4 B,
            SD block 512 B). Only used to count program pages for timing; programs may span
            pages, as a driver would split them.
        erase_cycles: erase-cycle budget per sector, or None for no wear model.
        managed: SD/eMMC/NVMe-style medium: overwrite in place, erase is a no-op trim.
        name: a label for messages and test ids.
    """

    sectors: tuple[int, ...]
    erase_value: int = 0xFF
    write_align: int = 1
    page_size: int = 256
    erase_cycles: int | None = None
    managed: bool = False
    name: str = "flash"
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sectors", tuple(int(s) for s in self.sectors))
        if not self.sectors:
            raise FlashGeometryError(f"{self.name}: a flash needs at least one sector")
        if self.erase_value not in (0x00, 0xFF):
            raise FlashGeometryError(f"{self.name}: erase_value must be 0x00 or 0xFF, got {self.erase_value:#x}")
        limit = MAX_MANAGED_WRITE_ALIGN if self.managed else MAX_RAW_WRITE_ALIGN
        if not _is_pow2(self.write_align) or self.write_align > limit:
            raise FlashGeometryError(
                f"{self.name}: write_align must be a power of two in 1..{limit}, got {self.write_align}")
        if self.page_size <= 0 or self.page_size % self.write_align:
            raise FlashGeometryError(
                f"{self.name}: page_size {self.page_size} must be a positive multiple of write_align {self.write_align}")
        for i, size in enumerate(self.sectors):
            if size <= 0 or size % self.page_size:
                raise FlashGeometryError(
                    f"{self.name}: sector {i} is {size} bytes, not a positive multiple of page_size {self.page_size}")
        if self.erase_cycles is not None:
            if self.managed:
                raise FlashGeometryError(f"{self.name}: managed media level wear themselves; erase_cycles must be None")
            if self.erase_cycles < 1:
                raise FlashGeometryError(f"{self.name}: erase_cycles must be >= 1 or None, got {self.erase_cycles}")
        starts, pos = [], 0
        for size in self.sectors:
            starts.append(pos)
            pos += size
        object.__setattr__(self, "_starts", tuple(starts))

    def __repr__(self) -> str:
        runs: list[str] = []
        for size in self.sectors:  # run-length: "4x16384+1x65536"
            if runs and runs[-1].endswith(f"x{size}"):
                n, _ = runs[-1].split("x")
                runs[-1] = f"{int(n) + 1}x{size}"
            else:
                runs.append(f"1x{size}")
        return (f"FlashGeometry({self.name!r}, sectors={'+'.join(runs)}, erase_value={self.erase_value:#04x}, "
                f"write_align={self.write_align}, page_size={self.page_size}, erase_cycles={self.erase_cycles}, "
                f"managed={self.managed})")

    @classmethod
    def uniform(cls, sector_size: int, count: int, **kwargs: object) -> FlashGeometry:
        """`count` sectors of `sector_size` bytes (QSPI NOR: 4 KB sectors)."""
        if count < 1:
            raise FlashGeometryError(f"sector count must be >= 1, got {count}")
        return cls(sectors=(sector_size,) * count, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def stm32f4(cls, size: int = 1024 * KIB, **kwargs: object) -> FlashGeometry:
        """STM32F4 main flash: 4 x 16 KB, 1 x 64 KB, then 128 KB sectors (RM0090 table 5).

        `size` must be 128 KB plus a multiple of 128 KB (512 KB, 1 MB ...).
        """
        head = (16 * KIB,) * 4 + (64 * KIB,)
        rest = size - sum(head)
        if rest < 0 or rest % (128 * KIB):
            raise FlashGeometryError(f"STM32F4 flash size must be 128 KB + n x 128 KB, got {size}")
        kwargs.setdefault("name", "stm32f4")
        return cls(sectors=head + (128 * KIB,) * (rest // (128 * KIB)), **kwargs)  # type: ignore[arg-type]

    @property
    def size(self) -> int:
        return self._starts[-1] + self.sectors[-1]

    @property
    def sector_count(self) -> int:
        return len(self.sectors)

    @property
    def uniform_sector_size(self) -> int | None:
        """The sector size if all sectors are equal (what littlefs needs), else None."""
        return self.sectors[0] if len(set(self.sectors)) == 1 else None

    def sector_start(self, index: int) -> int:
        return self._starts[index]

    def sector_index(self, offset: int) -> int:
        """Index of the sector holding byte `offset`."""
        if not 0 <= offset < self.size:
            raise OutOfRangeError(f"{self.name}: offset {offset:#x} outside the device (size {self.size:#x})")
        lo, hi = 0, len(self._starts) - 1
        while lo < hi:  # last start <= offset
            mid = (lo + hi + 1) // 2
            if self._starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def sectors_in(self, offset: int, length: int) -> range:
        """Indices of the sectors that the byte range touches (empty range for length 0)."""
        if length <= 0:
            return range(0)
        return range(self.sector_index(offset), self.sector_index(offset + length - 1) + 1)

    def is_sector_boundary(self, offset: int) -> bool:
        return offset == self.size or (0 <= offset < self.size and self._starts[self.sector_index(offset)] == offset)


class BadBlock(enum.Enum):
    """What a worn-out sector does (littlefs `lfs_emubd_badblock_behavior_t`)."""

    PROGERROR = "progerror"  # programs fail with an error
    ERASEERROR = "eraseerror"  # erases fail with an error
    READERROR = "readerror"  # reads fail with an error
    PROGNOOP = "prognoop"  # programs are silently dropped
    ERASENOOP = "erasenoop"  # erases (and, as in emubd, programs) are silently dropped


class OpKind(enum.Enum):
    READ = "read"
    PROGRAM = "program"
    ERASE = "erase"


@dataclass(frozen=True)
class FlashOp:
    """One operation issued to the medium: what a clock charges time for.

    `pages` is the number of program pages touched (program only); `erased` holds the size of
    each sector erased (erase only), so mixed sector maps are costed per sector size.
    """

    kind: OpKind
    offset: int
    length: int
    pages: int = 0
    erased: tuple[int, ...] = ()


class OpSink(Protocol):
    """Receives each counted operation (a `storage.SimClock` charges its cost)."""

    def charge(self, op: FlashOp) -> None: ...


@dataclass(frozen=True)
class FlashCounters:
    """What the device did, as plain numbers; equal snapshots mean equal work.

    Counts are of commands issued to the medium, including ones the medium then failed
    (bad blocks) or dropped (NOOP bad blocks); a torn program counts the bytes that landed;
    operations refused before reaching the medium (misuse, power off, a cut "before",
    injected failures) are not counted. Subtracting two snapshots gives the work in between.
    """

    sector_sizes: tuple[int, ...]
    page_size: int
    read_ops: int = 0
    read_bytes: int = 0
    program_ops: int = 0
    program_bytes: int = 0
    program_pages: int = 0
    erase_ops: int = 0
    erase_bytes: int = 0
    view_ops: int = 0
    sector_erases: tuple[int, ...] = ()
    sector_programs: tuple[int, ...] = ()

    @property
    def ops(self) -> int:
        """Read, program and erase commands (views are address arithmetic, not commands)."""
        return self.read_ops + self.program_ops + self.erase_ops

    @property
    def mutating_ops(self) -> int:
        return self.program_ops + self.erase_ops

    def __sub__(self, other: FlashCounters) -> FlashCounters:
        if (self.sector_sizes, self.page_size) != (other.sector_sizes, other.page_size):
            raise FlashGeometryError("cannot subtract counters of different geometries")
        values = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name in ("sector_sizes", "page_size"):
                values[f.name] = a
            elif isinstance(a, tuple):
                values[f.name] = tuple(x - y for x, y in zip(a, b))
            else:
                values[f.name] = a - b
        return FlashCounters(**values)


@dataclass(frozen=True)
class FailRange:
    """Programs (and optionally erases) overlapping [start, end) fail with `probability`.

    A failed operation changes nothing and raises `InjectedWriteError` (MCUboot's simulated
    "Write failed by chance" status writes, rates 1.0 and 0.5). Addresses are device-absolute.
    """

    start: int
    end: int
    probability: float
    erases: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise FlashGeometryError(f"failure probability must be in [0, 1], got {self.probability}")
        if self.end <= self.start:
            raise FlashGeometryError(f"failing range [{self.start:#x}, {self.end:#x}) is empty")


@dataclass(frozen=True)
class FaultPlan:
    """Power cuts (one, or several chained) and probabilistic write failures, with a seed.

    The cuts are handed to the part's power supply (`FlashDevice.arm`); the failures stay
    with the part (they are a property of its medium, not of the power).
    """

    cuts: tuple[PowerCut, ...] = ()
    failures: tuple[FailRange, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "cuts", tuple(self.cuts))
        object.__setattr__(self, "failures", tuple(self.failures))
        ops = [c.op for c in self.cuts]
        if len(ops) != len(set(ops)):
            raise FlashGeometryError(f"two power cuts at the same operation: {sorted(ops)}")

    @classmethod
    def cut(cls, op: int, when: CutPoint = CutPoint.BEFORE, keep: int | None = None) -> FaultPlan:
        return cls(cuts=(PowerCut(op, when, keep),))


def torn_keep(length: int, align: int) -> int:
    """Default bytes that land in a torn operation: a point inside the middle write unit."""
    units = max(1, length // align)
    middle = units // 2
    if align == 1:
        return min(middle, length - 1) if length > 1 else 0
    return middle * align + align // 2


class FlashDevice:
    """A flash part over a `bytearray` image: read, program, erase, view, counters and faults.

    `clock` (anything with `charge(FlashOp)`) is advanced by each counted operation;
    `record_ops=True` keeps every counted operation in `oplog` for replay and tracing;
    `supply`: the power supply the part is wired to (default: a supply of its own).
    """

    def __init__(
        self,
        geometry: FlashGeometry,
        *,
        image: bytes | bytearray | None = None,
        badblock: BadBlock = BadBlock.PROGERROR,
        clock: OpSink | None = None,
        record_ops: bool = False,
        supply: PowerSupply | None = None,
    ) -> None:
        self.geometry = geometry
        self.badblock = badblock
        self.clock = clock
        self.oplog: list[FlashOp] | None = [] if record_ops else None
        g = geometry
        if image is None:
            self._image = bytearray([g.erase_value]) * g.size
        else:
            if len(image) != g.size:
                raise FlashGeometryError(f"{g.name}: image is {len(image)} bytes, geometry is {g.size}")
            self._image = bytearray(image)
        # Program-only-erased state per write unit, as the caller sees it. A unit whose bytes
        # all read as the erase value starts erased.
        units = np.frombuffer(bytes(self._image), dtype=np.uint8).reshape(-1, g.write_align)
        self._programmed = np.any(units != g.erase_value, axis=1)
        self._wear = [0] * g.sector_count
        self.supply = supply if supply is not None else PowerSupply()
        self._plan = FaultPlan()
        self._rng = random.Random(0)
        self.reset_counters()

    # ---------------------------------------------------------------- state and probes
    @property
    def size(self) -> int:
        return self.geometry.size

    @property
    def powered(self) -> bool:
        return self.supply.powered

    @property
    def mutations(self) -> int:
        """Mutating operations attempted since the power supply was armed (all its parts)."""
        return self.supply.mutations

    def wear(self, sector: int) -> int:
        """Erase cycles a sector has used (littlefs `lfs_emubd_wear`)."""
        return self._wear[sector]

    def set_wear(self, sector: int, wear: int) -> None:
        """Age a sector (littlefs `lfs_emubd_setwear`): for wear-out tests without 100k erases."""
        self._wear[sector] = wear

    def is_worn(self, sector: int) -> bool:
        cycles = self.geometry.erase_cycles
        return cycles is not None and self._wear[sector] >= cycles

    def image_bytes(self, offset: int = 0, length: int | None = None) -> bytes:
        """A copy of the image: the test bench's probe, not a device operation.

        Ignores power state, faults and counters (like dumping a chip in a programmer), so
        tests can freeze the image at a power cut and compare it byte for byte.
        """
        end = self.size if length is None else offset + length
        self._check_range(offset, end - offset)
        return bytes(self._image[offset:end])

    def snapshot(self) -> FlashCounters:
        return FlashCounters(
            sector_sizes=self.geometry.sectors,
            page_size=self.geometry.page_size,
            sector_erases=tuple(self._sector_erases),
            sector_programs=tuple(self._sector_programs),
            **self._c,
        )

    def reset_counters(self) -> None:
        self._c = dict(read_ops=0, read_bytes=0, program_ops=0, program_bytes=0, program_pages=0,
                       erase_ops=0, erase_bytes=0, view_ops=0)
        self._sector_erases = [0] * self.geometry.sector_count
        self._sector_programs = [0] * self.geometry.sector_count

    # ---------------------------------------------------------------- faults
    def arm(self, plan: FaultPlan) -> None:
        """Install a fault plan: its failures on this part, its cuts on the part's power
        supply (which numbers mutating operations from 1 again, on every part it feeds)."""
        self.supply.arm(plan.cuts)
        self._plan = plan
        self._rng = random.Random(plan.seed)

    def disarm(self) -> None:
        self.arm(FaultPlan())

    def power_off(self) -> None:
        """Cut power now (outside any operation): every part on the supply stops."""
        self.supply.cut()

    def power_on(self) -> None:
        """Restore power after a cut; the image keeps whatever reached it."""
        self.supply.power_on()

    # ---------------------------------------------------------------- operations
    def read(self, offset: int, length: int) -> bytes:
        """Read `length` bytes (any alignment: NOR and memory-mapped flash read bytes)."""
        self._check_powered("read", offset)
        self._check_range(offset, length)
        if length == 0:
            return b""
        self._check_readable(offset, length)
        self._count(FlashOp(OpKind.READ, offset, length), read_ops=1, read_bytes=length)
        return bytes(self._image[offset:offset + length])

    def view(self, offset: int, length: int) -> memoryview:
        """A live read-only view of image bytes: read in place (XIP), zero copy.

        Later programs and erases are visible through the view, as they are to a CPU reading
        memory-mapped flash. Reads through the view are not counted (the CPU fetches them);
        creating it is counted in `view_ops`.
        """
        self._check_powered("view", offset)
        self._check_range(offset, length)
        if length:
            self._check_readable(offset, length)
        self._c["view_ops"] += 1
        return memoryview(self._image)[offset:offset + length].toreadonly()

    def program(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Program `data` at `offset`; every write unit touched must be erased (raw flash)."""
        data = bytes(data)
        g = self.geometry
        self._check_powered("program", offset)
        self._check_range(offset, len(data))
        if not data:
            raise AlignmentError(f"{g.name}: empty program at {offset:#x}")
        if offset % g.write_align or len(data) % g.write_align:
            raise AlignmentError(
                f"{g.name}: program at {offset:#x} of {len(data)} bytes is not aligned to the "
                f"{g.write_align}-byte write unit")
        u0, u1 = offset // g.write_align, (offset + len(data)) // g.write_align
        if not g.managed and self._programmed[u0:u1].any():
            bad = u0 + int(np.argmax(self._programmed[u0:u1]))
            raise UnerasedWriteError(
                f"{g.name}: write to unerased location {bad * g.write_align:#x} (write unit of "
                f"{g.write_align} bytes programmed since its last erase)")
        cut = self._begin_mutation(OpKind.PROGRAM, offset, len(data))
        # `reach`: bytes of the command the chip processed before power went (all of it
        # unless torn); `landed`: bytes that changed the image (0 on a NOOP bad block).
        reach = len(data)
        if cut is not None and cut.when is CutPoint.TORN:
            reach = min(len(data), cut.keep if cut.keep is not None else torn_keep(len(data), g.write_align))
        landed = reach
        error: Exception | None = None
        sectors = g.sectors_in(offset, len(data))
        if not g.managed and any(self.is_worn(s) for s in sectors):
            if self.badblock is BadBlock.PROGERROR:
                worn = [s for s in sectors if self.is_worn(s)]
                error = BadBlockProgramError(f"{g.name}: program at {offset:#x} hit worn-out sector(s) {worn}")
            elif self.badblock in (BadBlock.PROGNOOP, BadBlock.ERASENOOP):
                landed = 0  # dropped silently; the caller still believes it programmed
        if error is None:
            self._image[offset:offset + landed] = data[:landed]
            if not g.managed:
                # Every unit the command reached is no longer erased, including the one a
                # torn write ended inside (its bits are neither old nor new).
                self._programmed[u0:u0 + -(-reach // g.write_align)] = True
        pages = 0
        if reach:
            pages = (offset + reach - 1) // g.page_size - offset // g.page_size + 1
        self._count(FlashOp(OpKind.PROGRAM, offset, reach, pages=pages),
                    program_ops=1, program_bytes=reach, program_pages=pages)
        for s in g.sectors_in(offset, max(reach, 1)):
            self._sector_programs[s] += 1
        self._end_mutation(OpKind.PROGRAM, offset, cut, error)

    def erase(self, offset: int, length: int) -> None:
        """Erase whole sectors covering exactly [offset, offset + length); may span sectors."""
        g = self.geometry
        self._check_powered("erase", offset)
        self._check_range(offset, length)
        if length <= 0:
            raise AlignmentError(f"{g.name}: empty erase at {offset:#x}")
        if not (g.is_sector_boundary(offset) and g.is_sector_boundary(offset + length)):
            raise AlignmentError(
                f"{g.name}: erase [{offset:#x}, {offset + length:#x}) does not start and end on sector boundaries")
        cut = self._begin_mutation(OpKind.ERASE, offset, length)
        keep = length
        if cut is not None and cut.when is CutPoint.TORN:
            keep = min(length, cut.keep if cut.keep is not None else torn_keep(length, g.write_align))
        error: Exception | None = None
        erased: list[int] = []
        for s in g.sectors_in(offset, length):
            start, size = g.sector_start(s), g.sectors[s]
            if keep <= start - offset:
                break  # a torn erase never reached this sector
            erased.append(size)
            self._sector_erases[s] += 1
            if g.managed:
                continue  # trim: the controller remaps; the bytes read back unchanged
            if self.is_worn(s):
                if self.badblock is BadBlock.ERASEERROR:
                    error = BadBlockEraseError(f"{g.name}: erase of worn-out sector {s} at {start:#x} failed")
                    break
                if self.badblock is BadBlock.ERASENOOP:
                    self._mark_erased(start, size)  # the caller believes it erased
                    continue
            elif g.erase_cycles is not None:
                self._wear[s] += 1
            upto = min(size, keep - (start - offset))
            self._image[start:start + upto] = bytes([g.erase_value]) * upto
            if upto == size:
                self._mark_erased(start, size)
            else:  # half-erased sector: undefined contents, must be erased again before use
                self._programmed[start // g.write_align:(start + size) // g.write_align] = True
        self._count(FlashOp(OpKind.ERASE, offset, sum(erased), erased=tuple(erased)),
                    erase_ops=1, erase_bytes=sum(erased))
        self._end_mutation(OpKind.ERASE, offset, cut, error)

    # ---------------------------------------------------------------- internals
    def _mark_erased(self, start: int, size: int) -> None:
        a = self.geometry.write_align
        self._programmed[start // a:(start + size) // a] = False

    def _check_powered(self, what: str, offset: int) -> None:
        self.supply.check(f"{self.geometry.name}: {what} at {offset:#x}")

    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise OutOfRangeError(
                f"{self.geometry.name}: [{offset:#x}, {offset + length:#x}) outside the device (size {self.size:#x})")

    def _check_readable(self, offset: int, length: int) -> None:
        if self.badblock is BadBlock.READERROR and not self.geometry.managed:
            worn = [s for s in self.geometry.sectors_in(offset, length) if self.is_worn(s)]
            if worn:
                raise BadBlockReadError(f"{self.geometry.name}: read at {offset:#x} hit worn-out sector(s) {worn}")

    def _begin_mutation(self, kind: OpKind, offset: int, length: int) -> PowerCut | None:
        """Ask the supply whether power fails here (a BEFORE cut raises); apply an injected
        failure; return an AFTER or TORN cut for the operation to apply."""
        what = f"{self.geometry.name}: {kind.value} at {offset:#x}"
        cut = self.supply.begin_mutation(what)
        for fr in self._plan.failures:
            if kind is OpKind.ERASE and not fr.erases:
                continue
            if offset < fr.end and fr.start < offset + length and self._rng.random() < fr.probability:
                error = InjectedWriteError(
                    f"{what}: injected failure (failing range [{fr.start:#x}, {fr.end:#x}), p={fr.probability})")
                # The failed op is also the cut point: nothing lands and power is lost anyway.
                self.supply.end_mutation(cut, what, error)
        return cut

    def _end_mutation(self, kind: OpKind, offset: int, cut: PowerCut | None, error: Exception | None) -> None:
        self.supply.end_mutation(cut, f"{self.geometry.name}: {kind.value} at {offset:#x}", error)

    def _count(self, op: FlashOp, **deltas: int) -> None:
        for k, v in deltas.items():
            self._c[k] += v
        if self.oplog is not None:
            self.oplog.append(op)
        if self.clock is not None:
            self.clock.charge(op)


class Partition:
    """A sector-aligned region of a `FlashDevice` with the same API, offsets relative to it.

    Accesses outside the region are refused (`OutOfRangeError`) before they reach the device,
    so a bug in the adapter store can never touch the model image next door.
    """

    def __init__(self, flash: FlashDevice, offset: int, size: int, name: str) -> None:
        g = flash.geometry
        if size <= 0 or offset < 0 or offset + size > g.size:
            raise FlashGeometryError(f"partition {name!r} [{offset:#x}, {offset + size:#x}) outside {g.name}")
        if not (g.is_sector_boundary(offset) and g.is_sector_boundary(offset + size)):
            raise FlashGeometryError(
                f"partition {name!r} [{offset:#x}, {offset + size:#x}) is not on sector boundaries of {g.name}")
        self.flash, self.offset, self.size, self.name = flash, offset, size, name
        first = g.sector_index(offset)
        last = g.sector_index(offset + size - 1)
        self.sectors: tuple[int, ...] = g.sectors[first:last + 1]
        self.first_sector = first

    @property
    def geometry(self) -> FlashGeometry:
        return self.flash.geometry

    @property
    def write_align(self) -> int:
        return self.flash.geometry.write_align

    @property
    def erase_value(self) -> int:
        return self.flash.geometry.erase_value

    def absolute(self, offset: int) -> int:
        """Device address of a partition offset (for fault ranges and messages)."""
        return self.offset + offset

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise OutOfRangeError(
                f"partition {self.name!r}: [{offset:#x}, {offset + length:#x}) outside its {self.size:#x} bytes")

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        return self.flash.read(self.offset + offset, length)

    def program(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self._check(offset, len(data))
        self.flash.program(self.offset + offset, data)

    def erase(self, offset: int, length: int) -> None:
        self._check(offset, length)
        self.flash.erase(self.offset + offset, length)

    def view(self, offset: int, length: int) -> memoryview:
        self._check(offset, length)
        return self.flash.view(self.offset + offset, length)

    def image_bytes(self) -> bytes:
        """A copy of the partition's bytes (test-bench probe; see `FlashDevice.image_bytes`)."""
        return self.flash.image_bytes(self.offset, self.size)

    def snapshot(self) -> FlashCounters:
        """The device's counters (partitions share one device and one set of counters)."""
        return self.flash.snapshot()


__all__ = [
    "BadBlock", "CutPoint", "FailRange", "FaultPlan", "FlashCounters", "FlashDevice", "FlashGeometry",
    "FlashOp", "OpKind", "OpSink", "Partition", "PowerCut", "torn_keep", "KIB",
]
