"""Board sizing: from a device profile and a model, the flash parts, partitions and RAM budgets.

Why its own module: what a board *is* (how big each part is, where each partition sits, what
RAM is left for the arena and the package cache, how many erases a slot sector may take) is
decided once, before anything runs, and is pure arithmetic over the profile; the device only
runs on it. Everything here validates before a single flash part exists, so a board that
cannot work is refused with a typed error and nothing half-built.

One `PowerSupply` feeds every part of the board: a power cut stops the model flash and the
store's medium at the same instant, and cut points are numbered across both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from tinyswap.firmware_sim.errors import LayoutError, RamBudgetError
from tinyswap.firmware_sim.flash import BadBlock, FlashDevice, FlashGeometry, Partition
from tinyswap.firmware_sim.layout import DeviceLayout, plan_layout, sized_geometry
from tinyswap.firmware_sim.power import PowerSupply
from tinyswap.firmware_sim.profiles import DeviceProfile, ModelPlacement
from tinyswap.firmware_sim.storage import StorageProfile
from tinyswap.firmware_sim.timeline import Timeline

KIB = 1024

# Part and partition names, as `Device.flashes` / `Device.partitions` / `flash_images()` key them.
MODEL_PART = "model"
STORE_PART = "store"
MODEL_PARTITION = "model"
METADATA_PARTITION = "metadata"
STORE_PARTITION = "store"


@dataclass(frozen=True)
class FlashOptions:
    """The flash-side choices a device is built with (None: the profile's default)."""

    model_geometry: FlashGeometry | None = None
    store_geometry: FlashGeometry | None = None
    shared_store: bool | None = None
    model_storage: StorageProfile | None = None
    store_storage: StorageProfile | None = None
    store_bytes: int = 256 * KIB
    metadata_area_bytes: int = 4 * KIB
    metadata_areas: int = 2
    badblock: BadBlock = BadBlock.PROGERROR


@dataclass(frozen=True)
class RamBudget:
    """RAM for the interpreter arena, the package cache and (RAM placement) the model copy."""

    device: str
    ram_bytes: int
    arena: int
    cache: int
    max_package: int  # the largest package accepted: it must fit the cache to be verified
    model_copy: int  # bytes of the model's RAM copy (0 when it is read in place)
    model_budget: int  # the most RAM the model copy may take

    def __post_init__(self) -> None:
        if self.max_package > self.cache:
            raise RamBudgetError(f"max_package_bytes {self.max_package} exceeds the package cache budget "
                                 f"{self.cache}: a package must fit the cache to be verified and staged")

    def check(self, arena_bytes: int) -> None:
        """Refuse a model whose copy or arena does not fit (run at boot, before any write)."""
        if self.model_copy > self.model_budget:
            raise RamBudgetError(f"the {self.model_copy}-byte model exceeds the RAM model budget "
                                 f"{self.model_budget} of {self.device}")
        if arena_bytes > self.arena:
            raise RamBudgetError(f"the interpreter arena needs {arena_bytes} bytes, over the arena budget "
                                 f"{self.arena} of {self.device}")
        used = arena_bytes + self.cache + self.model_copy
        if used > self.ram_bytes:
            raise RamBudgetError(f"arena {arena_bytes} + package cache {self.cache} + model copy {self.model_copy} = "
                                 f"{used} bytes exceed the {self.ram_bytes} bytes of RAM of {self.device}")


@dataclass(frozen=True)
class Board:
    """The sized hardware: parts on one supply, their partitions, timings and budgets."""

    layout: DeviceLayout
    supply: PowerSupply
    flashes: dict[str, FlashDevice]
    partitions: dict[str, Partition]
    model_storage: StorageProfile
    store_storage: StorageProfile
    slot_erase_budget: int | None  # erases a slot sector may take (None: no wear model)
    ram: RamBudget


def ram_budget(profile: DeviceProfile, model_bytes: int, *, arena_budget: int | None = None,
               cache_budget: int | None = None, max_package_bytes: int | None = None) -> RamBudget:
    """The profile's RAM budgets, with overrides; the package limit defaults to the cache."""
    cache = profile.cache_budget if cache_budget is None else cache_budget
    in_place = profile.model_placement is ModelPlacement.XIP
    return RamBudget(profile.name, profile.ram_bytes, profile.arena_budget if arena_budget is None else arena_budget,
                     cache, cache if max_package_bytes is None else max_package_bytes,
                     0 if in_place else model_bytes, profile.model_budget)


def slot_erase_budget(erase_cycles: int | None) -> int | None:
    """Erases the firmware allows a slot sector before retiring it.

    littlefs emubd: a sector is bad once wear >= erase_cycles, so erase number `cycles` is the
    first that leaves it unprogrammable; keep 1% in reserve for erases a power cut kept out of
    the persisted count.
    """
    if erase_cycles is None:
        return None
    return erase_cycles - 1 - erase_cycles // 100


def _geometries(profile: DeviceProfile, model_bytes: int, opts: FlashOptions
                ) -> tuple[FlashGeometry, FlashGeometry | None, StorageProfile, StorageProfile]:
    """The model part, the store part (None: the store shares the model part) and their timings."""
    model_storage = opts.model_storage or profile.model_storage
    store_storage = opts.store_storage or profile.adapter_storage
    shared = opts.shared_store
    if shared is None:
        shared = opts.store_geometry is None and profile.adapter_storage is profile.model_storage
    if shared and opts.store_geometry is not None:
        raise LayoutError("shared_store=True and a store_geometry contradict each other")
    model_geometry = opts.model_geometry
    if model_geometry is None:
        base = model_storage.geometry()
        sector = base.uniform_sector_size
        if sector is None:  # a mixed map is used whole: its sizes are the part's
            model_geometry = base
        else:
            need = -(-model_bytes // sector) * sector
            need += opts.metadata_areas * -(-opts.metadata_area_bytes // sector) * sector
            need += opts.store_bytes if shared else 0
            model_geometry = sized_geometry(base, need)
    if shared:
        return model_geometry, None, model_storage, model_storage
    store_geometry = opts.store_geometry or store_storage.geometry(opts.store_bytes)
    return model_geometry, store_geometry, model_storage, store_storage


def size_board(profile: DeviceProfile, model_bytes: int, opts: FlashOptions, ram: RamBudget, timeline: Timeline,
               flash_images: Mapping[str, bytes] | None = None) -> Board:
    """Size and build the board: parts (from `flash_images` when given), partitions, budgets."""
    model_geometry, store_geometry, model_storage, store_storage = _geometries(profile, model_bytes, opts)
    layout = plan_layout(model_geometry, model_bytes, metadata_area_bytes=opts.metadata_area_bytes,
                         metadata_areas=opts.metadata_areas, store_geometry=store_geometry,
                         store_bytes=opts.store_bytes)
    images = dict(flash_images or {})
    supply = PowerSupply()
    flashes = {MODEL_PART: FlashDevice(model_geometry, image=images.get(MODEL_PART), badblock=opts.badblock,
                                       clock=timeline.timer(f"flash:{MODEL_PART}", model_storage), supply=supply)}
    if store_geometry is not None:
        flashes[STORE_PART] = FlashDevice(store_geometry, image=images.get(STORE_PART), badblock=opts.badblock,
                                          clock=timeline.timer(f"flash:{STORE_PART}", store_storage), supply=supply)
    model_flash = flashes[MODEL_PART]
    store_flash = flashes.get(STORE_PART, model_flash)
    partitions = {
        MODEL_PARTITION: Partition(model_flash, layout.model.offset, layout.model.size, "model"),
        METADATA_PARTITION: Partition(model_flash, layout.metadata.offset, layout.metadata.size, "metadata"),
        STORE_PARTITION: Partition(store_flash, layout.store.offset, layout.store.size, "adapters"),
    }
    return Board(layout, supply, flashes, partitions, model_storage, store_storage,
                 slot_erase_budget(model_geometry.erase_cycles), ram)


__all__ = ["Board", "FlashOptions", "RamBudget", "ram_budget", "size_board", "slot_erase_budget"]
