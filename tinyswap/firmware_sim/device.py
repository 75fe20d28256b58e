"""The simulated device: a thin facade over its board, its boot and its persisted record.

Why it is built this way (docs/architecture.md "The device", docs/storage-facts.md):

* `board.py` sizes the hardware once from the profile: flash parts on one power supply,
  partitions, RAM budgets, the slot erase budget. `boot.py` starts the device from what the
  flash holds. `record.py` holds the persisted record and its pure test-then-confirm
  transitions. This module runs operations on top of them.
* The model partition is read in place (`FlashModelImage`, XIP) or copied to RAM at boot
  (`RamModelImage`); the base model's sectors are never erased or programmed after
  provisioning, because every slot write covers whole sectors of its own.
* The adapter store is LittleFS (`AdapterStore`); packages are stored under their content
  digest, so a package is identified by what it is, and re-installing one is idempotent.
* The metadata partition (`MetadataStore`) holds one record (`DeviceRecord`): the swap
  manager's whole committed state, the active set, the trial flag and the last confirmed
  state. The manager calls `on_commit` after a slot's bytes were written and verified and
  before any gate may use them; the device persists the record there, so after any power cut
  the record describes bytes that are really on flash. A record is computed first, committed,
  and only then adopted in RAM: a commit that fails changes nothing.
* The idle step (`idle.py`, `idle()`): the metadata areas and the slot the next write takes
  are erased off the request path, as their own trace event, so a hot swap only programs; a
  write or commit that finds nothing pre-erased erases first, counted and traced.
* Test-then-confirm (MCUboot's "test" upgrade): a change of adapters, versions or the active
  set runs on trial; `confirm()` makes it permanent; a boot that finds a trial record goes
  back to the confirmed state. `permanent=True` skips the trial.
* OTA `install` verifies everything (size, format, digest, key, signature, base model, slot
  layout, sequence number, decryption of an encrypted package, device class) before the first
  flash operation, so a refused package leaves the flash and its counters exactly as they were.
  An encrypted package (`tinyswap.envelope`) stays encrypted in the store; only RAM holds its
  plaintext, and each decryption's CPU time is charged (`crypto_cost.py`).
* Reports (`report_log.py`, off unless `enable_report_log()`): every operation and refusal
  appends one entry after its own commit, in the adapter store; boot reconciles the log with
  the committed record. Attestation (`identity.py`, `tinyswap.attestation`): `attest(nonce)`
  signs what the device committed with its identity key.
* Any `PowerLoss` leaves the device unbooted (RAM is gone); `power_on()` then `boot()`.
  A `FlashMisuseError` (a driver bug) is never worked around: it propagates.

Time: every flash operation is charged by its medium's profile on one `Timeline`; inference
by `profiles.estimate_inference_seconds`; the trace exports as Chrome/Perfetto JSON.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tinyswap.firmware_sim.board import (
    METADATA_PARTITION,
    MODEL_PARTITION,
    STORE_PARTITION,
    Board,
    FlashOptions,
    RamBudget,
    ram_budget,
    size_board,
)
from tinyswap.firmware_sim.boot import BootReport, BootSequence
from tinyswap.model_cost import ModelCost, model_cost
from tinyswap.firmware_sim.crypto_cost import decrypt_seconds
from tinyswap.firmware_sim.errors import (
    BaseModelError,
    DeviceClassError,
    DeviceStateError,
    FlashError,
    FlashMisuseError,
    MetadataError,
    PackageTooLargeError,
    PowerLoss,
    StoreError,
    StoreNotFoundError,
)
from tinyswap.firmware_sim.flash import BadBlock, FlashDevice, FlashGeometry, Partition, PowerCut
from tinyswap.firmware_sim.flashio import erase_sectors, pad_to_unit, program_range
from tinyswap.firmware_sim.identity import attest as attest_device
from tinyswap.firmware_sim.idle import IdleReport, erased_slots, run_idle
from tinyswap.firmware_sim.identity import check_identity_key
from tinyswap.firmware_sim.layout import DeviceLayout
from tinyswap.firmware_sim.lfs_store import AdapterStore
from tinyswap.firmware_sim.metadata import MetadataStore
from tinyswap.firmware_sim.model_image import FlashModelImage, RamModelImage
from tinyswap.firmware_sim.power import PowerSupply
from tinyswap.firmware_sim.profiles import DEVICES, DeviceProfile, ModelPlacement, estimate_inference_seconds
from tinyswap.firmware_sim.record import DeviceIdentity, DeviceRecord, Snapshot
from tinyswap.firmware_sim.report_log import (
    ALWAYS_REPORTED,
    DEFAULT_MAX_ENTRIES,
    DeviceReportLog,
    EntryKind,
    EntryOutcome,
    LogEntry,
    LogState,
    boot_drafts,
    draft,
    reason_of,
)
from tinyswap.firmware_sim.storage import StorageProfile
from tinyswap.firmware_sim.timeline import Timeline
from tinyswap.arena import ArenaFigure, tflm_arena_figure
from tinyswap.envelope import DecryptWork, DeviceKeys
from tinyswap.errors import TinySwapError
from tinyswap.image import RamImage
from tinyswap.package import AdapterPackage, Keyring, parse_package
from tinyswap.router import Experiment, Request, Router, Rule
from tinyswap.slotmap import SlotMap, SlotMapError
from tinyswap.swap import AdapterSpec, SwapManager

KIB = 1024


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


def _read_bundle(model: bytes | bytearray | str | Path, slotmap: SlotMap | Mapping[str, Any] | None
                 ) -> tuple[bytes, SlotMap | Mapping[str, Any] | None]:
    """A bundle directory gives `model.tflite` and (unless one was passed) `slotmap.json`."""
    if not isinstance(model, (str, Path)):
        return bytes(model), slotmap
    bundle = Path(model)
    data = (bundle / "model.tflite").read_bytes()
    if slotmap is None:
        slotmap = json.loads((bundle / "slotmap.json").read_text())
    return data, slotmap


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
    arena: the model's TFLite Micro arena when the host cannot measure it (an Ethos-U bundle:
        `manifest.json`'s figure); default: measured with the wheel on first use.
    worst: charge datasheet maximum timings; record_ops: one trace event per flash operation.
    flash_images: start from these flash contents (`flash_images()` of another device).
    device_keys: the device's (or its device group's) X25519 private keys, to decrypt
        encrypted packages after they are verified; the store keeps them encrypted, only RAM
        holds plaintext; each decryption is charged to the timeline ("decrypt", `crypto_cost`).
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
                 record_ops: bool = True, flash_images: Mapping[str, bytes] | None = None,
                 device_keys: Sequence[X25519PrivateKey] | None = None, arena: ArenaFigure | None = None) -> None:
        self.profile = DEVICES[profile] if isinstance(profile, str) else profile
        data, raw_map = _read_bundle(model, slotmap)
        if raw_map is None or keyring is None:
            raise DeviceStateError("a device needs the model's slot map and a keyring")
        self.model = data
        self.slotmap = raw_map if isinstance(raw_map, SlotMap) else SlotMap.from_json(dict(raw_map))
        self._check_bundle()
        self.keyring = keyring
        self.device_keys = DeviceKeys(device_keys or (), on_work=self._charge_decrypt)
        self.cost: ModelCost = model_cost(self.model)
        self.device_class = device_class or self.profile.name
        self.xip = self.profile.model_placement is ModelPlacement.XIP
        self.store_block_cycles = store_block_cycles
        self.timeline = Timeline(worst=worst, record_ops=record_ops)
        ram = ram_budget(self.profile, len(self.model), arena_budget=arena_budget, cache_budget=cache_budget,
                         max_package_bytes=max_package_bytes)
        options = FlashOptions(model_geometry, store_geometry, shared_store, model_storage, store_storage,
                               store_bytes, metadata_area_bytes, metadata_areas, badblock)
        self.board: Board = size_board(self.profile, len(self.model), options, ram, self.timeline, flash_images)
        self.metadata = MetadataStore(self.partitions[METADATA_PARTITION], self.layout.metadata_areas)
        self.identity = DeviceIdentity(self.profile.name, self.device_class, self.slotmap.base_digest,
                                       len(self.model), self.slotmap.num_slots)

        # configuration kept across reboots
        self.rules: list[Rule] = []
        self.experiments: list[Experiment] = []
        # Given when the host cannot measure it (an Ethos-U bundle's manifest figure: no host
        # runtime has the ethos-u kernel); else measured on first use.
        self._factory_arena: ArenaFigure | None = arena
        # RAM state (lost at every power cut)
        self._manager: SwapManager | None = None
        self._store: AdapterStore | None = None
        self._router: Router | None = None
        self._image: FlashModelImage | RamModelImage | None = None
        # The record last committed or restored, and the active set. `_lose_ram` keeps them so
        # that `trial` and reports still say what was last committed until the next boot
        # replaces them from flash.
        self._record: DeviceRecord | None = None
        self._active: dict[str, float] = {}
        self._permanent = False
        self.arena_bytes: int | None = None
        self.last_boot: BootReport | None = None
        # Reports and attestation (configuration kept across reboots; off unless enabled, so
        # a device without them writes exactly what it always wrote).
        self._report_log: DeviceReportLog | None = None
        self._identity_key: Ed25519PrivateKey | None = None

    def _check_bundle(self) -> None:
        """The factory model matches its slot map (whose frames, required by `SlotMap`, let boot
        rewrite a slot that a power cut interrupted)."""
        try:
            self.slotmap.check_model(self.model)
        except SlotMapError as exc:
            raise BaseModelError(f"the factory model does not match its slot map: {exc}") from exc

    # ================================================================ the board
    @property
    def layout(self) -> DeviceLayout:
        return self.board.layout

    @property
    def flashes(self) -> dict[str, FlashDevice]:
        return self.board.flashes

    @property
    def partitions(self) -> dict[str, Partition]:
        return self.board.partitions

    @property
    def power(self) -> PowerSupply:
        """The one supply of every flash part: cut plan, power state, mutation count."""
        return self.board.supply

    @property
    def model_storage(self) -> StorageProfile:
        return self.board.model_storage

    @property
    def store_storage(self) -> StorageProfile:
        return self.board.store_storage

    @property
    def slot_erase_budget(self) -> int | None:
        return self.board.slot_erase_budget

    @property
    def ram_budget(self) -> RamBudget:
        return self.board.ram

    @property
    def arena_budget(self) -> int:
        return self.board.ram.arena

    @property
    def cache_budget(self) -> int:
        return self.board.ram.cache

    @property
    def max_package_bytes(self) -> int:
        return self.board.ram.max_package

    def factory_arena(self) -> ArenaFigure:
        """The TFLite Micro tensor arena the model needs (`tinyswap.arena`): measured with the
        `tflite_micro` wheel, or its labelled estimate without it; once per model (cached by digest)."""
        if self._factory_arena is None:
            self._factory_arena = tflm_arena_figure(self.model)
        return self._factory_arena

    def factory_arena_bytes(self) -> int:
        """The arena the RAM budget charges: TFLM's (tensor structs, op data, allocator and the
        activations), not our interpreter's activation plan alone."""
        return self.factory_arena().tflm_bytes

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
    def record(self) -> DeviceRecord | None:
        """The record the device last committed or restored (None before the first boot)."""
        return self._record

    @property
    def trial(self) -> bool:
        """The committed state runs on trial: the next boot reverts it unless `confirm()`ed."""
        return self._record is not None and self._record.trial

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
            "booted": True, "trial": self.trial, "active": dict(self._active),
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
        before = self._record_sequence()
        with self.timeline.span(label, **args) as details:
            try:
                self._record_wear()
                try:
                    yield details
                except (PowerLoss, FlashMisuseError):
                    raise
                except TinySwapError as exc:
                    self._report(label, details, before, exc)  # after the refusal: never masks it
                    raise
                self._report(label, details, before, None)  # after the operation's own commit
            except PowerLoss:
                self._lose_ram()
                raise

    @contextlib.contextmanager
    def operation(self, label: str, /, **args: Any) -> Iterator[dict[str, Any]]:
        """An operation another part of the simulator runs on this device (streams): refused
        unless powered and booted, drawn as a trace span, and a power cut inside loses RAM."""
        with self._operation(label, **args) as details:
            yield details

    def _record_wear(self) -> None:
        """Commit erase counts a failed commit left unrecorded, before anything may erase again
        (the image refuses to erase such a sector: `WearNotRecordedError`)."""
        image = self._image
        if isinstance(image, FlashModelImage) and image.erase_counts != image.persisted:
            try:
                self._persist(self.manager.export_state(), self._active)
            except MetadataError as exc:  # the op goes on; an erase of that sector is refused
                self.timeline.instant("wear not recorded", cat="metadata", error=str(exc))

    # ================================================================ reports and attestation
    def enable_report_log(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        """Keep a report log (`report_log.py`): one entry per operation and refusal, at most
        `max_entries`, in the adapter store. Read and reconciled at every boot, so enable it
        before `boot()`; configuration, kept across reboots."""
        if self.booted:
            raise DeviceStateError("enable the report log before boot(): it is read and reconciled at boot")
        self._report_log = DeviceReportLog(max_entries)

    def report_log_state(self) -> LogState | None:
        """The log as the device holds it (None: no log enabled)."""
        return None if self._report_log is None else self._report_log.state

    def report_log(self) -> list[LogEntry]:
        """The log's entries, oldest first ([] without a log)."""
        state = self.report_log_state()
        return [] if state is None else list(state.entries)

    def report_log_json(self) -> dict[str, Any] | None:
        """The log as JSON (the file's form plus the RAM-only `unlogged` counter), or None."""
        return None if self._report_log is None else self._report_log.to_json()

    def provision_identity(self, key: Ed25519PrivateKey) -> None:
        """Give the device its attestation identity key (factory step; on hardware it stays
        in the secure element). Kept across reboots, never written to the simulated flash."""
        self._identity_key = check_identity_key(key)

    @property
    def identity_public_key(self) -> Ed25519PublicKey | None:
        return None if self._identity_key is None else self._identity_key.public_key()

    def attest(self, nonce: bytes) -> bytes:
        """A signed attestation token answering the verifier's `nonce` (`tinyswap.attestation`)."""
        if self._identity_key is None:
            raise DeviceStateError("attest: the device has no identity key (provision_identity() first)")
        if not self.power.powered:
            raise DeviceStateError("attest: the power is off (power_on() and boot() first)")
        return attest_device(self, self._identity_key, nonce)

    def _record_sequence(self) -> int | None:
        current = self.metadata.current
        return None if current is None else current.sequence

    def _report(self, label: str, details: Mapping[str, Any], before: int | None,
                error: TinySwapError | None) -> None:
        """Append the report of the operation that just ended (or was refused). Runs after the
        operation's commit and can neither undo nor fail it (`DeviceReportLog.append`)."""
        log = self._report_log
        if log is None:
            return
        try:
            kind = EntryKind(label)
        except ValueError:
            return  # not a reported operation
        after = self._record_sequence()
        changed = after != before
        if error is None:
            outcome = EntryOutcome.APPLIED if changed or "stored" in details else EntryOutcome.UNCHANGED
        else:
            outcome = EntryOutcome.FAILED if changed else EntryOutcome.REFUSED
        if kind not in ALWAYS_REPORTED and not changed:
            return  # inference and prefetch are reported only when they committed a record
        name, version, digest = details.get("name"), details.get("version"), details.get("digest")
        if kind is EntryKind.ACTIVATE:
            name = details.get("adapters")
        elif error is None and name is not None and digest is None and self._manager is not None:
            adapter = self._manager.export_state()["adapters"].get(name)  # rollback: the version now current
            if adapter is not None:
                digest, version = adapter["current"], self._manager.adapter_info(name).version
        entry = draft(kind, outcome, adapter=name, version=version, digest=digest,
                      reason=None if error is None else reason_of(error), record_sequence=after,
                      time_s=self.timeline.now)
        log.append(self._store, [entry], self.timeline)

    def _reconcile_log(self, report: BootReport) -> None:
        """At boot, once the state is restored: read the log, then append what happened that it
        does not say (records committed without a report, the revert, the boot's repairs)."""
        log = self._report_log
        if log is None:
            return
        problem = log.load(self._store)
        if not log.loaded:
            return  # no mounted store: nothing can be read or written; the next boot catches up
        drafts = boot_drafts(problem, log.state.last_record_sequence, report, self._record_sequence(),
                             self.timeline.now)
        log.append(self._store, drafts, self.timeline)

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
                part = self.partitions[MODEL_PARTITION]
                erase_sectors(part, 0, part.size)
                program_range(part, 0, pad_to_unit(self.model, part.geometry))
                store = AdapterStore(self.partitions[STORE_PARTITION], block_cycles=self.store_block_cycles)
                store.format()
                self.metadata.format()
                empty = SwapManager(RamImage(self.model), self.slotmap, self.keyring).export_state()
                g = part.geometry
                wear = {s: 1 for info in self.slotmap.slots  # the factory erase
                        for s in g.sectors_in(part.absolute(info.offset), info.length)} if self.xip else {}
                record = DeviceRecord(self.identity, self.snapshot_of(empty, {}), wear=wear)
                self.metadata.commit(record.to_payload())
            except PowerLoss:
                self._lose_ram()
                raise
        self._lose_ram()

    # ================================================================ boot
    def boot(self) -> BootReport:
        """Start from what the flash holds; the steps are in `boot.py`."""
        if not self.power.powered:
            raise DeviceStateError("boot: the power is off (call power_on())")
        self._lose_ram()
        with self.timeline.span("boot") as details:
            try:
                report = BootSequence(self).run()
                self._reconcile_log(report)  # after boot's own commits: it logs them too
            except BaseException:  # power loss or a refusal: nothing half-booted stays
                self._lose_ram()
                raise
            details.update(reverted=report.reverted, cleared=report.cleared_slots, errors=len(report.errors))
        self.last_boot = report
        return report

    # ================================================================ OTA
    def install(self, package: bytes | bytearray) -> InstallResult:
        """Verify a package completely, then store it (under its content digest).

        Nothing touches flash before every check passed: size, format, digest, trusted key,
        signature, base model, slot layout, sequence number, decryption (an encrypted package
        must decrypt with a device key; the store keeps its encrypted bytes), device class.
        """
        data = bytes(package)
        with self._operation("install", bytes=len(data)) as details:
            self._check_size(data)
            pkg = parse_package(data)
            digest = pkg.content_digest
            details.update(name=pkg.name, version=pkg.metadata.get("version"), digest=digest)
            known = self.manager.export_state()["adapters"].get(pkg.name)
            if known is not None and digest in known["versions"]:
                return InstallResult(digest, pkg.name, str(pkg.metadata.get("version")), pkg.sequence, False, True)
            pkg = self._verified(pkg)
            stored = False
            if not self.store.exists(digest):
                self.store.write(digest, data)
                stored = True
            self.manager.cache.put(pkg)
            details["stored"] = stored
            return InstallResult(digest, pkg.name, str(pkg.metadata.get("version")), pkg.sequence, stored, False)

    def check_package(self, package: bytes | bytearray) -> AdapterPackage:
        """Every check `install` makes before it writes, writing nothing: size, format, digest,
        trusted key, signature, base model, slot layout, sequence, decryption, device class.
        Returns the verified package (decrypted, in RAM only, if it was encrypted)."""
        data = bytes(package)
        self._check_size(data)
        return self._verified(parse_package(data))

    def _check_size(self, data: bytes) -> None:
        if len(data) > self.max_package_bytes:
            raise PackageTooLargeError(f"the package is {len(data)} bytes; this device accepts at most "
                                       f"{self.max_package_bytes} (its package cache budget)")

    def _verified(self, pkg: AdapterPackage) -> AdapterPackage:
        pkg = self.manager.verify(pkg)  # decrypted (RAM only) if it was encrypted
        self._check_device_class(pkg)
        return pkg

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
        with self._operation("swap", name=pkg.name, version=pkg.metadata.get("version"), digest=digest), \
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

    # ================================================================ idle
    def idle(self, prepare_for: str | None = None) -> IdleReport:
        """The idle (maintenance) step (`idle.py`): erase the metadata areas and a slot now, so
        that the next swap's request path only programs. `prepare_for`: an adapter name whose
        hot swap is expected (an installed update), else only an empty slot is prepared."""
        with self._operation("idle", prepare_for=prepare_for) as details:
            report = run_idle(self, prepare_for)
            details.update(report.details())
        return report

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
                try:  # best effort: the error being raised is the metadata's
                    m.set_adapter(previous)
                except FlashMisuseError:
                    raise
                except TinySwapError:
                    pass
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
            if not self.trial:
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
    def snapshot_of(self, state: Mapping[str, Any], active: Mapping[str, float]) -> Snapshot:
        """`state` + `active` as the record stores them (a RAM image's slots are not recorded:
        they do not survive power-off)."""
        return Snapshot.of(state, active, slots_persist=self.xip)

    def _on_commit(self, state: dict[str, Any]) -> None:
        self._persist(state, self._active)

    def _persist(self, state: Mapping[str, Any], active: Mapping[str, float], *, confirm: bool = False) -> None:
        """Commit the record for `state` + `active` (on trial unless `confirm`, a permanent
        operation, or a slot-only move); raises, and changes nothing, if it does not land."""
        if self._record is None:
            raise DeviceStateError("no record to commit on: boot() first")
        new = self.snapshot_of(state, active)
        record = self._record.confirm(new) if confirm else self._record.commit(new, permanent=self._permanent)
        self._commit_record(record)

    def _commit_record(self, record: DeviceRecord) -> None:
        """Write `record` (with the image's erase counts) unless the flash already says exactly
        that, then adopt it: RAM follows only what landed."""
        image = self._image
        record = record.with_wear(image.erase_counts if isinstance(image, FlashModelImage) else {})
        record = record.with_erased(erased_slots(image, self.slotmap))
        payload = record.to_payload()
        on_flash = self.metadata.current
        if on_flash is None or on_flash.payload != payload:
            with self.timeline.span("commit", cat="metadata", trial=record.trial) as details:
                try:
                    written = self.metadata.commit(payload)
                finally:
                    if self.metadata.last_commit_erased:  # idle() did not run since: never silent
                        self.timeline.instant("erase (no pre-erased sector)", cat="metadata",
                                              erases_on_commit=self.metadata.erases_on_commit)
                details.update(sequence=written.sequence, area=written.area, mutations=self.power.mutations,
                               pre_erased=not self.metadata.last_commit_erased)
        if isinstance(image, FlashModelImage):
            image.mark_persisted()
        self._record = record

    def _fetch(self, digest: str) -> bytes:
        return self.store.read(digest)

    def _fetch_or_none(self, digest: str) -> bytes | None:
        if self._store is None:
            return None
        try:
            return self._store.read(digest)
        except PowerLoss:
            raise
        except (StoreError, FlashError):  # faults only: a misuse error propagates
            return None

    def _charge_decrypt(self, work: DecryptWork) -> None:
        """CPU time of one package decryption (X25519 + AES-GCM), wherever the manager did it."""
        self.timeline.advance(decrypt_seconds(self.profile, work), "decrypt", cat="crypto", package=work.package,
                              bytes=work.ciphertext_bytes, key_agreements=work.key_agreements, ok=work.ok)

    def _on_event(self, kind: str, details: dict[str, Any]) -> None:
        self.timeline.instant(kind, cat="manager", **details)


__all__ = ["ActiveAdapter", "BootReport", "Device", "InstallResult"]
