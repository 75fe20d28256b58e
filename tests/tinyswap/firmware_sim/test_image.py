"""Model images on the simulated device: XIP reads in place, slot writes cover whole sectors,
misaligned slot ranges are refused before anything is touched, an interrupted slot's frame is
rewritten by the swap manager's clear path, driver bugs stay misuse errors, the RAM variant."""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap.firmware_sim import model_image
from tinyswap.firmware_sim.errors import (
    AlignmentError,
    FlashError,
    FlashMisuseError,
    PowerLoss,
    SlotAlignmentError,
    SlotWornError,
    SlotWriteError,
    UnerasedWriteError,
    WearNotRecordedError,
)
from tinyswap.firmware_sim.flash import KIB, BadBlock, CutPoint, FailRange, FaultPlan, FlashDevice, FlashGeometry, Partition
from tinyswap.firmware_sim.flashio import program_chunk, split_units
from tinyswap.firmware_sim.model_image import FlashModelImage, RamModelImage
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
    image = FlashModelImage(part, len(b.data))
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


def test_clear_slot_rewrites_the_frame_of_an_interrupted_slot():
    """A cut between a slot's erase and its program leaves the slot's frame (the flatbuffer
    length prefixes between its tensors) at the erase value and the model unparseable. The
    slot map knows the frame; the swap manager's clear path writes frame + zero tensors."""
    b = bundle_for(4096)
    smap = SlotMap.from_json(b.smap)
    info = smap.slots[1]
    damaged = bytearray(b.data)
    damaged[info.offset:info.offset + info.length] = b"\xff" * info.length  # erased, never programmed
    f, part = flash_with(bytes(damaged))
    image = FlashModelImage(part, len(b.data))
    assert smap.damaged_frames(b.data) == [] and smap.damaged_frames(image.buffer) == [1]
    m = SwapManager(image, b.smap, KEYRING)
    before = f.snapshot()
    m.clear_slot(1)
    assert smap.damaged_frames(image.buffer) == []
    assert f.image_bytes(0, len(b.data)) == b.data  # the factory slot is exactly frame + zeros
    assert (f.snapshot() - before).erase_ops == 1  # one whole-range write, not a byte-wise rebuild
    x = inputs(2)
    np.testing.assert_array_equal(m.infer(x)[0], tflm_rows(b.data, x, gates_for_rows(b.smap, [{}] * 2)))


def _forgetful_erase(monkeypatch) -> None:
    """A driver bug: the slot write programs without erasing first."""
    monkeypatch.setattr(model_image, "erase_sectors", lambda part, offset, length: 0)


def _misaligned_program(monkeypatch) -> None:
    """A driver bug: the slot write programs one byte past where it should."""
    real = model_image.program_runs
    monkeypatch.setattr(model_image, "program_runs",
                        lambda part, offset, data, runs: real(part, offset + 1, data[:-8], [(0, len(data) - 8)]))


@pytest.mark.parametrize("bug, error", [(_forgetful_erase, UnerasedWriteError), (_misaligned_program, AlignmentError)],
                         ids=["unerased", "misaligned"])
def test_a_driver_bug_stays_a_misuse_error_and_never_retires_the_slot(monkeypatch, bug, error):
    b = bundle_for(4096)
    p = packages_for(4096)
    f, part = flash_with(b.data, write_align=8)
    image = FlashModelImage(part, len(b.data))
    info = b.smap["slots"][0]
    bug(monkeypatch)
    with pytest.raises(error) as err:  # the image does not turn it into a slot write failure
        image.write(info["offset"], bytes(range(256)) * (info["length"] // 256))
    assert isinstance(err.value, FlashMisuseError)
    assert not isinstance(err.value, (FlashError, SlotWriteError))
    # through the swap manager: the misuse propagates, the slot is neither enabled nor retired
    m = SwapManager(image, b.smap, KEYRING)
    with pytest.raises(error):
        m.load_adapter(p["A1"])
    state = m.export_state()
    assert state["retired"] == [] and all(s["digest"] is None for s in state["slots"])


def test_an_unrecorded_erase_blocks_writes_except_a_boot_repair_and_the_budget_always_holds():
    b = bundle_for(4096)
    info = b.smap["slots"][0]
    f, part = flash_with(b.data)
    sector = info["offset"] // (4 * KIB)
    image = FlashModelImage(part, len(b.data), erase_budget=3, erase_counts={sector: 1})
    image.note_interrupted_erase(info["offset"], info["length"])  # found at boot, not yet persisted
    blank = b.data[info["offset"]:info["offset"] + info["length"]]
    with pytest.raises(WearNotRecordedError):
        image.write(info["offset"], blank)
    with image.repairing():
        image.write(info["offset"], blank)  # the frame must come back for the model to parse
    assert image.erase_counts[sector] == 3 and image.persisted == {sector: 1}
    image.mark_persisted()
    with image.repairing(), pytest.raises(SlotWornError):
        image.write(info["offset"], blank)  # budget used: refused even for a repair
    assert f.image_bytes(0, len(b.data)) == b.data


def test_split_units_refuses_a_write_unit_holding_tensor_and_frame_bytes():
    assert split_units(64, [(16, 16), (32, 8)], 8) == ([(16, 40)], [(0, 16), (40, 64)])  # adjacent spans merge
    assert split_units(64, [(16, 20)], 8) is None  # the unit [32, 40) would hold both kinds
    assert split_units(64, [(20, 12)], 4, base=4096) == ([(20, 32)], [(0, 20), (32, 64)])


def test_pre_erase_leaves_the_frame_and_erased_tensors_and_the_write_only_programs():
    b = bundle_for(4096)
    p = packages_for(4096)
    f, part = flash_with(b.data, write_align=8)
    image = FlashModelImage(part, len(b.data))
    smap = SlotMap.from_json(b.smap)
    info = smap.slots[1]
    assert image.pre_erase(info.offset, info.template(), info.tensor_spans())
    data = image.read(info.offset, info.length)
    for start, length in info.tensor_spans():
        assert data[start:start + length] == b"\xff" * length
    assert smap.damaged_frames(image.buffer) == []  # the frame is intact: the model parses
    erases = f.snapshot().erase_ops
    m = SwapManager(image, b.smap, KEYRING)
    m.load_adapter(p["A1"])  # the lowest free slot is 0: not prepared, erased on the way
    assert image.erases_on_write == 1
    m.load_adapter(p["B1"])  # slot 1, pre-erased: programs only
    assert f.snapshot().erase_ops == erases + 1 and image.erases_on_write == 1
    assert image.prepared == set() and image.blank == set()


def test_pre_erase_refuses_a_unit_shared_by_tensor_and_frame_bytes_and_touches_nothing():
    b = bundle_for(4096)
    f, part = flash_with(b.data, write_align=8)
    image = FlashModelImage(part, len(b.data))
    info = SlotMap.from_json(b.smap).slots[0]
    start, length = info.tensor_spans()[0]
    before, erases = f.image_bytes(), f.snapshot().erase_ops
    assert not image.pre_erase(info.offset, info.template(), [(start + 1, length - 1)])
    assert f.image_bytes() == before and f.snapshot().erase_ops == erases


def test_a_ram_image_has_nothing_to_pre_erase():
    b = bundle_for(4096)
    m = SwapManager(RamModelImage(b.data), b.smap, KEYRING)
    before = bytes(m.image.buffer)
    assert m.prepare_slot() is None and bytes(m.image.buffer) == before
