"""Where the model, the metadata and the adapter store live: partitions on the device's flash.

Why a planner: partitions must start and end on sector boundaries (an erase in one must never
touch another), the metadata needs an equal number of sectors per area, and LittleFS needs
uniform blocks, which a mixed sector map (STM32F4: 16/64/128 KB) offers only in its tail.

Order on the model flash: model image (from address 0, whole sectors) | metadata areas |
adapter store (when it shares the part: the uniform-sector tail). A device with a second
medium (`mcu-qspi`: adapters on SD) gives the store the whole of that medium.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyswap.firmware_sim.errors import LayoutError
from tinyswap.firmware_sim.flash import FlashGeometry

MIN_STORE_BLOCKS = 2  # littlefs needs its superblock pair


@dataclass(frozen=True)
class Region:
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class DeviceLayout:
    """Partition regions. `store_shared`: the store is on the model flash (else on its own part)."""

    model: Region
    metadata: Region
    metadata_areas: int
    store: Region
    store_shared: bool


def _take(geometry: FlashGeometry, start_sector: int, at_least: int) -> int:
    """Index one past the sectors needed, from `start_sector`, to hold `at_least` bytes."""
    total, s = 0, start_sector
    while total < at_least:
        if s >= geometry.sector_count:
            raise LayoutError(f"{geometry.name}: {at_least} bytes from sector {start_sector} do not fit "
                              f"the part ({geometry.size} bytes)")
        total += geometry.sectors[s]
        s += 1
    return s


def plan_layout(model_geometry: FlashGeometry, model_bytes: int, *, metadata_area_bytes: int,
                metadata_areas: int = 2, store_geometry: FlashGeometry | None = None,
                store_bytes: int | None = None) -> DeviceLayout:
    """Place the partitions. With `store_geometry` None the store takes the uniform tail of the
    model flash after the metadata (at most `store_bytes` of it, when given)."""
    g = model_geometry
    if model_bytes <= 0:
        raise LayoutError(f"model size must be positive, got {model_bytes}")
    end_model = _take(g, 0, model_bytes)
    model = Region(0, g.sector_start(end_model - 1) + g.sectors[end_model - 1])
    # Each area must be the same number of sectors: take the largest per-area count.
    counts, t = [], end_model
    for _ in range(metadata_areas):
        nxt = _take(g, t, metadata_area_bytes)
        counts.append(nxt - t)
        t = nxt
    per = max(counts)
    s = end_model + per * metadata_areas
    if s > g.sector_count:
        raise LayoutError(f"{g.name}: the metadata areas do not fit after the model")
    meta_end = g.size if s == g.sector_count else g.sector_start(s)
    metadata = Region(model.end, meta_end - model.end)
    if store_geometry is not None:
        size = store_geometry.size if store_bytes is None else min(store_bytes, store_geometry.size)
        blocks = size // store_geometry.sectors[0]
        if store_geometry.uniform_sector_size is None or blocks < MIN_STORE_BLOCKS:
            raise LayoutError(f"{store_geometry.name}: the adapter store needs >= {MIN_STORE_BLOCKS} uniform sectors")
        return DeviceLayout(model, metadata, metadata_areas, Region(0, blocks * store_geometry.sectors[0]), False)
    rest = g.sectors[s:]
    if not rest:
        raise LayoutError(f"{g.name}: no room for the adapter store after the metadata")
    # The uniform tail: littlefs blocks are all one size.
    tail = len(rest)
    while tail > 0 and rest[tail - 1] == rest[-1]:
        tail -= 1
    first = s + tail
    block = g.sectors[first]
    count = g.sector_count - first
    if store_bytes is not None:
        count = min(count, max(MIN_STORE_BLOCKS, store_bytes // block))
    if count < MIN_STORE_BLOCKS:
        raise LayoutError(f"{g.name}: only {count} uniform sector(s) of {block} bytes left for the adapter store "
                          f"(needs >= {MIN_STORE_BLOCKS})")
    return DeviceLayout(model, metadata, metadata_areas, Region(g.sector_start(first), count * block), True)


def sized_geometry(base: FlashGeometry, needed: int) -> FlashGeometry:
    """`base` cut down to the fewest leading sectors holding `needed` bytes (tests and small
    devices do not need a 16 MB image)."""
    end = _take(base, 0, needed)
    return FlashGeometry(sectors=base.sectors[:end], erase_value=base.erase_value, write_align=base.write_align,
                         page_size=base.page_size, erase_cycles=base.erase_cycles, managed=base.managed,
                         name=base.name)


__all__ = ["DeviceLayout", "MIN_STORE_BLOCKS", "Region", "plan_layout", "sized_geometry"]
