"""Storage latency profiles as data, and time as a pure function of flash counters.

Why: a swap that is "fast" on a PC can take seconds on a microcontroller (a 128 KB internal
sector erases in up to 2 s; an SD card may hold a write busy for 250 ms). Scenarios report
time from the simulator's operation counters and these datasheet figures, never from the
wall clock, so results are reproducible and a worst case is one flag away.

Cost of one operation (linear, so counters and op logs give the same total):

    read     = read_latency + bytes / read_bandwidth
    program  = program_latency + pages * program_page + bytes / write_bandwidth
    erase    = sum over erased sectors of erase_time(sector size)     (trim on managed media)

Every figure below carries its source. Most come from `docs/storage-facts.md`
("Storage figures"); the few that do not are marked DERIVED or ASSUMED with the reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Union

from tinyswap.firmware_sim.errors import FlashGeometryError, ProfileError
from tinyswap.firmware_sim.flash import KIB, FlashCounters, FlashGeometry, FlashOp, OpKind

MS = 1e-3
US = 1e-6
MB = 1e6  # storage bandwidths are quoted in decimal MB/s


@dataclass(frozen=True)
class Span:
    """A duration in seconds: typical and maximum (datasheet typ / max)."""

    typ: float
    max: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.typ <= self.max:
            raise ProfileError(f"timing needs 0 <= typ <= max, got typ={self.typ} max={self.max}")

    def pick(self, worst: bool) -> float:
        return self.max if worst else self.typ


ZERO = Span(0.0, 0.0)


@dataclass(frozen=True)
class StorageProfile:
    """One storage medium: geometry defaults and per-operation costs (seconds, bytes/s).

    `erase` maps an erase-unit size in bytes to its erase time; `trim` is the cost of an
    erase command on managed media (None on raw flash, where an unknown sector size is an
    error rather than a guess).
    """

    name: str
    description: str
    size: int
    sector_size: int
    page_size: int
    write_align: int
    read_latency: Span
    read_bandwidth: float
    program_latency: Span
    program_page: Span
    write_bandwidth: float
    erase: tuple[tuple[int, Span], ...] = ()
    trim: Span | None = None
    managed: bool = False
    erase_value: int = 0xFF
    erase_cycles: int | None = None
    sector_map: tuple[int, ...] | None = None
    sources: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.read_bandwidth <= 0 or self.write_bandwidth <= 0:
            raise ProfileError(f"{self.name}: bandwidths must be positive")
        if self.managed and self.trim is None:
            raise ProfileError(f"{self.name}: a managed medium needs a trim cost")

    def erase_time(self, sector_size: int, worst: bool = False) -> float:
        """Seconds to erase one sector of `sector_size` bytes."""
        for size, span in self.erase:
            if size == sector_size:
                return span.pick(worst)
        if self.trim is not None:
            return self.trim.pick(worst)
        raise ProfileError(
            f"{self.name}: no erase time for {sector_size}-byte sectors (known: {[s for s, _ in self.erase]})")

    def geometry(self, size: int | None = None, **overrides: object) -> FlashGeometry:
        """A `FlashGeometry` for this medium (optionally smaller than the real part, for tests)."""
        kwargs: dict[str, object] = dict(
            erase_value=self.erase_value, write_align=self.write_align, page_size=self.page_size,
            erase_cycles=self.erase_cycles, managed=self.managed, name=self.name)
        kwargs.update(overrides)
        if self.sector_map is not None:
            # A smaller part of a mixed-sector family keeps the leading sectors (STM32F4
            # 512 KB = 4 x 16 + 64 + 3 x 128 KB), so take the prefix that adds up to `size`.
            sectors, total = [], 0
            for s in self.sector_map:
                if size is not None and total >= size:
                    break
                sectors.append(s)
                total += s
            if size is not None and total != size:
                raise FlashGeometryError(f"{self.name}: no prefix of the sector map adds up to {size} bytes")
            return FlashGeometry(sectors=tuple(sectors), **kwargs)  # type: ignore[arg-type]
        total = self.size if size is None else size
        if total % self.sector_size:
            raise FlashGeometryError(f"{self.name}: size {total} is not a multiple of {self.sector_size}")
        return FlashGeometry.uniform(self.sector_size, total // self.sector_size, **kwargs)


# ------------------------------------------------------------------------------------ profiles

# Winbond W25Q128JV, 16 MB QSPI NOR. docs/storage-facts.md row "QSPI NOR (Winbond W25Q-JV)", from the
# W25Q-JV datasheets (W25Q32JV section 9.6 AC characteristics, same family).
W25Q128JV = StorageProfile(
    name="w25q128jv",
    description="QSPI NOR (Winbond W25Q128JV), XIP-capable, 4 KB sectors",
    size=16 * 1024 * KIB,  # W25Q128JV: 128 Mbit
    sector_size=4 * KIB,  # datasheet: 4 KB sector erase (20h)
    page_size=256,  # datasheet: page program up to 256 bytes
    write_align=1,  # NOR programs single bytes
    # DERIVED: Fast Read Quad I/O (EBh) = 8 instruction + 6 address + 6 mode/dummy clocks
    # = 20 clocks at 133 MHz = 0.15 us; no max given, so max = typ.
    read_latency=Span(20 / 133e6, 20 / 133e6),
    read_bandwidth=66.5 * MB,  # docs/storage-facts.md: 133 MHz clock, ~66 MB/s quad read (133e6 * 4 bit / 8)
    program_latency=ZERO,  # write-enable + status polling are bus overhead, folded into tPP
    program_page=Span(0.4 * MS, 3 * MS),  # docs/storage-facts.md: page program 256 B: 0.4 / 3 ms (tPP)
    write_bandwidth=66.5 * MB,  # DERIVED: Quad Input Page Program (32h) at 133 MHz, 4 bits/clock
    erase=(
        (4 * KIB, Span(45 * MS, 400 * MS)),  # docs/storage-facts.md: sector erase 4 KB: 45 / 400 ms (tSE)
        (32 * KIB, Span(120 * MS, 1600 * MS)),  # docs/storage-facts.md: block erase 32 KB: 120 / 1600 ms (tBE1)
        (64 * KIB, Span(150 * MS, 2000 * MS)),  # docs/storage-facts.md: block erase 64 KB: 150 / 2000 ms (tBE2)
    ),
    erase_cycles=100_000,  # docs/storage-facts.md: >= 100k P/E cycles per sector
    sources=("Winbond W25Q-JV datasheets via docs/storage-facts.md",),
)

# STM32F4-style internal flash: mixed 16/64/128 KB sectors (docs/storage-facts.md: zephyr
# dts/arm/st/f7/stm32f7.dtsi row "F4 sectors 16/64/128 KB"; RM0090 table 5 for the order).
# Timings are NOT in docs/storage-facts.md: they are the STM32F405xx datasheet (DS8626, table "Flash
# memory programming", x32 parallelism) values tSE16KB 250/500 ms, tSE64KB 550/1100 ms,
# tSE128KB 1/2 s, word program 16/100 us, endurance 10 kcycles. Cross-check with docs/storage-facts.md:
# STM32F7 erases "up to 4000 ms per 256 KB sector", the same 15.6 ms/KB as 2 s per 128 KB here.
STM32F4_INTERNAL = StorageProfile(
    name="stm32f4-internal",
    description="STM32F4 internal flash, 1 MB, sectors 4x16 KB + 64 KB + 7x128 KB, x32 programming",
    size=1024 * KIB,
    sector_size=128 * KIB,
    sector_map=FlashGeometry.stm32f4(1024 * KIB).sectors,
    page_size=4,  # x32 parallelism: one 32-bit word per program operation (RM0090 3.5.4)
    write_align=4,
    # DERIVED: memory-mapped 128-bit flash line, 5 wait states at 168 MHz (RM0090 table 6,
    # 2.7-3.6 V) -> 6 HCLK per 16 bytes: latency 6/168 MHz, 16 B * 168 MHz / 6 = 448 MB/s.
    read_latency=Span(6 / 168e6, 6 / 168e6),
    read_bandwidth=16 * 168e6 / 6,
    program_latency=ZERO,
    program_page=Span(16 * US, 100 * US),  # DS8626: tprog word (x32) typ 16 us, max 100 us
    write_bandwidth=4 * 168e6,  # DERIVED: one 32-bit AHB write per HCLK; negligible next to tprog
    erase=(
        (16 * KIB, Span(250 * MS, 500 * MS)),  # DS8626: tERASE16KB x32
        (64 * KIB, Span(550 * MS, 1100 * MS)),  # DS8626: tERASE64KB x32
        (128 * KIB, Span(1000 * MS, 2000 * MS)),  # DS8626: tERASE128KB x32
    ),
    erase_cycles=10_000,  # DS8626: NEND 10 kcycles
    sources=("ST DS8626 (STM32F405xx) flash programming table", "ST RM0090", "docs/storage-facts.md STM32F7 row"),
)

# Microchip SAM-style internal flash (SAM D5x/E5x class). docs/storage-facts.md row "internal MCU
# flash (Microchip SAM)": 512 B page write <= 3 ms; 4-32 KB erase <= 155 ms; 100k cycles.
# The datasheet gives maxima only, so typ = max (conservative).
SAM_INTERNAL = StorageProfile(
    name="sam-internal",
    description="Microchip SAM-style internal flash, 512 B pages, 8 KB erase blocks, 16 B ECC write unit",
    size=512 * KIB,
    sector_size=8 * KIB,  # an 8 KB block (16 pages), inside docs/storage-facts.md' 4-32 KB erase range
    page_size=512,  # docs/storage-facts.md: 512 B page write
    write_align=16,  # ASSUMED: SAM D5x/E5x program quad-words (128 bits) with ECC
    # ASSUMED (no figure in docs/storage-facts.md): memory-mapped reads at CPU speed, one 32-bit read
    # per cycle at 120 MHz (SAM E5x max clock): latency one cycle, 480 MB/s.
    read_latency=Span(1 / 120e6, 1 / 120e6),
    read_bandwidth=4 * 120e6,
    program_latency=ZERO,
    program_page=Span(3 * MS, 3 * MS),  # docs/storage-facts.md: 512 B page write <= 3 ms (max only)
    write_bandwidth=4 * 120e6,  # ASSUMED: page buffer filled at one word per cycle
    erase=((8 * KIB, Span(155 * MS, 155 * MS)),),  # docs/storage-facts.md: 4-32 KB erase <= 155 ms (max only)
    erase_cycles=100_000,  # docs/storage-facts.md: 100k cycles
    sources=("Microchip SAM datasheet via docs/storage-facts.md",),
)

# SD card in SPI mode. docs/storage-facts.md rows "SD card, bus/busy/random IO" and "SD over SPI,
# measured". Managed: the card's controller hides erase; littlefs erase is a no-op (no CMD38).
SD_SPI = StorageProfile(
    name="sd-spi",
    description="SD card over SPI (1-bit, 25 MHz), 512 B blocks, 4 KB littlefs blocks",
    size=64 * 1024 * KIB,  # a 64 MB partition of the card is plenty for adapters
    sector_size=4 * KIB,  # littlefs block; A1/A2 figures are quoted at 4 KB
    page_size=512,  # SD block length
    write_align=512,
    read_latency=Span(1.2 * MS, 20 * MS),  # docs/storage-facts.md: SPI single-block read ~1.2-1.6 ms measured; 4 KB read <= 20 ms (spec)
    read_bandwidth=25e6 / 8,  # docs/storage-facts.md: SPI mode 1-bit <= 25 MHz, so <= ~3 MB/s
    program_latency=Span(2 * MS, 250 * MS),  # DERIVED typ: A1 >= 500 write IOPS at 4 KB -> 2 ms; max: write busy <= 250 ms (SDHC)
    program_page=ZERO,
    write_bandwidth=25e6 / 8,  # docs/storage-facts.md: same SPI bus
    trim=ZERO,  # no erase command issued: littlefs on SD needs none
    managed=True,
    sources=("SD Physical Layer Simplified Spec v4.10 tables 4-59/4-60", "SD Association bus speed and A1/A2",
             "community SPI measurements", "all via docs/storage-facts.md"),
)

# SD card over SDIO, 4-bit High Speed (the usual MCU SDMMC mode). Same sources as SD_SPI.
SD_SDIO = StorageProfile(
    name="sd-sdio",
    description="SD card over SDIO 4-bit High Speed (25 MB/s), 512 B blocks, 4 KB littlefs blocks",
    size=64 * 1024 * KIB,
    sector_size=4 * KIB,
    page_size=512,
    write_align=512,
    read_latency=Span(1 / 1500, 20 * MS),  # DERIVED typ: A1 >= 1500 read IOPS at 4 KB -> 0.67 ms; max: 4 KB read <= 20 ms
    read_bandwidth=25 * MB,  # docs/storage-facts.md: high speed 25 MB/s (4-bit)
    program_latency=Span(2 * MS, 250 * MS),  # DERIVED typ: A1 >= 500 write IOPS -> 2 ms; max: write busy <= 250 ms
    program_page=ZERO,
    write_bandwidth=25 * MB,
    trim=ZERO,
    managed=True,
    sources=("SD Physical Layer Simplified Spec v4.10", "SD Association", "via docs/storage-facts.md"),
)

# eMMC HS400. Bandwidths from docs/storage-facts.md row "eMMC HS400" (Gateworks MMC notes), lower end.
# Latencies are not in docs/storage-facts.md: DERIVED from its NAND cell row (HP SSD white paper):
# read = MLC 50 us typ / TLC ~75 us max; write = MLC program 600 us typ / TLC 1350 us max.
# Controller garbage-collection stalls are not modelled.
EMMC = StorageProfile(
    name="emmc-hs400",
    description="eMMC 5.x HS400, 512 B sectors, 4 KB littlefs blocks",
    size=256 * 1024 * KIB,
    sector_size=4 * KIB,
    page_size=512,
    write_align=512,
    read_latency=Span(50 * US, 75 * US),
    read_bandwidth=166 * MB,  # docs/storage-facts.md: ~166-217 MB/s read
    program_latency=Span(600 * US, 1350 * US),
    program_page=ZERO,
    write_bandwidth=40 * MB,  # docs/storage-facts.md: 40-76 MB/s write
    trim=ZERO,
    managed=True,
    sources=("Gateworks MMC notes", "HP SSD technology white paper", "via docs/storage-facts.md"),
)

# NVMe SSD on a gateway. docs/storage-facts.md row "NVMe": 4 KB QD1 read ~40-100 us (NAND);
# 3.4-6.2 GB/s sequential (lower end used for both directions). Write latency is not in
# docs/storage-facts.md: DERIVED from the NAND cell row, SLC program 200 / 300 us (writes land in the
# drive's SLC cache).
NVME = StorageProfile(
    name="nvme",
    description="NVMe SSD (NAND), 4 KB blocks",
    size=1024 * 1024 * KIB,
    sector_size=4 * KIB,
    page_size=4 * KIB,
    write_align=512,
    read_latency=Span(40 * US, 100 * US),
    read_bandwidth=3.4e9,
    program_latency=Span(200 * US, 300 * US),
    program_page=ZERO,
    write_bandwidth=3.4e9,
    trim=ZERO,
    managed=True,
    sources=("public NVMe benchmarks", "HP SSD technology white paper", "via docs/storage-facts.md"),
)

PROFILES: dict[str, StorageProfile] = {p.name: p for p in (W25Q128JV, STM32F4_INTERNAL, SAM_INTERNAL,
                                                           SD_SPI, SD_SDIO, EMMC, NVME)}


# ------------------------------------------------------------------------------------ time

def op_seconds(op: FlashOp, profile: StorageProfile, worst: bool = False) -> float:
    """Seconds one operation takes on `profile` (typical, or datasheet maximum if `worst`)."""
    if op.kind is OpKind.READ:
        return profile.read_latency.pick(worst) + op.length / profile.read_bandwidth
    if op.kind is OpKind.PROGRAM:
        return (profile.program_latency.pick(worst) + op.pages * profile.program_page.pick(worst)
                + op.length / profile.write_bandwidth)
    return sum(profile.erase_time(size, worst) for size in op.erased)


def elapsed(counters_or_ops: Union[FlashCounters, Iterable[FlashOp]], profile: StorageProfile,
            worst: bool = False) -> float:
    """Seconds the counted work takes on `profile`: a pure function, no clock involved.

    Accepts a `FlashCounters` snapshot (or a difference of two) or an op log; both give the
    same total because every cost is linear in the counters.
    """
    if not isinstance(counters_or_ops, FlashCounters):
        return sum(op_seconds(op, profile, worst) for op in counters_or_ops)
    c = counters_or_ops
    if c.program_pages and c.page_size != profile.page_size:
        raise ProfileError(
            f"counters were taken with {c.page_size}-byte pages, profile {profile.name} programs "
            f"{profile.page_size}-byte pages")
    t = c.read_ops * profile.read_latency.pick(worst) + c.read_bytes / profile.read_bandwidth
    t += (c.program_ops * profile.program_latency.pick(worst)
          + c.program_pages * profile.program_page.pick(worst)
          + c.program_bytes / profile.write_bandwidth)
    t += sum(n * profile.erase_time(size, worst) for n, size in zip(c.sector_erases, c.sector_sizes) if n)
    return t


class SimClock:
    """Simulated time, advanced by each flash operation's cost (no sleeping, no wall clock).

    Pass it as `FlashDevice(..., clock=SimClock(profile))`. `advance()` adds non-flash time
    (inference, verification). With `record=True`, `events` holds (start, duration, kind)
    tuples for a device timeline trace.
    """

    def __init__(self, profile: StorageProfile, worst: bool = False, start: float = 0.0,
                 record: bool = False) -> None:
        self.profile = profile
        self.worst = worst
        self.now = start
        self.events: list[tuple[float, float, str]] | None = [] if record else None

    def charge(self, op: FlashOp) -> None:
        self._add(op_seconds(op, self.profile, self.worst), op.kind.value)

    def advance(self, seconds: float, label: str = "cpu") -> None:
        if seconds < 0:
            raise ValueError(f"time cannot go backwards ({seconds} s)")
        self._add(seconds, label)

    def _add(self, seconds: float, label: str) -> None:
        if self.events is not None:
            self.events.append((self.now, seconds, label))
        self.now += seconds


__all__ = [
    "EMMC", "NVME", "PROFILES", "SAM_INTERNAL", "SD_SDIO", "SD_SPI", "STM32F4_INTERNAL", "W25Q128JV",
    "SimClock", "Span", "StorageProfile", "elapsed", "op_seconds",
]
