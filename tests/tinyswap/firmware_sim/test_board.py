"""Board sizing: parts on one supply, partitions on sector boundaries, RAM budgets refused early."""

from __future__ import annotations

import dataclasses

import pytest

from tinyswap.firmware_sim.board import FlashOptions, RamBudget, ram_budget, size_board, slot_erase_budget
from tinyswap.firmware_sim.device import Device
from tinyswap.firmware_sim.errors import LayoutError, PackageTooLargeError, PowerLoss, RamBudgetError
from tinyswap.firmware_sim.flash import KIB, FlashGeometry
from tinyswap.firmware_sim.power import PowerCut
from tinyswap.firmware_sim.profiles import DEVICES, MCU_QSPI, MCU_RAM
from tinyswap.firmware_sim.storage import W25Q128JV
from tinyswap.firmware_sim.timeline import Timeline

from tests.tinyswap.firmware_sim.device_cases import KEYRING, bundle_for, packages_for

B = bundle_for(4096)
P = packages_for(4096)


def board(profile=MCU_QSPI, model_bytes: int = len(B.data), **opts):
    return size_board(profile, model_bytes, FlashOptions(**opts), ram_budget(profile, model_bytes), Timeline())


def on_boundaries(g: FlashGeometry, offset: int, size: int) -> bool:
    return g.is_sector_boundary(offset) and g.is_sector_boundary(offset + size)


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_partitions_are_whole_sectors_and_do_not_overlap(name):
    b = board(DEVICES[name])
    parts = b.partitions
    for p in parts.values():
        assert on_boundaries(p.geometry, p.offset, p.size)
    model, meta = parts["model"], parts["metadata"]
    assert model.flash is meta.flash and model.offset == 0 and model.size >= len(B.data)
    assert meta.offset >= model.offset + model.size
    store = parts["store"]
    if store.flash is model.flash:
        assert store.offset >= meta.offset + meta.size and store.offset + store.size <= model.flash.size
    assert len(set(store.sectors)) == 1  # littlefs blocks are uniform


def test_mcu_qspi_keeps_the_store_on_a_second_part_on_the_same_supply():
    b = board(MCU_QSPI)
    assert set(b.flashes) == {"model", "store"}
    assert b.flashes["store"].geometry.managed and not b.flashes["model"].geometry.managed  # SD vs NOR
    assert all(f.supply is b.supply for f in b.flashes.values())
    b.supply.arm([PowerCut(1)])
    with pytest.raises(PowerLoss):
        b.partitions["store"].program(0, bytes(512))
    assert not b.flashes["model"].powered  # one cut stops both parts


def test_mcu_ram_shares_its_nor_and_the_nor_is_only_as_large_as_needed():
    store_bytes = 128 * KIB
    b = board(MCU_RAM, store_bytes=store_bytes)
    assert set(b.flashes) == {"model"} and b.layout.store_shared
    g = b.flashes["model"].geometry
    sector = W25Q128JV.sector_size
    need = -(-len(B.data) // sector) * sector + 2 * sector + store_bytes
    assert g.size == need  # the fewest 4 KB sectors that hold model, two metadata areas, store
    assert g.size < W25Q128JV.size


def test_contradictory_store_options_are_refused():
    with pytest.raises(LayoutError):
        board(MCU_RAM, shared_store=True, store_geometry=FlashGeometry.uniform(4096, 8))


@pytest.mark.parametrize("cycles, budget", [(None, None), (10, 9), (100, 98), (100_000, 98_999)])
def test_slot_erase_budget(cycles, budget):
    """emubd: erase number `cycles` is the one that wears a sector out, so at most cycles - 1
    erases are safe; 1% of the cycles is kept for erases a power cut hid from the record."""
    assert slot_erase_budget(cycles) == budget
    if cycles is not None:
        assert budget < cycles and budget >= cycles - 1 - cycles / 100


def test_ram_budget_refusals():
    with pytest.raises(RamBudgetError, match="cache budget"):
        RamBudget("dev", 1000, 100, 100, 200, 0, 0)
    ok = RamBudget("dev", ram_bytes=1000, arena=500, cache=300, max_package=300, model_copy=100, model_budget=150)
    ok.check(500)  # 500 + 300 + 100 = 900 <= 1000
    with pytest.raises(RamBudgetError, match="arena budget"):
        ok.check(501)
    roomy = dataclasses.replace(ok, arena=700, model_copy=150)
    roomy.check(550)  # 550 + 300 + 150 = 1000: exactly fits
    with pytest.raises(RamBudgetError, match="exceed the 1000 bytes"):
        roomy.check(551)
    with pytest.raises(RamBudgetError, match="model budget"):
        dataclasses.replace(ok, model_copy=151).check(0)


def test_ram_budget_of_a_profile():
    xip = ram_budget(MCU_QSPI, 10_000)
    assert (xip.arena, xip.cache, xip.max_package, xip.model_copy) == (
        MCU_QSPI.arena_budget, MCU_QSPI.cache_budget, MCU_QSPI.cache_budget, 0)
    ram = ram_budget(MCU_RAM, 10_000, cache_budget=4096, max_package_bytes=1024)
    assert (ram.cache, ram.max_package, ram.model_copy) == (4096, 1024, 10_000)


def test_the_device_refuses_its_budgets_before_any_write():
    with pytest.raises(RamBudgetError, match="cache budget"):
        Device("mcu-qspi", B.data, B.smap, KEYRING, cache_budget=4096, max_package_bytes=8192)
    d = Device("mcu-qspi", B.data, B.smap, KEYRING, arena_budget=1024)
    d.provision()
    frozen = d.flash_images()
    writes = {n: f.snapshot().mutating_ops for n, f in d.flashes.items()}
    with pytest.raises(RamBudgetError, match="arena"):
        d.boot()
    assert d.flash_images() == frozen and {n: f.snapshot().mutating_ops for n, f in d.flashes.items()} == writes
    assert not d.booted
    small = Device("mcu-qspi", B.data, B.smap, KEYRING, cache_budget=1024)
    small.provision()
    small.boot()
    with pytest.raises(PackageTooLargeError):
        small.install(P["A1"])
