"""Boot: start a `Device` from what its flash holds, trusting nothing it does not check.

The steps, each a small method of `BootSequence`, in an order that validates before it writes:

1. the newest valid metadata record, written for this base model;
2. RAM budgets (arena, package cache, model copy): pure arithmetic, refused before any I/O;
3. the model image (in place, or copied to RAM), its slot alignment, the base-model digest;
4. the adapter store (a store that does not mount is reported, not fatal: the model still runs);
5. the state to restore, through the swap manager's `restore_state` (every package verified
   again); on a trial record that is the confirmed state, so a trial never survives a reboot;
6. erases the record missed (a slot whose bytes or frame differ from the record was erased by
   an interrupted write) are counted against the slot's erase budget; a slot the record lists
   as pre-erased by the idle step (`idle.py`) that still reads so is kept as it is;
7. the restored state is persisted first (the revert, dropped adapters, disabled slots);
8. every slot whose bytes differ from its committed content, or whose frame an interrupted
   write damaged, is cleared through the swap manager (`clear_slot`: the slot's frame from the
   slot map with zero tensors, read back, committed), so no slot holds unaccounted bytes;
9. the active set is made resident again (a RAM image starts with empty slots).

What goes wrong and can be worked around (an unreadable metadata area, a store that does not
mount, a slot that cannot be cleared) is recorded in `BootReport.errors`. `PowerLoss` and
programmer errors (`FlashMisuseError`) are never recorded: they propagate, and the device
stays unbooted.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ContextManager

from tinyswap.firmware_sim.board import MODEL_PARTITION, STORE_PARTITION
from tinyswap.firmware_sim.errors import (
    BaseModelError,
    FlashError,
    FlashMisuseError,
    MetadataError,
    MetadataMissingError,
    PowerLoss,
    StoreError,
)
from tinyswap.firmware_sim.lfs_store import AdapterStore
from tinyswap.firmware_sim.model_image import FlashModelImage, RamModelImage
from tinyswap.firmware_sim.record import DeviceRecord
from tinyswap.cache import PackageCache
from tinyswap.errors import TinySwapError
from tinyswap.router import Router
from tinyswap.slotmap import SlotMapError
from tinyswap.swap import SwapManager

if TYPE_CHECKING:
    from tinyswap.firmware_sim.device import Device

DeviceImage = FlashModelImage | RamModelImage


@dataclass
class BootReport:
    """What `boot()` found and did."""

    record_sequence: int | None
    reverted: bool  # the record was on trial: the confirmed state was restored
    restored: dict[str, list]  # `SwapManager.restore_state` report
    cleared_slots: list[int]  # slots whose bytes or frame differed from the committed state
    active: dict[str, float]
    errors: list[str] = field(default_factory=list)  # what went wrong and was worked around


class BootSequence:
    """One boot of `device`: run once, then discard. It installs the device's RAM state
    (image, store, manager, router, record) as the steps produce it, because the manager's
    commits during boot persist through the device."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.errors: list[str] = []

    def run(self) -> BootReport:
        d = self.device
        sequence, record = self._load_record()
        d.ram_budget.check(d.factory_arena_bytes())
        d.arena_bytes = d.factory_arena_bytes()
        image = self._open_image(record)
        self._mount_store()
        manager, restored = self._restore(image, record)
        self._note_interrupted_erases(image, manager, record)
        self._persist_restored(manager)
        cleared = self._clear_slots(image, manager)
        self._activate(manager)
        d._router = Router(manager, d.rules)
        for experiment in d.experiments:
            d._router.add_experiment(experiment)
        return BootReport(sequence, record.trial, restored, cleared, dict(d._active), self.errors)

    # ---------------------------------------------------------------- steps
    def _load_record(self) -> tuple[int, DeviceRecord]:
        d = self.device
        found = d.metadata.load()
        self.errors += d.metadata.read_errors
        if found is None:
            raise MetadataMissingError("no valid metadata record on the device: provision() it first")
        written_for = (found.payload.get("device") or {}).get("base_digest")
        if written_for != d.slotmap.base_digest:
            raise BaseModelError(f"the metadata was written for base model {str(written_for)[:16]}..., "
                                 f"this bundle is {d.slotmap.base_digest[:16]}...")
        return found.sequence, DeviceRecord.from_payload(found.payload)

    def _open_image(self, record: DeviceRecord) -> DeviceImage:
        d = self.device
        part = d.partitions[MODEL_PARTITION]
        image: DeviceImage
        if d.xip:
            image = FlashModelImage(part, len(d.model), timeline=d.timeline, storage=d.model_storage,
                                    erase_budget=d.slot_erase_budget, erase_counts=record.wear)
        else:
            image = RamModelImage.load(part, len(d.model), timeline=d.timeline,
                                       ram_bandwidth=d.profile.weight_bandwidth)
        image.check_slots(d.slotmap)
        image.read(0, len(d.model))  # charge the digest pass over the image
        try:  # slot ranges are zeroed in the digest: checked before anything is rewritten
            d.slotmap.check_model(image.buffer)
        except SlotMapError as exc:
            raise BaseModelError(f"boot: the model partition does not hold the base model: {exc}") from exc
        return image

    def _mount_store(self) -> None:
        d = self.device
        store = AdapterStore(d.partitions[STORE_PARTITION], block_cycles=d.store_block_cycles)
        try:
            store.mount()
            d._store = store
        except PowerLoss:
            raise
        except (StoreError, FlashError) as exc:  # faults only: a misuse error propagates
            self.errors.append(f"adapter store: {exc}")
            d._store = None

    def _restore(self, image: DeviceImage, record: DeviceRecord) -> tuple[SwapManager, dict[str, list]]:
        d = self.device
        chosen = d.snapshot_of(record.boot_state.state, record.boot_state.active)
        manager = SwapManager(image, d.slotmap, d.keyring, cache=PackageCache(d.cache_budget),
                              fetch=d._fetch, on_commit=d._on_commit, on_event=d._on_event,
                              device_keys=d.device_keys)
        restored = manager.restore_state(dict(chosen.state), d._fetch_or_none)
        d._image, d._manager = image, manager
        d._active = {n: w for n, w in chosen.active.items() if n in manager.adapters}
        # RAM now holds the restored state as confirmed; step 7 makes the flash say so too.
        d._record = DeviceRecord(d.identity, d.snapshot_of(manager.export_state(), d._active), wear=record.wear)
        return manager, restored

    def _note_interrupted_erases(self, image: DeviceImage, manager: SwapManager, record: DeviceRecord) -> None:
        """Bytes that differ from the last record mean an erase the record missed (a cut or a
        failed commit after a slot write): count it before deciding anything."""
        if not isinstance(image, FlashModelImage):
            return  # a RAM copy is loaded from flash that slot writes never touch
        damaged = set(self.device.slotmap.damaged_frames(image.buffer))
        for info in self.device.slotmap.slots:  # the idle step's pre-erased slots, if still blank
            if info.slot in record.erased and info.slot not in damaged and \
                    image.reads_blank(info.offset, info.template(), info.tensor_spans()):
                image.blank.add(info.offset)
        for info, rec in zip(self.device.slotmap.slots, record.current.state["slots"]):
            if info.offset in image.blank:
                continue  # its erase is in the record's wear already
            committed = rec.get("content_sha256")
            if info.slot in damaged or (committed is not None and manager.content_digest(info.slot) != committed):
                image.note_interrupted_erase(info.offset, info.length)

    def _persist_restored(self, manager: SwapManager) -> None:
        try:
            self.device._persist(manager.export_state(), self.device._active, confirm=True)
        except MetadataError as exc:
            self.errors.append(f"persisting the restored state: {exc}")

    def _clear_slots(self, image: DeviceImage, manager: SwapManager) -> list[int]:
        """No slot may hold bytes other than its committed content: clear the others."""
        damaged = set(self.device.slotmap.damaged_frames(image.buffer))
        cleared = []
        blank = image.blank if isinstance(image, FlashModelImage) else set()
        for rec in manager.slot_table():
            if rec.slot not in damaged and (self.device.slotmap.slots[rec.slot].offset in blank and rec.digest is None
                                            or manager.content_digest(rec.slot) == rec.content_sha256):
                continue
            try:
                with self._repair(image, rec.slot in damaged):
                    manager.clear_slot(rec.slot)
                cleared.append(rec.slot)
            except (PowerLoss, FlashMisuseError):
                raise
            except TinySwapError as exc:
                self.errors.append(f"clearing slot {rec.slot}: {exc}")
        repaired = sorted(damaged & set(cleared))
        if repaired:
            self.errors.append(f"slots {repaired}: frame bytes damaged (interrupted write), rewritten blank")
        return cleared

    @staticmethod
    def _repair(image: DeviceImage, damaged: bool) -> ContextManager[None]:
        """A damaged frame is rewritten even if its sector's last erase is not recorded yet:
        the model cannot run without it (the erase budget still holds)."""
        if damaged and isinstance(image, FlashModelImage):
            return image.repairing()
        return contextlib.nullcontext()

    def _activate(self, manager: SwapManager) -> None:
        """The active set, resident again (RAM images start empty)."""
        d = self.device
        try:
            manager.set_adapter(d._active)
        except (PowerLoss, FlashMisuseError):
            raise
        except TinySwapError as exc:
            self.errors.append(f"activating {sorted(d._active)}: {exc}")
            manager.set_adapter({})


__all__ = ["BootReport", "BootSequence"]
