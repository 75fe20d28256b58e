"""Driver-level helpers every writer of raw flash needs: erase whole sectors, program in chunks.

Why one place: the model image (slot writes) and the metadata partition (records) must issue
the same commands a real driver would, so that the operation counts, the power-cut points and
the simulated time of a swap are those of firmware, not of a convenient bulk copy.

* Erase: one command per sector (a NOR driver issues a 4 KB sector erase per sector; internal
  MCU flash erases one sector per command), so a cut can land between the sectors of a range.
* Program: in chunks of `program_chunk(geometry)` bytes (whole pages, at least 256 bytes:
  a QSPI page program carries <= 256 bytes, W25Q-JV datasheet; word-programmed internal flash
  is streamed 256 bytes per driver call), in address order.
* Chunks that are entirely the erase value are not programmed on raw flash: the erase
  already left those bytes there (a driver that skips them wastes no I/O). Managed media
  (SD, eMMC, NVMe) overwrite in place and never skip, because their erase is a no-op trim
  that leaves the old bytes readable.
"""

from __future__ import annotations

from tinyswap.firmware_sim.flash import FlashGeometry, Partition

DRIVER_CHUNK = 256  # bytes a driver hands the part per program call (one NOR page)


def program_chunk(geometry: FlashGeometry) -> int:
    """Bytes per program command: whole pages, at least `DRIVER_CHUNK` bytes."""
    page = geometry.page_size
    return page * max(1, DRIVER_CHUNK // page)


def pad_to_unit(data: bytes, geometry: FlashGeometry) -> bytes:
    """`data` padded with the erase value to a whole number of write units."""
    unit = geometry.write_align
    rest = -len(data) % unit
    return data + bytes([geometry.erase_value]) * rest


def erase_sectors(part: Partition, offset: int, length: int) -> int:
    """Erase every sector of [offset, offset + length) (partition offsets), one command each.

    Managed media need no erase before a write: nothing is issued there. Returns the number of
    erase commands issued.
    """
    g = part.geometry
    if g.managed or length <= 0:
        return 0
    count = 0
    for s in g.sectors_in(part.offset + offset, length):
        part.erase(g.sector_start(s) - part.offset, g.sectors[s])
        count += 1
    return count


def program_range(part: Partition, offset: int, data: bytes) -> int:
    """Program `data` (a whole number of write units) at `offset` into freshly erased flash.

    Returns the number of program commands issued.
    """
    g = part.geometry
    chunk = program_chunk(g)
    blank = bytes([g.erase_value]) * chunk
    count = 0
    pos = 0
    while pos < len(data):
        # Chunks follow the part's chunk grid, so no command straddles a page boundary.
        absolute = part.offset + offset + pos
        n = min(chunk - absolute % chunk, len(data) - pos)
        piece = data[pos:pos + n]
        if g.managed or piece != blank[:n]:
            part.program(offset + pos, piece)
            count += 1
        pos += n
    return count


def program_runs(part: Partition, offset: int, data: bytes, runs: list[tuple[int, int]]) -> int:
    """Program only the runs [start, end) of `data` (relative to `offset`), each as
    `program_range` would: the rest of the range is left as it is (erased, or programmed before).
    Returns the number of program commands issued."""
    return sum(program_range(part, offset + start, data[start:end]) for start, end in runs if end > start)


def split_units(length: int, spans: list[tuple[int, int]], unit: int, base: int = 0
                ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]] | None:
    """[0, length) split into the runs covered by `spans` ((start, length) pairs) and the runs
    between them, as [start, end) lists; None if a write unit (of `unit` bytes, counted from
    `base`) would hold bytes of both kinds, which then could not be programmed at different times."""
    covered: list[tuple[int, int]] = []
    for start, n in sorted(spans):
        if n <= 0:
            continue
        if covered and start <= covered[-1][1]:
            covered[-1] = (covered[-1][0], max(covered[-1][1], start + n))
        else:
            covered.append((start, start + n))
    between, pos = [], 0
    for start, end in covered:
        if (start > 0 and (base + start) % unit) or (end < length and (base + end) % unit):
            return None
        if start > pos:
            between.append((pos, start))
        pos = end
    if pos < length:
        between.append((pos, length))
    return covered, between


__all__ = ["DRIVER_CHUNK", "erase_sectors", "pad_to_unit", "program_chunk", "program_range", "program_runs",
           "split_units"]
