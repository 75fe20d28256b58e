"""The device's idle step: erase now what the next swap would otherwise erase on its path.

Why: on NOR flash a sector erase costs far more than programming the sector (W25Q128JV: 45 ms
typical for 4 KB against 16 x 0.4 ms of page programs), and a hot swap used to erase twice on
its request path, the slot's sectors and the metadata area its commit goes to. Neither erase
depends on the request: the slot the next write takes and the metadata areas not holding the
current record are known in advance. So the device erases them while it is idle, as an
explicit step with its own trace event (`idle`, with what it erased and how long it took),
and the swap then only programs: the slot's tensor bytes, and one record.

What the step does, in an order that keeps every power cut harmless:

1. erase the metadata areas that do not hold the current record (never the current one);
2. prepare a slot (`SwapManager.prepare_slot`): the slot a hot swap of `prepare_for` would
   take (its resident adapter, if any, is first recorded as evicted), or else an empty one;
   its sectors are erased and its frame programmed, its tensor bytes left erased
   (`FlashModelImage.pre_erase`); with its gate off such a slot contributes nothing;
3. commit the record with the erase counted in the wear table and the slot listed as
   pre-erased (`DeviceRecord.erased`), into an area erased in step 1;
4. erase the area that held the previous record.

A cut in step 1 or 4 leaves the current record standing. A cut in step 2 or 3 leaves a slot
whose bytes the record does not describe: boot counts the erase and rewrites the slot blank,
the same repair as after a cut during a slot write. After step 3, a boot finds the slot listed
as pre-erased and reading so, and keeps it (no rewrite, no erase counted twice).

What is trusted as erased is RAM knowledge of one power cycle (`MetadataStore.erased`,
`FlashModelImage.prepared`): after a reboot nothing is, because firmware cannot tell an erased
unit from one programmed with the erase value, and programming a programmed unit is a driver
error. A write or commit into something not known to be erased erases it first, as before,
counts it (`FlashModelImage.erases_on_write`, `MetadataStore.erases_on_commit`) and says so in
the trace ("erase (no pre-erased sector)").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tinyswap.firmware_sim.model_image import FlashModelImage
from tinyswap.slotmap import SlotMap

if TYPE_CHECKING:
    from tinyswap.firmware_sim.device import Device


@dataclass(frozen=True)
class IdleReport:
    """What one idle step did."""

    slot: int | None  # the slot pre-erased (None: none could be, see `slot_note`)
    slot_note: str  # why no slot was prepared ("" when one was)
    metadata_areas: int  # metadata areas erased
    seconds: float  # simulated time the step took

    def details(self) -> dict[str, Any]:
        return asdict(self)


def run_idle(device: Device, prepare_for: str | None = None) -> IdleReport:
    """Steps 1-4 of the module docstring on a booted device (inside its `idle` operation)."""
    start = device.timeline.now
    manager, metadata = device.manager, device.metadata
    areas = metadata.prepare()
    slot, note = None, ""
    if not isinstance(device.image, FlashModelImage):
        note = "the model is in RAM: slot writes erase nothing"
    else:
        slot = manager.prepare_slot(prepare_for)
        if slot is None:
            note = ("no slot to prepare: every slot holds an adapter or is in use" if prepare_for is None
                    else f"no slot a hot swap of {prepare_for!r} could take is idle")
        areas += metadata.prepare()  # the eviction's commit (if any) used an erased area
        device._persist(manager.export_state(), device._active)  # wear and the pre-erased slot
    areas += metadata.prepare()
    return IdleReport(slot, note, areas, device.timeline.now - start)


def erased_slots(image: object, slotmap: SlotMap) -> list[int]:
    """Slots the record lists as pre-erased: those whose range the image knows holds its blank."""
    if not isinstance(image, FlashModelImage):
        return []
    return [info.slot for info in slotmap.slots if info.offset in image.blank]


__all__ = ["IdleReport", "erased_slots", "run_idle"]
