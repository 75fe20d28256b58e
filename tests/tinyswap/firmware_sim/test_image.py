"""Model images on the simulated device: XIP reads in place, slot writes cover whole sectors,
misaligned slot ranges are refused before anything is touched, the RAM variant."""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap.firmware_sim.errors import PowerLoss, SlotAlignmentError, SlotWriteError
from tinyswap.firmware_sim.flash import KIB, BadBlock, CutPoint, FailRange, FaultPlan, FlashDevice, FlashGeometry, Partition
from tinyswap.firmware_sim.flashio import program_chunk
from tinyswap.firmware_sim.model_image import FlashModelImage, RamModelImage, SlotTemplate
from tinyswap.image import ImageWriteError
from tinyswap.slotmap import SlotMap
from tinyswap.swap import SwapManager

from tests.adapter_cases import gates_for_rows, slot_holding, tflm_rows
from tests.tinyswap.firmware_sim.device_cases import KEYRING, bundle_for, inputs, packages_for


def flash_with(model: bytes, sector: int = 4 * KIB, erase_value: int = 0xFF, write_align: int = 1,
               **kw) -> tuple[FlashDevice, Partition]:
    n = -(-len(model) // sector) + 1
    f = FlashDevice(FlashGeometry.uniform(sector, n, erase_value=erase_value, write_align=write_align, **kw))
    part = Partition(f, 0, (n - 1) * sector, "model")
    padded = model + bytes([erase_value]) * (-len(model) % write_align)
    for s in range(n - 1):
        part.erase(s * sector, sector)
    part.program(0, padded)
    return f, part


def test_xip_buffer_is_the_live_flash_and_swaps_match_tflm():
    b = bundle_for(4096)
    p = packages_for(4096)
    f, part = flash_with(b.data)
    image = FlashModelImage(part, len(b.data), template=SlotTemplate(SlotMap.from_json(b.smap), b.data))
    m = SwapManager(image, b.smap, KEYRING)
    x = inputs(3)
    base = m.infer(x)[0]
    m.load_adapter(p["A1"])
    m.set_adapter("A")
    y = m.infer(x)[0]  # the interpreter built before the write sees the new bytes: zero copy
    flash_now = f.image_bytes(0, len(b.data))
    slot = slot_holding(b.smap, flash_now, p["A1"])
    assert slot is not None
    np.testing.assert_array_equal(y, tflm_rows(flash_now, x, gates_for_rows(b.smap, [{slot: 1.0}] * 3)))
    assert np.mean(y != base) > 0.2
    assert bytes(image.buffer) == flash_now


def test_slot_write_erases_and_programs_only_the_slot_sectors():
    b = bundle_for(4096)
    smap = b.smap
    f, part = flash_with(b.data)
    image = FlashModelImage(part, len(b.data))
    before = f.snapshot()
    info = smap["slots"][1]
    data = bytes(range(256)) * (info["length"] // 256)
    image.write(info["offset"], data)
    d = f.snapshot() - before
    slot_sector = info["offset"] // (4 * KIB)
    assert d.sector_erases[slot_sector] == 1 and sum(d.sector_erases) == 1
    assert d.erase_ops == 1
    assert d.program_ops == info["length"] // program_chunk(f.geometry)
    assert [i for i, n in enumerate(d.sector_programs) if n] == [slot_sector]
    assert f.image_bytes(info["offset"], info["length"]) == data
    assert f.image_bytes(0, info["offset"]) == b.data[:info["offset"]]  # base untouched


def test_blank_chunks_are_not_programmed_on_raw_flash():
    b = bundle_for(4096)
    f, part = flash_with(b.data, erase_value=0x00)
    image = FlashModelImage(part, len(b.data))
    info = b.smap["slots"][0]
    data = bytearray(info["length"])
    data[300:310] = b"\x01" * 10  # one non-blank chunk
    before = f.snapshot()
    image.write(info["offset"], bytes(data))
    assert (f.snapshot() - before).program_ops == 1
    assert f.image_bytes(info["offset"], info["length"]) == bytes(data)


@pytest.mark.parametrize("sector", [4 * KIB, 8 * KIB])
def test_a_bundle_aligned_to_16_bytes_is_refused_on_a_sector_part(sector):
    """Slot ranges sharing a sector with base-model bytes: refused before any flash operation."""
    b = bundle_for(16)
    f, part = flash_with(b.data, sector=sector)
    image = FlashModelImage(part, len(b.data))
    frozen, before = f.image_bytes(), f.snapshot()
    with pytest.raises(SlotAlignmentError) as err:
        image.check_slots(SlotMap.from_json(b.smap))
    info = b.smap["slots"][0]
    msg = str(err.value)
    assert f"{sector}-byte sectors" in msg and f"{info['offset']:#x}" in msg and "base-model" in msg
    with pytest.raises(SlotAlignmentError):
        image.write(info["offset"], bytes(info["length"]))
    with pytest.raises(ImageWriteError):  # also the runtime's own image error type
        image.write(info["offset"], bytes(info["length"]))
    assert f.image_bytes() == frozen and f.snapshot() == before


def test_ram_image_accepts_any_alignment_and_never_writes_flash():
    b = bundle_for(16)
    p = packages_for(16)
    f, part = flash_with(b.data)
    before = f.snapshot()
    image = RamModelImage.load(part, len(b.data))
    d = f.snapshot() - before
    assert (d.read_ops, d.read_bytes, d.mutating_ops) == (1, len(b.data), 0)
    m = SwapManager(image, b.smap, KEYRING)
    m.load_adapter(p["A1"])
    x = inputs(2)
    y = m.infer(x, adapters="A")[0]
    ram = bytes(image.buffer)
    slot = slot_holding(b.smap, ram, p["A1"])
    np.testing.assert_array_equal(y, tflm_rows(ram, x, gates_for_rows(b.smap, [{slot: 1.0}] * 2)))
    assert (f.snapshot() - before).mutating_ops == 0
    assert f.image_bytes(0, len(b.data)) == b.data


def test_flash_failures_become_slot_write_errors_and_power_loss_passes_through():
    b = bundle_for(4096)
    info = b.smap["slots"][0]
    f, part = flash_with(b.data)
    image = FlashModelImage(part, len(b.data))
    f.arm(FaultPlan(failures=(FailRange(info["offset"], info["offset"] + 1, 1.0, erases=True),)))
    with pytest.raises(SlotWriteError) as err:
        image.write(info["offset"], bytes(info["length"]))
    assert "injected failure" in str(err.value.__cause__)
    f.arm(FaultPlan.cut(2, CutPoint.TORN))
    with pytest.raises(PowerLoss):
        image.write(info["offset"], bytes(info["length"]))


def test_worn_slot_sector_reports_a_typed_error():
    b = bundle_for(4096)
    info = b.smap["slots"][0]
    f, part = flash_with(b.data, erase_cycles=3)
    f.badblock = BadBlock.ERASEERROR
    image = FlashModelImage(part, len(b.data))
    f.set_wear(info["offset"] // (4 * KIB), 3)
    with pytest.raises(SlotWriteError):
        image.write(info["offset"], bytes(info["length"]))


def test_template_restores_structure_bytes_of_an_interrupted_slot():
    b = bundle_for(4096)
    smap = SlotMap.from_json(b.smap)
    tpl = SlotTemplate(smap, b.data)
    info = smap.slots[1]
    damaged = bytearray(b.data)
    damaged[info.offset:info.offset + info.length] = b"\xff" * info.length  # erased, never programmed
    assert tpl.intact(b.data, info.offset) and not tpl.intact(damaged, info.offset)
    blank = tpl.blank(info.offset)
    assert b.data[info.offset:info.offset + info.length] == blank  # the factory slot is blank
    garbage = tpl.conform(info.offset, b"\xff" * info.length)
    damaged[info.offset:info.offset + info.length] = garbage
    assert tpl.intact(damaged, info.offset)
