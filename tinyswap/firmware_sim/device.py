"""The simulated device: flash partitions, boot, OTA install, swaps with persisted commits,
test-then-confirm, inference, a RAM budget and a timeline.

Why it is built this way (docs/architecture.md "The device", docs/storage-facts.md):

* The model partition is read in place (`FlashModelImage`, XIP) or copied to RAM at boot
  (`RamModelImage`); the base model's sectors are never erased or programmed after
  provisioning, because every slot write covers whole sectors of its own.
* The adapter store is LittleFS (`AdapterStore`); packages are stored under their content
  digest, so a package is identified by what it is, and re-installing one is idempotent.
* The metadata partition (`MetadataStore`) holds one JSON record: the swap manager's whole
  committed state (`export_state()`), the active adapter set, the trial flag and the last
  confirmed state. The manager calls `on_commit` after a slot's bytes were written and
  verified and before any gate may use them; the device persists the record there, so after
  any power cut the record describes bytes that are really on flash.
* Test-then-confirm (MCUboot's "test" upgrade, `boot_set_pending(permanent=0)` then
  `boot_set_confirmed()`): a change of adapters, versions or the active set runs on trial;
  `confirm()` makes it permanent; a boot that finds a trial record goes back to the confirmed
  state and persists that revert before anything else. `permanent=True` skips the trial.
* Boot trusts nothing it does not check: the base-model digest, every package again
  (signature, base binding, layout, via `restore_state`), and every slot's bytes against the
  committed content digest; a slot that differs is never enabled and is cleared.
* OTA `install` verifies everything (size, format, digest, key, signature, base model, slot
  layout, sequence number, device class) before the first flash operation, so a refused
  package leaves the flash and its counters exactly as they were.
* Any `PowerLoss` leaves the device unbooted (RAM is gone); `power_on()` then `boot()`.

Time: every flash operation is charged by its medium's profile on one `Timeline`; inference
by `profiles.estimate_inference_seconds`; the trace exports as Chrome/Perfetto JSON.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from tinyswap.firmware_sim.cost import ModelCost, model_cost
from tinyswap.firmware_sim.errors import (
    BaseModelError,
    DeviceClassError,
    DeviceStateError,
    FlashError,
    LayoutError,
    MetadataError,
    MetadataMissingError,
    PackageTooLargeError,
    PowerLoss,
    RamBudgetError,
    StoreError,
    StoreNotFoundError,
)
from tinyswap.firmware_sim.flash import BadBlock, FlashDevice, FlashGeometry, PowerCut
from tinyswap.firmware_sim.flashio import erase_sectors, pad_to_unit, program_range
from tinyswap.firmware_sim.layout import DeviceLayout, plan_layout, sized_geometry
from tinyswap.firmware_sim.lfs_store import AdapterStore
from tinyswap.firmware_sim.metadata import MetadataStore
from tinyswap.firmware_sim.model_image import FlashModelImage, RamModelImage, SlotTemplate
from tinyswap.firmware_sim.power import DomainPartition, PowerDomain
from tinyswap.firmware_sim.profiles import DEVICES, DeviceProfile, estimate_inference_seconds
from tinyswap.firmware_sim.storage import StorageProfile
from tinyswap.firmware_sim.timeline import Timeline
from tinyswap.cache import PackageCache
from tinyswap.errors import TinySwapError
from tinyswap.image import RamImage
from tinyswap.interpreter import Interpreter
from tinyswap.package import AdapterPackage, Keyring, parse_package
from tinyswap.router import Experiment, Request, Router, Rule
from tinyswap.slotmap import SlotMap, SlotMapError
from tinyswap.swap import AdapterSpec, SwapManager

RECORD_FORMAT = "tinyswap-device-record"
RECORD_VERSION = 1
KIB = 1024


@dataclass
class BootReport:
    """What `boot()` found and did."""

    record_sequence: int | None
    reverted: bool  # the record was on trial: the confirmed state was restored
    restored: dict[str, list]  # `SwapManager.restore_state` report
    cleared_slots: list[int]  # slots whose bytes differed from the committed digest
    active: dict[str, float]
    errors: list[str] = field(default_factory=list)  # what went wrong and was worked around


@dataclass(frozen=True)
class InstallResult:
    digest: str
    name: str
    version: str
    sequence: int
    stored: bool  # written to the store by this call
    already_accepted: bool  # this exact package is already an accepted version: nothing to do


@dataclass(frozen=True)
class ActiveAdapter:
    name: str
    digest: str
    version: str
    sequence: int
    weight: float
    slot: int | None  # where its bytes are now (None: not resident)


class Device:
    """A simulated device running tinyswap.

    profile: a `DeviceProfile` or its name (`mcu-qspi`, `mcu-ram`, `gateway`).
    model: the model bytes, or a bundle directory holding `model.tflite` and `slotmap.json`.
    slotmap: the bundle's slot map (dict or `SlotMap`), unless `model` is a bundle directory.
    keyring: the keys whose packages the device accepts.
    model_geometry / store_geometry: flash parts (default: the profile's media, sized to fit).
    shared_store: put the adapter store on the model's flash (default: when the profile keeps
        model and adapters on the same medium).
    model_storage / store_storage: timing profiles of the two parts (default: the profile's).
    store_bytes: adapter store size; metadata_area_bytes / metadata_areas: metadata layout.
    badblock: what worn-out sectors do (all parts).
    arena_budget / cache_budget: RAM budgets (default: the profile's); max_package_bytes: the
        largest package accepted (default and maximum: the cache budget).
    device_class: this device's class for packages that name classes (default: profile name).
    worst: charge datasheet maximum timings; record_ops: one trace event per flash operation.
    flash_images: start from these flash contents (`flash_images()` of another device).
    """

    def __init__(self, profile: DeviceProfile | str, model: bytes | bytearray | str | Path,
                 slotmap: SlotMap | Mapping[str, Any] | None = None, keyring: Keyring | None = None, *,
                 model_geometry: FlashGeometry | None = None, store_geometry: FlashGeometry | None = None,
                 shared_store: bool | None = None, model_storage: StorageProfile | None = None,
                 store_storage: StorageProfile | None = None, store_bytes: int = 256 * KIB,
                 metadata_area_bytes: int = 4 * KIB, metadata_areas: int = 2,
                 badblock: BadBlock = BadBlock.PROGERROR, arena_budget: int | None = None,
                 cache_budget: int | None = None, max_package_bytes: int | None = None,
                 device_class: str | None = None, store_block_cycles: int = 100, worst: bool = False,
                 record_ops: bool = True, flash_images: Mapping[str, bytes] | None = None) -> None:
        self.profile = DEVICES[profile] if isinstance(profile, str) else profile
        p = self.profile
        if isinstance(model, (str, Path)):
            bundle = Path(model)
            model = (bundle / "model.tflite").read_bytes()
            if slotmap is None:
                slotmap = json.loads((bundle / "slotmap.json").read_text())
        if slotmap is None or keyring is None:
            raise DeviceStateError("a device needs the model's slot map and a keyring")
        self.model = bytes(model)
        self.slotmap = slotmap if isinstance(slotmap, SlotMap) else SlotMap.from_json(dict(slotmap))
        try:
            self.slotmap.check_model(self.model)
        except SlotMapError as exc:
            raise BaseModelError(f"the factory model does not match its slot map: {exc}") from exc
        self.keyring = keyring
        self.template = SlotTemplate(self.slotmap, self.model)
        self.cost: ModelCost = model_cost(self.model)
        self.device_class = device_class or p.name
        self.arena_budget = p.arena_budget if arena_budget is None else arena_budget
        self.cache_budget = p.cache_budget if cache_budget is None else cache_budget
        self.max_package_bytes = self.cache_budget if max_package_bytes is None else max_package_bytes
        if self.max_package_bytes > self.cache_budget:
            raise RamBudgetError(f"max_package_bytes {self.max_package_bytes} exceeds the package cache budget "
                                 f"{self.cache_budget}: a package must fit the cache to be verified and staged")
        self.xip = p.model_placement == "xip"
        self.slot_erase_budget: int | None = None  # set from the model flash's endurance below
        self.store_block_cycles = store_block_cycles
        self.timeline = Timeline(worst=worst, record_ops=record_ops)
        self.model_storage = model_storage or p.model_storage
        self.store_storage = store_storage or p.adapter_storage

        # ---- flash parts and partitions
        if shared_store is None:
            shared_store = store_geometry is None and p.adapter_storage is p.model_storage
        if shared_store and store_geometry is not None:
            raise LayoutError("shared_store=True and a store_geometry contradict each other")
        if model_geometry is None:
            base = self.model_storage.geometry()
            if base.uniform_sector_size is not None:
                sector = base.uniform_sector_size
                need = -(-len(self.model) // sector) * sector
                need += metadata_areas * -(-metadata_area_bytes // sector) * sector
                need += store_bytes if shared_store else 0
                model_geometry = sized_geometry(base, need)
            else:
                model_geometry = base
        if not shared_store and store_geometry is None:
            store_geometry = self.store_storage.geometry(store_bytes)
        if shared_store:
            self.store_storage = self.model_storage
        self.layout: DeviceLayout = plan_layout(
            model_geometry, len(self.model), metadata_area_bytes=metadata_area_bytes,
            metadata_areas=metadata_areas, store_geometry=None if shared_store else store_geometry,
            store_bytes=store_bytes)
        images = dict(flash_images or {})
        self.flashes: dict[str, FlashDevice] = {
            "model": FlashDevice(model_geometry, image=images.get("model"), badblock=badblock,
                                 clock=self.timeline.timer("flash:model", self.model_storage))}
        if not shared_store:
            assert store_geometry is not None
            self.flashes["store"] = FlashDevice(store_geometry, image=images.get("store"), badblock=badblock,
                                                clock=self.timeline.timer("flash:store", self.store_storage))
        self.power = PowerDomain(self.flashes.values())
        L = self.layout
        mf = self.flashes["model"]
        sf = self.flashes.get("store", mf)
        self.partitions: dict[str, DomainPartition] = {
            "model": self.power.partition(mf, L.model.offset, L.model.size, "model"),
            "metadata": self.power.partition(mf, L.metadata.offset, L.metadata.size, "metadata"),
            "store": self.power.partition(sf, L.store.offset, L.store.size, "adapters"),
        }
        self.metadata = MetadataStore(self.partitions["metadata"], L.metadata_areas)
        cycles = model_geometry.erase_cycles
        if cycles is not None:
            # littlefs emubd: a sector is bad once wear >= erase_cycles, so erase number
            # `cycles` is the first that leaves it unprogrammable; keep 1% in reserve for
            # erases a power cut kept out of the persisted count.
            self.slot_erase_budget = cycles - 1 - cycles // 100

        # ---- RAM state (lost at every power cut)
        self.rules: list[Rule] = []
        self.experiments: list[Experiment] = []
        self._manager: SwapManager | None = None
        self._store: AdapterStore | None = None
        self._router: Router | None = None
        self._image: FlashModelImage | RamModelImage | None = None
        self._current: dict[str, Any] = {}
        self._confirmed: dict[str, Any] = {}
        self._trial = False
        self._active: dict[str, float] = {}
        self._permanent = False
        self.arena_bytes: int | None = None
        self.last_boot: BootReport | None = None

    # ================================================================ probes
    @property
    def booted(self) -> bool:
        return self._manager is not None

    @property
    def manager(self) -> SwapManager:
        if self._manager is None:
            raise DeviceStateError("the device is not booted (power_on() and boot() first)")
        return self._manager

    @property
    def store(self) -> AdapterStore:
        if self._store is None:
            raise DeviceStateError("the adapter store is not mounted")
        return self._store

    @property
    def router(self) -> Router:
        if self._router is None:
            raise DeviceStateError("the device is not booted")
        return self._router

    @property
    def image(self) -> FlashModelImage | RamModelImage:
        """The model image the interpreter reads (flash partition view or RAM copy)."""
        if self._image is None:
            raise DeviceStateError("the device is not booted")
        return self._image

    @property
    def trial(self) -> bool:
        """The committed state runs on trial: the next boot reverts it unless `confirm()`ed."""
        return self._trial

    @property
    def mutations(self) -> int:
        """Mutating flash operations (all parts) since the last `arm_power_cuts`."""
        return self.power.mutations

    def flash_images(self) -> dict[str, bytes]:
        """Every part's bytes (a test-bench dump), to build an identical device elsewhere."""
        return {name: f.image_bytes() for name, f in self.flashes.items()}

    def model_bytes_now(self) -> bytes:
        """The bytes the interpreter executes now (flash partition or RAM copy)."""
        return bytes(self.image.buffer)

    def state(self) -> dict[str, Any]:
        return self.manager.export_state()

    def active_adapters(self) -> dict[str, ActiveAdapter]:
        """The default active set, resolved to versions and slots."""
        m = self.manager
        state = m.export_state()
        slot_of = {s["digest"]: s["slot"] for s in state["slots"] if s["digest"] is not None}
        out = {}
        for name, weight in self._active.items():
            digest = state["adapters"][name]["current"]
            entry = m.adapter_info(name)
            out[name] = ActiveAdapter(name, digest, entry.version, entry.sequence, weight, slot_of.get(digest))
        return out

    def status(self) -> dict[str, Any]:
        """A JSON-able summary for reports."""
        if not self.booted:
            return {"booted": False, "powered": self.power.powered}
        return {
            "booted": True, "trial": self._trial, "active": dict(self._active),
            "adapters": {n: a["current"] for n, a in self.manager.export_state()["adapters"].items()},
            "resident": self.manager.resident(),
            "record_sequence": None if self.metadata.current is None else self.metadata.current.sequence,
            "time_s": self.timeline.now,
        }

    # ================================================================ power
    def arm_power_cuts(self, cuts: Sequence[PowerCut] = ()) -> None:
        """Cut power at these mutating operations, numbered across all parts from 1."""
        self.power.arm(cuts)

    def power_cut(self) -> None:
        """Power is lost now (between operations)."""
        self.power.cut()
        self._lose_ram()

    def power_on(self) -> None:
        self.power.power_on()
        self._lose_ram()

    def _lose_ram(self) -> None:
        self._manager = None
        self._store = None
        self._router = None
        self._image = None
        self._permanent = False

    @contextlib.contextmanager
    def _operation(self, label: str, /, **args: Any) -> Iterator[dict[str, Any]]:
        if not self.power.powered:
            raise DeviceStateError(f"{label}: the power is off (power_on() and boot() first)")
        self.manager  # noqa: B018 - raises unless booted
        with self.timeline.span(label, **args) as details:
            try:
                self._record_wear()
                yield details
            except PowerLoss:
                self._lose_ram()
                raise

    def _record_wear(self) -> None:
        """Commit erase counts a failed commit left unrecorded, before anything may erase again
        (the image refuses to erase such a sector: `WearNotRecordedError`)."""
        image = self._image
        if isinstance(image, FlashModelImage) and image.erase_counts != image.persisted:
            try:
                self._persist(self.manager.export_state(), self._active)
            except MetadataError as exc:  # the op goes on; an erase of that sector is refused
                self.timeline.instant("wear not recorded", cat="metadata", error=str(exc))

    @contextlib.contextmanager
    def _permanence(self, permanent: bool) -> Iterator[None]:
        self._permanent = permanent
        try:
            yield
        finally:
            self._permanent = False

    # ================================================================ factory
    def provision(self) -> None:
        """Factory programming: the model image, an empty store, an initial confirmed record."""
        with self.timeline.span("provision"):
            try:
                part = self.partitions["model"]
                erase_sectors(part, 0, part.size)
                program_range(part, 0, pad_to_unit(self.model, part.geometry))
                store = AdapterStore(self.partitions["store"], block_cycles=self.store_block_cycles)
                store.format()
                self.metadata.format()
                empty = SwapManager(RamImage(self.model), self.slotmap, self.keyring).export_state()
                current = {"state": self._persistable(empty), "active": {}}
                g = part.geometry
                wear = {s: 1 for info in self.slotmap.slots  # the factory erase
                        for s in g.sectors_in(part.absolute(info.offset), info.length)} if self.xip else {}
                self.metadata.commit(self._payload(current, None, False, wear))
            except PowerLoss:
                self._lose_ram()
                raise
        self._lose_ram()

    # ================================================================ boot
    def boot(self) -> BootReport:
        """Start from what the flash holds; see the module docstring for the steps."""
        if not self.power.powered:
            raise DeviceStateError("boot: the power is off (call power_on())")
        self._lose_ram()
        with self.timeline.span("boot") as details:
            try:
                report = self._boot()
            except BaseException:  # power loss or a refusal: nothing half-booted stays
                self._lose_ram()
                raise
            details.update(reverted=report.reverted, cleared=report.cleared_slots, errors=len(report.errors))
        self.last_boot = report
        return report

    def _boot(self) -> BootReport:
        errors: list[str] = []
        record = self.metadata.load()
        errors += self.metadata.read_errors
        if record is None:
            raise MetadataMissingError("no valid metadata record on the device: provision() it first")
        payload = record.payload
        info = payload.get("device", {})
        if info.get("base_digest") != self.slotmap.base_digest:
            raise BaseModelError(f"the metadata was written for base model {str(info.get('base_digest'))[:16]}..., "
                                 f"this bundle is {self.slotmap.base_digest[:16]}...")

        # 1. the model image, its slots' alignment, the base-model digest
        part = self.partitions["model"]
        if self.xip:
            image: FlashModelImage | RamModelImage = FlashModelImage(
                part, len(self.model), timeline=self.timeline, storage=self.model_storage, template=self.template,
                erase_budget=self.slot_erase_budget,
                erase_counts={int(k): int(v) for k, v in payload.get("wear", {}).items()})
        else:
            if len(self.model) > self.profile.model_budget:
                raise RamBudgetError(f"the {len(self.model)}-byte model exceeds the RAM model budget "
                                     f"{self.profile.model_budget} of {self.profile.name}")
            image = RamModelImage.load(part, len(self.model), timeline=self.timeline,
                                       ram_bandwidth=self.profile.weight_bandwidth)
        image.check_slots(self.slotmap)
        image.read(0, len(self.model))  # charge the digest pass over the image
        try:  # slot ranges are zeroed in the digest: checked before anything is rewritten
            self.slotmap.check_model(image.buffer)
        except SlotMapError as exc:
            raise BaseModelError(f"boot: the model partition does not hold the base model: {exc}") from exc
        repaired = []
        for info in self.slotmap.slots:  # a cut inside a slot write leaves its structure erased
            if not self.template.intact(image.buffer, info.offset):
                if isinstance(image, FlashModelImage):
                    image.note_interrupted_erase(info.offset, info.length)
                try:
                    if isinstance(image, FlashModelImage):
                        image.write(info.offset, self.template.blank(info.offset), repair=True)
                    else:
                        image.write(info.offset, self.template.blank(info.offset))
                    repaired.append(info.slot)
                except PowerLoss:
                    raise
                except TinySwapError as exc:
                    errors.append(f"slot {info.slot}: structure bytes damaged and not repairable: {exc}")
        if repaired:
            errors.append(f"slots {repaired}: structure bytes damaged (interrupted write), rewritten blank")

        # 2. RAM budget: the arena this model needs, the cache, the model copy
        interp = Interpreter(model_content=image.buffer)
        interp.allocate_tensors()
        self.arena_bytes = interp.arena_bytes
        self._check_ram(self.arena_bytes)

        # 3. the adapter store
        store = AdapterStore(self.partitions["store"], block_cycles=self.store_block_cycles)
        try:
            store.mount()
            self._store = store
        except PowerLoss:
            raise
        except (StoreError, FlashError) as exc:
            errors.append(f"adapter store: {exc}")
            self._store = None

        # 4. the state to restore: the confirmed one when the record is on trial
        reverted = bool(payload.get("trial"))
        chosen = payload["confirmed"] if reverted else payload["current"]
        state = self._persistable(chosen["state"])
        manager = SwapManager(image, self.slotmap, self.keyring, cache=PackageCache(self.cache_budget),
                              fetch=self._fetch, on_commit=self._on_commit, on_event=self._on_event)
        restored = manager.restore_state(state, self._fetch_or_none)
        self._image, self._manager = image, manager
        if isinstance(image, FlashModelImage):
            # Bytes that differ from the last record mean an erase the record missed (a cut or
            # a failed commit after a slot write): count it before deciding anything.
            recorded = payload["current"]["state"]["slots"]
            for info, rec in zip(self.slotmap.slots, recorded):
                if info.slot not in repaired and rec.get("content_sha256") is not None \
                        and manager.content_digest(info.slot) != rec["content_sha256"]:
                    image.note_interrupted_erase(info.offset, info.length)
        active = {n: float(w) for n, w in chosen.get("active", {}).items() if n in manager.adapters}
        self._active = active
        self._current = {"state": self._persistable(manager.export_state()), "active": active}
        self._confirmed, self._trial = self._current, False

        # 5. persist what was restored (the revert, dropped adapters, disabled slots) first
        try:
            self._persist(manager.export_state(), active, confirm=True)
        except MetadataError as exc:
            errors.append(f"persisting the restored state: {exc}")

        # 6. no slot may hold bytes other than its committed content: clear the others
        cleared = []
        for rec in manager.slot_table():
            if manager.content_digest(rec.slot) != rec.content_sha256:
                try:
                    manager.clear_slot(rec.slot)
                    cleared.append(rec.slot)
                except PowerLoss:
                    raise
                except TinySwapError as exc:
                    errors.append(f"clearing slot {rec.slot}: {exc}")

        # 7. the active set, resident again (RAM images start empty)
        try:
            manager.set_adapter(active)
        except PowerLoss:
            raise
        except TinySwapError as exc:
            errors.append(f"activating {sorted(active)}: {exc}")
            manager.set_adapter({})
        self._router = Router(manager, self.rules)
        for experiment in self.experiments:
            self._router.add_experiment(experiment)
        return BootReport(record.sequence, reverted, restored, cleared, active, errors)

    def _check_ram(self, arena: int) -> None:
        p = self.profile
        if arena > self.arena_budget:
            raise RamBudgetError(f"the interpreter arena needs {arena} bytes, over the arena budget "
                                 f"{self.arena_budget} of {p.name}")
        model_ram = 0 if self.xip else len(self.model)
        used = arena + self.cache_budget + model_ram
        if used > p.ram_bytes:
            raise RamBudgetError(f"arena {arena} + package cache {self.cache_budget} + model copy {model_ram} = "
                                 f"{used} bytes exceed the {p.ram_bytes} bytes of RAM of {p.name}")

    # ================================================================ OTA
    def install(self, package: bytes | bytearray) -> InstallResult:
        """Verify a package completely, then store it (under its content digest).

        Nothing touches flash before every check passed: size, format, digest, trusted key,
        signature, base model, slot layout, sequence number, device class.
        """
        data = bytes(package)
        with self._operation("install", bytes=len(data)) as details:
            if len(data) > self.max_package_bytes:
                raise PackageTooLargeError(f"the package is {len(data)} bytes; this device accepts at most "
                                           f"{self.max_package_bytes} (its package cache budget)")
            pkg = parse_package(data)
            digest = pkg.content_digest
            details.update(name=pkg.name, version=pkg.metadata.get("version"))
            known = self.manager.export_state()["adapters"].get(pkg.name)
            if known is not None and digest in known["versions"]:
                return InstallResult(digest, pkg.name, str(pkg.metadata.get("version")), pkg.sequence, False, True)
            self.manager.verify(pkg)
            self._check_device_class(pkg)
            stored = False
            if not self.store.exists(digest):
                self.store.write(digest, data)
                stored = True
            self.manager.cache.put(pkg)
            details["stored"] = stored
            return InstallResult(digest, pkg.name, str(pkg.metadata.get("version")), pkg.sequence, stored, False)

    def _check_device_class(self, pkg: AdapterPackage) -> None:
        wanted = pkg.metadata.get("device_class")
        if wanted is None:
            wanted = (pkg.metadata.get("tags") or {}).get("device_class")
        if wanted is None:
            return
        classes = [wanted] if isinstance(wanted, str) else list(wanted)
        if self.device_class not in classes:
            raise DeviceClassError(f"package {pkg.name!r} is for device class(es) {classes}, "
                                   f"this device is {self.device_class!r}")

    def swap(self, digest: str, *, permanent: bool = False) -> str:
        """Bring an installed package live: load it (a new name) or hot-swap its name to it."""
        pkg = self._installed(digest)
        m = self.manager
        if pkg.name in m.adapters and m.export_state()["adapters"][pkg.name]["current"] == digest:
            return digest  # already live: re-applying converges
        with self._operation("swap", name=pkg.name, version=pkg.metadata.get("version")), \
                self._permanence(permanent):
            if pkg.name in m.adapters:
                m.hotswap_adapter(pkg.name, pkg)
            else:
                m.load_adapter(pkg)
        return digest

    def update(self, package: bytes | bytearray, *, permanent: bool = False) -> str:
        """OTA arrival: `install` then `swap`. Idempotent: re-applying converges."""
        return self.swap(self.install(package).digest, permanent=permanent)

    def _installed(self, digest: str) -> AdapterPackage:
        pkg = self.manager.cache.get(digest)
        if pkg is not None:
            return pkg
        try:
            data = self.store.read(digest)
        except StoreNotFoundError:
            raise DeviceStateError(f"no installed package with digest {digest[:16]}...") from None
        pkg = parse_package(data)
        if pkg.content_digest != digest:
            raise DeviceStateError(f"the store returned a different package for {digest[:16]}...")
        return pkg

    # ================================================================ adapters
    def activate(self, adapters: AdapterSpec, *, permanent: bool = False) -> None:
        """Set the default active set (a name, names, or {name: weight}); persisted, on trial."""
        m = self.manager
        with self._operation("activate", adapters=str(adapters)), self._permanence(permanent):
            previous = dict(self._active)
            m.set_adapter(adapters)
            spec = m.active_weights
            try:
                self._persist(m.export_state(), spec)
            except MetadataError:
                with contextlib.suppress(TinySwapError):
                    m.set_adapter(previous)
                raise
            self._active = spec

    def rollback(self, name: str, *, permanent: bool = False) -> str:
        with self._operation("rollback", name=name), self._permanence(permanent):
            return self.manager.rollback(name)

    def delete(self, name: str, *, permanent: bool = False) -> None:
        with self._operation("delete", name=name), self._permanence(permanent):
            previous = dict(self._active)
            self._active.pop(name, None)  # the commit inside must not record it as active
            try:
                self.manager.delete_adapter(name)
            except BaseException:
                self._active = previous
                raise

    def prefetch(self, name: str) -> None:
        """Stage `name`'s package in the RAM cache (what the router predicts next)."""
        with self._operation("prefetch", name=name):
            self.manager.prefetch(name)

    def confirm(self) -> bool:
        """Make the trial state permanent. Returns False when nothing was on trial."""
        with self._operation("confirm"):
            if not self._trial:
                return False
            self._persist(self.manager.export_state(), self._active, confirm=True)
            return True

    def add_rule(self, match: Mapping[str, Any], adapter: str) -> None:
        """A routing rule (configuration, kept across reboots)."""
        self.rules.append(Rule(dict(match), adapter))
        if self._router is not None:
            self._router.rules = list(self.rules)

    def add_experiment(self, experiment: Experiment) -> None:
        """An A/B split (configuration, kept across reboots like the rules; its per-arm counts
        are the experiment object's, so they accumulate over the whole run)."""
        self.experiments.append(experiment)
        if self._router is not None:
            self._router.add_experiment(experiment)

    # ================================================================ inference
    def infer(self, x: np.ndarray, *, adapters: AdapterSpec = None, per_row: Sequence[AdapterSpec] | None = None,
              requests: Sequence[Request] | None = None, tenant: str | None = None) -> list[np.ndarray]:
        """Run a batch: routed `requests`, or `per_row` adapter specs, or one spec for the whole
        batch, or the active set. `tenant`: the requesting tenant for `per_row` / `adapters` /
        the active set (isolation is checked as for routed requests, which carry their own).
        Time: one estimated inference per row."""
        rows = int(np.asarray(x).shape[0])
        with self._operation("infer", rows=rows):
            if requests is not None:
                out = self.router.infer(x, list(requests))
            elif per_row is not None:
                out = self.manager.infer(x, adapter_names=list(per_row), tenant=tenant)
            elif adapters is not None:
                out = self.manager.infer(x, adapters=adapters, tenant=tenant)
            else:
                out = self.manager.infer(x, tenant=tenant)
            one = estimate_inference_seconds(self.cost.macs_per_row, self.profile, self.cost.weight_bytes)
            self.timeline.advance(one * rows, "invoke", cat="cpu", rows=rows, macs=self.cost.macs_per_row * rows)
        return out

    # ================================================================ trace
    def trace(self) -> dict[str, Any]:
        return self.timeline.chrome_trace()

    def write_trace(self, path: str | Path) -> Path:
        return self.timeline.write_chrome_trace(path)

    # ================================================================ persistence
    def _persistable(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The state as stored: a RAM image's slots do not survive power-off, so none is recorded."""
        out = json.loads(json.dumps(state))  # a deep, JSON-typed copy
        if not self.xip:
            out["slots"] = [{"slot": s["slot"], "digest": None} for s in out["slots"]]
        return out

    def _payload(self, current: dict[str, Any], confirmed: dict[str, Any] | None, trial: bool,
                 wear: Mapping[int, int] | None = None) -> dict[str, Any]:
        if wear is None:
            wear = self._image.erase_counts if isinstance(self._image, FlashModelImage) else {}
        return {"format": RECORD_FORMAT, "version": RECORD_VERSION,
                "wear": {str(k): int(v) for k, v in sorted(wear.items())},
                "device": {"profile": self.profile.name, "device_class": self.device_class,
                           "base_digest": self.slotmap.base_digest, "model_bytes": len(self.model),
                           "slots": self.slotmap.num_slots},
                "current": current, "confirmed": confirmed, "trial": trial}

    def _on_commit(self, state: dict[str, Any]) -> None:
        self._persist(state, self._active)

    def _persist(self, state: Mapping[str, Any], active: Mapping[str, float], *, confirm: bool = False) -> None:
        """Commit the record for `state` + `active`; raises (and changes nothing) if it does not land."""
        current = {"state": self._persistable(state), "active": {n: float(w) for n, w in active.items()}}
        if confirm or self._permanent or (not self._trial and _same_logic(current, self._current)):
            confirmed, trial = None, False  # permanent, or only the slot table of a confirmed state moved
        else:
            confirmed, trial = (self._confirmed if self._trial else self._current), True
        payload = self._payload(current, confirmed, trial)
        on_flash = self.metadata.current
        if on_flash is None or on_flash.payload != payload:
            with self.timeline.span("commit", cat="metadata", trial=trial) as details:
                record = self.metadata.commit(payload)
                details.update(sequence=record.sequence, area=record.area, mutations=self.power.mutations)
        if isinstance(self._image, FlashModelImage):
            self._image.mark_persisted()
        self._current = current
        self._confirmed = current if not trial else confirmed  # type: ignore[assignment]
        self._trial = trial

    def _fetch(self, digest: str) -> bytes:
        return self.store.read(digest)

    def _fetch_or_none(self, digest: str) -> bytes | None:
        if self._store is None:
            return None
        try:
            return self._store.read(digest)
        except PowerLoss:
            raise
        except (StoreError, FlashError):
            return None

    def _on_event(self, kind: str, details: dict[str, Any]) -> None:
        self.timeline.instant(kind, cat="manager", **details)


def _same_logic(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Same adapters, versions, anti-rollback counters and active set (slot placement aside)."""
    if not a or not b:
        return False
    sa, sb = a["state"], b["state"]
    return (sa["adapters"] == sb["adapters"] and sa["last_sequence"] == sb["last_sequence"]
            and a["active"] == b["active"])


__all__ = ["ActiveAdapter", "BootReport", "Device", "InstallResult"]
