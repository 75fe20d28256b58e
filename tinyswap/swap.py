"""`SwapManager`: verified adapters into compiled slots, activated by gates, per request.

The names are PEFT's (`load_adapter`, `set_adapter`, `enable_adapters`, `disable_adapters`,
`disable_adapter()` as a context manager, `active_adapters`, `delete_adapter`,
`hotswap_adapter`, mixed batches through `adapter_names=[...]` with `"__base__"`), the
mechanism is not: the base model's bytes are never written, an adapter is written into an
*idle* slot of the model image and only then may a gate enable it.

Why concurrent swaps are safe without stopping inference: a slot whose gate is 0 contributes
exactly nothing (the gate MUL returns its output zero point whatever the slot's bytes, and the
ADD then returns its first input), so bytes may change under a request that does not use that
slot. Every request pins the slots its gates use (`in-flight` counts) and a slot is written
only while nothing pins it and no adapter points at it. Each output is therefore the output of
exactly one committed state.

Two phases, as PEFT's hot swap ("dry run first"): `plan_load` / `plan_hotswap` verify the
package and choose a slot, changing nothing; `apply(plan)` writes the slot, reads it back,
compares the digest and only then commits. A plan made against an older state is refused.

Anti-rollback and rollback: a package whose sequence number is not above the last accepted for
its name is refused (downgrade attack); `rollback(name)` is the operator's explicit return to a
version this manager verified and accepted before, so it is allowed and does not lower the
counter (as MCUboot's revert of an unconfirmed image).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

import numpy as np

from tinyswap.cache import PackageCache
from tinyswap.errors import TinySwapError
from tinyswap.image import ModelImage, RamImage
from tinyswap.interpreter import Interpreter
from tinyswap.package import AdapterPackage, Keyring, PackageError, parse_package, verify_package
from tinyswap.registry import Registry, RegistryEntry
from tinyswap.slotmap import SlotInfo, SlotMap

BASE = "__base__"

#: What a request may ask for: one adapter, several at weight 1, or weights per adapter.
AdapterSpec = Union[str, Sequence[str], Mapping[str, float], None]


class AdapterError(TinySwapError):
    """A swap-manager request was refused; the model image and the state are unchanged."""


class UnknownAdapterError(AdapterError):
    """No adapter of that name is loaded."""


class AdapterExistsError(AdapterError):
    """An adapter of that name is already loaded (use `hotswap_adapter` for a new version)."""


class GateWeightError(AdapterError):
    """A composition weight lies outside the gates' range [0, gate_max]."""


class SlotBusyError(AdapterError):
    """No slot can be freed: each holds an adapter pinned by in-flight requests, or one request
    needs more adapters at once than the model has slots."""


class SlotVerifyError(AdapterError):
    """The bytes read back from a slot differ from what was written; the slot stays disabled."""


class StalePlanError(AdapterError):
    """The state changed between `plan_*` and `apply`: plan again."""


class TenantIsolationError(AdapterError):
    """A request of one tenant asked for an adapter that belongs to another tenant."""


@dataclass(slots=True)
class SwapPlan:
    """What `apply` will do; building one changed nothing."""

    action: str  # "load" | "hotswap" | "restore" (rollback to a non-resident version)
    name: str
    package: AdapterPackage
    slot: int | None  # the idle slot to write; None: keep cached, make resident on first use
    evicts: str | None  # digest of the adapter whose bytes the write replaces
    generation: int
    priority: float = 0.0


@dataclass
class _Slot:
    info: SlotInfo
    digest: str | None = None  # package digest whose bytes the slot holds; None = zeros
    writing: bool = False
    draining: bool = False  # a swap waits for this slot: no new request may pin it
    retired: bool = False  # never written again (e.g. worn flash); may keep serving what it holds
    pinned: int = 0  # in-flight requests whose gates use this slot
    last_used: int = 0


@dataclass
class _Adapter:
    name: str
    current: str  # package digest in use for this name
    versions: list[str] = field(default_factory=list)  # accepted digests, oldest first
    priority: float = 0.0
    tenant: str | None = None


@dataclass(frozen=True)
class SlotRecord:
    """One row of the committed slot table (what a device persists)."""

    slot: int
    digest: str | None  # package digest, None when the slot holds zeros
    content_sha256: str  # SHA-256 of the slot's tensor bytes, in slot-map order


class SwapManager:
    """Adapters on a model image with compiled slots.

    image: the writable model image (`RamImage`, or a device's flash-backed image); a plain
        `bytes`/`bytearray` is wrapped in a `RamImage`.
    slotmap: the bundle's `slotmap.json` (dict or `SlotMap`); checked against the image.
    keyring: the Ed25519 keys whose packages are accepted.
    cache: RAM cache of verified packages (default: 4 MiB budget, LRU).
    fetch: reload a package by digest when the cache evicted it (a device reads its store);
        the bytes are verified again.
    eviction: "lru" (least recently used resident adapter first) or "priority" (lowest
        `priority` first, LRU among equals).
    on_commit: called with the new state (`export_state()` form) after a slot's bytes were
        written and verified and before any gate may use them, and after every rollback and
        delete: a device persists it atomically here. If it raises, nothing is committed and
        the written slot stays disabled.
    """

    def __init__(self, image: ModelImage | bytes | bytearray, slotmap: SlotMap | Mapping[str, Any], keyring: Keyring,
                 *, cache: PackageCache | None = None, registry: Registry | None = None,
                 fetch: Callable[[str], bytes] | None = None, eviction: str = "lru", profile: str = "tflm",
                 on_commit: Callable[[dict[str, Any]], None] | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 wait_seconds: float = 10.0) -> None:
        self.image: ModelImage = RamImage(image) if isinstance(image, (bytes, bytearray)) else image
        self.slotmap = slotmap if isinstance(slotmap, SlotMap) else SlotMap.from_json(dict(slotmap))
        if eviction not in ("lru", "priority"):
            raise AdapterError(f"eviction is {eviction!r}; expected 'lru' or 'priority'")
        self.slotmap.check_model(self.image.buffer)
        self.keyring = keyring
        self.cache = cache or PackageCache(4 << 20)
        self.registry = registry or Registry()
        self._fetch = fetch
        self._eviction = eviction
        self._profile = profile
        self._on_commit = on_commit
        self._on_event = on_event
        self._wait = wait_seconds
        self._slots = [_Slot(info) for info in self.slotmap.slots]
        self._adapters: dict[str, _Adapter] = {}
        self._last_sequence: dict[str, int] = {}
        self._packages_meta: dict[str, AdapterPackage] = {}  # digest -> package (metadata; bytes may be evicted)
        self._default: dict[str, float] = {}
        self._enabled = True
        self._generation = 0
        self._clock = itertools.count(1)
        # `with self._lock` (C) on the hot paths; `self._cond` (same lock) to wait and notify.
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._local = threading.local()
        self._write_lock = threading.Lock()  # one slot write at a time (one flash controller)
        self._content_cache: dict[str, str] = {}
        # Per slot: ((layer, role), offset within the slot's range, length) in layout order.
        self._layout = [[(t.key, t.offset - info.offset, t.length) for t in info.tensors] for info in self.slotmap.slots]
        self._views_cache: dict[str, dict[tuple[str, str], memoryview]] = {}
        self._zero_digest = self._content_digest_of({})
        # The base bytes inside each slot range come from the slot map (trusted, like the base
        # digest), never from the image, which an interrupted write may have damaged.
        self._frames = [info.template() or self.image.read(info.offset, info.length) for info in self.slotmap.slots]
        self.stats = {"swaps": 0, "bytes_written": 0, "verify_failures": 0, "evictions": 0}

    # -- queries ------------------------------------------------------------------------------
    @property
    def num_slots(self) -> int:
        return len(self._slots)

    @property
    def active_adapters(self) -> list[str]:
        """The adapters this thread's requests use when they name none (PEFT's property)."""
        spec = self._thread_default()
        return [name for name, w in spec.items() if w > 0]

    @property
    def active_weights(self) -> dict[str, float]:
        return dict(self._thread_default())

    @property
    def adapters(self) -> list[str]:
        with self._lock:
            return list(self._adapters)

    def slot_table(self) -> list[SlotRecord]:
        with self._lock:
            return [SlotRecord(s.info.slot, s.digest, self._expected_content(s.digest)) for s in self._slots]

    def resident(self) -> dict[int, str | None]:
        """Slot -> adapter name@version it holds (None: zeros)."""
        with self._lock:
            return {s.info.slot: (None if s.digest is None else self._label(s.digest)) for s in self._slots}

    def adapter_info(self, name: str) -> RegistryEntry:
        with self._lock:
            return self.registry.get(self._require(name).current)

    def last_sequence(self, name: str) -> int | None:
        return self._last_sequence.get(name)

    # -- loading ------------------------------------------------------------------------------
    def verify(self, package: AdapterPackage | bytes | bytearray | str | os.PathLike[str]) -> AdapterPackage:
        """Parse and verify a package against this model (signature, digest, base binding,
        slot layout, anti-rollback). Changes nothing."""
        pkg = _as_package(package)
        verify_package(pkg, self.keyring, self.slotmap.base_digest, self.slotmap.layout_dicts(), self._last_sequence)
        return pkg

    def plan_load(self, package: AdapterPackage | bytes | bytearray | str | os.PathLike[str],
                  adapter_name: str | None = None, *, priority: float = 0.0) -> SwapPlan:
        pkg = _as_package(package)
        name = adapter_name or pkg.name
        _check_name(name)
        if name in self._adapters:
            raise AdapterExistsError(f"adapter {name!r} is already loaded; use hotswap_adapter for a new version")
        self.verify(pkg)
        with self._lock:
            if name in self._adapters:
                raise AdapterExistsError(f"adapter {name!r} is already loaded; use hotswap_adapter for a new version")
            slot = self._free_slot()
            return SwapPlan("load", name, pkg, slot, None if slot is None else self._slots[slot].digest,
                            self._generation, priority)

    def load_adapter(self, package: AdapterPackage | bytes | bytearray | str | os.PathLike[str],
                     adapter_name: str | None = None, *, priority: float = 0.0) -> str:
        """Verify, register and cache a package under `adapter_name` (default: its own name) and
        write it into a free slot if there is one (otherwise on first use). Returns its digest."""
        plan = self.plan_load(package, adapter_name, priority=priority)
        self.apply(plan)
        return plan.package.content_digest

    def plan_hotswap(self, name: str, package: AdapterPackage | bytes | bytearray | str | os.PathLike[str]) -> SwapPlan:
        pkg = self.verify(package)
        with self._lock:
            adapter = self._require(name)
            old = self._packages_meta[adapter.current]
            if pkg.metadata.get("kind") != old.metadata.get("kind"):
                raise AdapterError(f"hotswap of {name!r}: kind {pkg.metadata.get('kind')!r} replaces "
                                   f"{old.metadata.get('kind')!r}; a hot swap keeps the adapter method")
            if pkg.content_digest == adapter.current:
                raise AdapterError(f"hotswap of {name!r}: the package is the version already in use")
            slot = self._victim(keep=set(), exclude_digests={adapter.current})
            return SwapPlan("hotswap", name, pkg, slot, None if slot is None else self._slots[slot].digest,
                            self._generation, adapter.priority)

    def hotswap_adapter(self, name: str, package: AdapterPackage | bytes | bytearray | str | os.PathLike[str]) -> str:
        """Replace `name` by a new version, in place and atomically: the new version is written
        into an idle slot and verified while the old one keeps serving, then `name` points at it.
        The old version stays resident (while slots allow) so `rollback` is a gate flip."""
        deadline = time.monotonic() + self._wait
        drained: int | None = None
        impossible = 0
        try:
            while True:
                plan = self.plan_hotswap(name, package)
                if plan.slot is None:
                    with self._lock:
                        current = self._require(name).current
                    self._undrain(drained)
                    drained = self._drain_one(set(), {current}, deadline)
                    impossible = impossible + 1 if drained == -2 else 0
                    if impossible >= 2:
                        raise SlotBusyError(f"hotswap of {name!r}: no slot besides the live version's can be "
                                            f"written (retired: {[s.info.slot for s in self._slots if s.retired]})")
                    continue
                try:
                    self.apply(plan)
                    return plan.package.content_digest
                except StalePlanError:
                    if time.monotonic() > deadline:
                        raise SlotBusyError(f"hotswap of {name!r}: the slots kept changing for {self._wait} s") from None
        finally:
            self._undrain(drained)

    def apply(self, plan: SwapPlan) -> None:
        """Write the planned slot, read it back, verify, commit. Raises `StalePlanError` if
        anything changed since the plan was made."""
        with self._lock:
            if plan.generation != self._generation:
                raise StalePlanError("the slot state changed after this plan was made; plan again")
            # Verification may have been done against an older anti-rollback counter.
            previous = self._last_sequence.get(plan.package.name)
            if plan.action != "restore" and previous is not None and plan.package.sequence <= previous:
                raise StalePlanError(f"sequence {plan.package.sequence} is no longer above {previous}")
            if plan.slot is not None:
                slot = self._slots[plan.slot]
                if slot.pinned or slot.writing or slot.digest != plan.evicts:
                    raise StalePlanError(f"slot {plan.slot} is no longer idle")
                if plan.action == "restore" and self._resident_slots({plan.package.content_digest}) is not None:
                    raise StalePlanError("another request made this adapter resident meanwhile")
                if slot.digest in self._current_digests():
                    self.stats["evictions"] += 1
                slot.writing = True
                slot.digest = None  # from here on the slot holds nothing usable
            self._generation += 1
        if plan.slot is not None:
            try:
                self._write_slot(plan.slot, plan.package)
            except BaseException:
                with self._lock:
                    self._slots[plan.slot].writing = False
                    self._generation += 1
                    self._cond.notify_all()
                raise
        with self._lock:
            pkg = plan.package
            digest = pkg.content_digest
            adapters, last_sequence = self._adapters, self._last_sequence
            if plan.action != "restore":  # copies: the live state changes only after the commit
                adapters = {n: dataclasses.replace(a, versions=list(a.versions)) for n, a in adapters.items()}
                last_sequence = dict(last_sequence)
            if plan.action == "load":
                adapters[plan.name] = _Adapter(plan.name, digest, [digest], plan.priority,
                                               (pkg.metadata.get("tags") or {}).get("tenant"))
            elif plan.action == "hotswap":
                adapters[plan.name].current = digest
                adapters[plan.name].versions.append(digest)
            if plan.action != "restore":
                last_sequence[pkg.name] = max(pkg.sequence, last_sequence.get(pkg.name, pkg.sequence))
            slot_digests = [sl.digest for sl in self._slots]
            if plan.slot is not None:
                slot_digests[plan.slot] = digest
            self._packages_meta[digest] = pkg
            try:
                self._commit(adapters, last_sequence, slot_digests)  # persisted before any gate may use it
            except BaseException:
                if plan.slot is not None:
                    self._slots[plan.slot].writing = False
                self._generation += 1
                self._cond.notify_all()
                raise
            if digest not in self.cache:
                self.cache.put(pkg)
            if plan.slot is not None:
                slot = self._slots[plan.slot]
                slot.writing, slot.digest, slot.last_used = False, digest, next(self._clock)
            self._adapters, self._last_sequence = adapters, last_sequence
            if plan.action != "restore":
                self.registry.add(pkg, plan.name)
            self._generation += 1
            self._cond.notify_all()
        if self._on_event is not None:
            self._event(plan.action, {"name": plan.name, "digest": digest, "slot": plan.slot,
                                      "version": pkg.metadata["version"]})

    def rollback(self, name: str) -> str:
        """Return `name` to the version accepted before its current one: a gate flip when that
        version is still resident, a slot write from the cache (or store) otherwise."""
        with self._lock:
            adapter = self._require(name)
            index = adapter.versions.index(adapter.current)
            if index == 0:
                raise AdapterError(f"adapter {name!r} has no earlier version to roll back to")
            target = adapter.versions[index - 1]
        self._ensure_resident({target})
        with self._lock:
            adapters = {n: dataclasses.replace(a, versions=list(a.versions)) for n, a in self._adapters.items()}
            adapters[name].current = target
            self._commit(adapters, self._last_sequence, [sl.digest for sl in self._slots])
            self._adapters = adapters
            self._generation += 1
            self._cond.notify_all()
        self._event("rollback", {"name": name, "digest": target})
        return target

    def delete_adapter(self, name: str) -> None:
        """Forget `name`: no new request can use it; its slots are cleared (zeros written) as
        soon as in-flight requests release them."""
        with self._lock:
            adapter = self._require(name)
            adapters = {n: a for n, a in self._adapters.items() if n != name}
            self._commit(adapters, self._last_sequence, [sl.digest for sl in self._slots])
            self._adapters = adapters
            self._default.pop(name, None)
            digests = set(adapter.versions)
            self._generation += 1
        for d in digests:
            self.cache.discard(d)
        self.registry.remove(name)
        for slot in self._slots:
            self._clear_when_idle(slot, digests)
        self._event("delete", {"name": name})

    # -- activation ---------------------------------------------------------------------------
    def set_adapter(self, adapters: AdapterSpec, *, tenant: str | None = None) -> None:
        """The default active set: a name, a list (weight 1 each) or {name: weight}. The
        adapters are made resident now, so the next request does not wait for a write."""
        spec = self._normalise(adapters)
        with self._lock:
            for name in spec:
                self._check_tenant(self._require(name), tenant)
            wanted = {self._adapters[n].current for n in spec}
            if self._resident_slots(wanted) is not None:  # the common case: a gate flip, nothing to write
                self._default = spec
                self._enabled = True
                return
        self._ensure_resident(wanted)
        with self._lock:
            self._default = spec
            self._enabled = True

    def enable_adapters(self) -> None:
        self._enabled = True

    def disable_adapters(self) -> None:
        """Requests that name no adapter run the base model until `enable_adapters()`."""
        self._enabled = False

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """`with manager.disable_adapter():` — this thread's requests run the base model.
        Per thread, not shared state (peft #176: a shared switch is unsafe across threads)."""
        previous = getattr(self._local, "override", None)
        self._local.override = {}
        try:
            yield
        finally:
            self._local.override = previous

    # -- inference ----------------------------------------------------------------------------
    def infer(self, *inputs: np.ndarray, adapter_names: Sequence[AdapterSpec] | None = None,
              adapters: AdapterSpec = None, tenant: str | None = None) -> list[np.ndarray]:
        """Run the model on a batch. Per row `adapter_names[i]` (a name, `"__base__"`, a list
        or {name: weight}); or `adapters` for the whole batch; or the default active set."""
        if not inputs:
            raise AdapterError("infer needs the model's data input(s)")
        batch = int(np.asarray(inputs[0]).shape[0])
        if adapter_names is not None:
            if len(adapter_names) != batch:
                raise AdapterError(f"adapter_names has {len(adapter_names)} entries for a batch of {batch}")
            rows = [self._normalise(spec) for spec in adapter_names]
        elif adapters is not None:
            rows = [self._normalise(adapters)] * batch
        else:
            rows = [self._thread_default()] * batch
        slots, gates = self._acquire(rows, tenant)
        try:
            return self._interpreter().run(*self._graph_inputs(inputs, gates))
        finally:
            self._release(slots)

    @contextlib.contextmanager
    def pinned(self, adapters: AdapterSpec, *, tenant: str | None = None) -> Iterator[np.ndarray]:
        """Keep `adapters` resident while the block runs (what every in-flight request does;
        useful for a streaming session). Yields the gate inputs [S, 1, 1] that select them."""
        slots, gates = self._acquire([self._normalise(adapters)], tenant)
        try:
            yield gates
        finally:
            self._release(slots)

    def make_resident(self, name: str) -> int:
        """Write `name`'s current version into a slot now (from the RAM cache, or the store),
        evicting by policy if needed; returns the slot. A no-op when already resident."""
        with self._lock:
            digest = self._require(name).current
        self._ensure_resident({digest})
        with self._lock:
            found = self._resident_slots({digest})
            if found is None:  # evicted again by a concurrent request before we looked
                raise SlotBusyError(f"adapter {name!r} could not be kept resident")
            return found[digest]

    def gates_for(self, adapters: AdapterSpec, batch: int = 1) -> np.ndarray:
        """The int8 gate inputs [S, batch, 1] that select `adapters` now (for a caller that runs
        its own interpreter). The adapters must be resident; nothing is pinned."""
        spec = self._normalise(adapters)
        with self._lock:
            slot_of = self._resident_slots({self._require(n).current for n in spec})
            if slot_of is None:
                raise SlotBusyError(f"{sorted(spec)} are not all resident; call set_adapter first")
            return self._gate_rows([spec] * batch, slot_of)

    # -- persistence --------------------------------------------------------------------------
    def export_state(self) -> dict[str, Any]:
        """The committed state as JSON-able data, what a device keeps in its metadata partition:
        every adapter with its accepted versions (package digests) and current one, the
        anti-rollback counters, and the slot table with each slot's content SHA-256."""
        with self._lock:
            return self._state(self._adapters, self._last_sequence, [s.digest for s in self._slots])

    def restore_state(self, state: Mapping[str, Any], packages: Mapping[str, bytes] | Callable[[str], bytes | None]
                      ) -> dict[str, list]:
        """Rebuild a fresh manager from `export_state()` output and the package bytes (a mapping
        or a function from digest to bytes, e.g. the device's store). Every package is verified
        again (signature, base binding, layout). A slot is enabled only if the image's bytes
        match its recorded content digest. Writes nothing. Returns what could not be restored:
        `disabled_slots` (bytes differ from the record, or the base bytes inside the range were
        damaged: clear them with `clear_slot` before inference), `missing` (digests without a valid
        package), `dropped` (adapters whose current version is missing)."""
        with self._lock:
            if self._adapters or any(s.digest for s in self._slots):
                raise AdapterError("restore_state needs a fresh manager (adapters are loaded already)")
        fetch = packages.get if isinstance(packages, Mapping) else packages
        report: dict[str, list] = {"disabled_slots": [], "missing": [], "dropped": []}
        try:
            raw_adapters = dict(state["adapters"])
            last_sequence = {str(k): int(v) for k, v in dict(state["last_sequence"]).items()}
            raw_slots = list(state["slots"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AdapterError(f"malformed manager state: {exc}") from None
        if len(raw_slots) != self.num_slots:
            raise AdapterError(f"the state lists {len(raw_slots)} slots, the model has {self.num_slots}")
        verified: dict[str, AdapterPackage] = {}

        def load(digest: str) -> AdapterPackage | None:
            if digest in verified:
                return verified[digest]
            data = fetch(digest)
            try:
                pkg = _as_package(data) if data is not None else None
                if pkg is not None:
                    verify_package(pkg, self.keyring, self.slotmap.base_digest, self.slotmap.layout_dicts(), {})
            except PackageError:
                pkg = None
            if pkg is None or pkg.content_digest != digest:
                report["missing"].append(digest)
                return None
            verified[digest] = pkg
            return pkg

        adapters: dict[str, _Adapter] = {}
        for name, raw in raw_adapters.items():
            try:
                versions = [str(d) for d in raw["versions"]]
                current = str(raw["current"])
                adapter = _Adapter(str(name), current, [d for d in versions if load(d) is not None],
                                   float(raw.get("priority", 0.0)), raw.get("tenant"))
            except (KeyError, TypeError, ValueError) as exc:
                raise AdapterError(f"malformed state of adapter {name!r}: {exc}") from None
            if current not in adapter.versions:
                report["dropped"].append(name)
                continue
            adapters[name] = adapter
        with self._lock:
            for pkg in verified.values():
                self._packages_meta[pkg.content_digest] = pkg
                self.cache.put(pkg)
            damaged = set(self.slotmap.damaged_frames(self.image.buffer))
            for slot, raw in zip(self._slots, raw_slots):
                digest = raw.get("digest") if isinstance(raw, Mapping) else None
                if slot.info.slot in damaged:  # interrupted write: clear_slot rewrites the frame
                    report["disabled_slots"].append(slot.info.slot)
                elif digest is None:
                    continue
                elif digest in verified and self._content_matches(slot.info.slot, digest):
                    slot.digest = digest
                else:
                    report["disabled_slots"].append(slot.info.slot)
            for index in state.get("retired", []) if isinstance(state.get("retired"), list) else []:
                if isinstance(index, int) and 0 <= index < self.num_slots:
                    self._slots[index].retired = True
            self._adapters, self._last_sequence = adapters, last_sequence
            for a in adapters.values():
                for d in a.versions:
                    self.registry.add(verified[d], a.name)
            self._generation += 1
        return report

    def _content_matches(self, slot: int, digest: str) -> bool:
        try:
            return self.content_digest(slot) == self._expected_content(digest)
        except TinySwapError:  # an unreadable slot is a disabled slot, not a failed restore
            return False

    def retire_slot(self, slot: int) -> None:
        """Never write `slot` again (its flash is worn out): it is no longer a swap target;
        what it holds now may keep serving. Persisted with the state."""
        with self._lock:
            if not 0 <= slot < self.num_slots:
                raise AdapterError(f"slot {slot} does not exist (the model has {self.num_slots})")
            self._slots[slot].retired = True
            self._commit(self._adapters, self._last_sequence, [sl.digest for sl in self._slots])
            self._generation += 1

    def prune_versions(self, name: str, keep: int = 2) -> list[str]:
        """Forget all but the newest `keep` accepted versions of `name` (never the current one)
        so that history, metadata and the store stay bounded. Returns the forgotten digests
        (a device deletes their packages from its store). Anti-rollback counters stay."""
        if keep < 1:
            raise AdapterError(f"keep must be at least 1, got {keep}")
        with self._lock:
            adapter = self._require(name)
            kept = adapter.versions[-keep:]
            if adapter.current not in kept:
                kept = [adapter.current] + kept[1:]
            dropped = [d for d in adapter.versions if d not in kept]
            if not dropped:
                return []
            adapters = dict(self._adapters)
            adapters[name] = dataclasses.replace(adapter, versions=[d for d in adapter.versions if d in kept])
            self._commit(adapters, self._last_sequence, [sl.digest for sl in self._slots])
            self._adapters = adapters
            self._generation += 1
        still_used = {d for a in self._adapters.values() for d in a.versions}
        for d in dropped:
            if d not in still_used:
                self.cache.discard(d)
                self.registry.forget(d)
        return dropped

    def clear_slot(self, slot: int) -> None:
        """Write zeros into a slot that no adapter uses (e.g. one `restore_state` disabled)."""
        with self._lock:
            target = self._slots[slot]
            if target.retired:
                raise SlotBusyError(f"slot {slot} is retired (worn): it is never written again")
            if target.pinned or target.writing or target.digest in self._current_digests():
                raise SlotBusyError(f"slot {slot} is in use")
            target.writing, target.digest = True, None
            self._generation += 1
        self._write_zeros(target)

    def _state(self, adapters: Mapping[str, _Adapter], last_sequence: Mapping[str, int],
               slot_digests: Sequence[str | None]) -> dict[str, Any]:
        return {
            "format": "tinyswap-manager-state", "version": 1, "base_digest": self.slotmap.base_digest,
            "adapters": {n: {"current": a.current, "versions": list(a.versions), "priority": a.priority,
                             "tenant": a.tenant} for n, a in adapters.items()},
            "last_sequence": dict(last_sequence),
            "slots": [{"slot": i, "digest": d, "content_sha256": self._expected_content(d)}
                      for i, d in enumerate(slot_digests)],
            "retired": [s.info.slot for s in self._slots if s.retired],
        }

    def _commit(self, adapters: Mapping[str, _Adapter], last_sequence: Mapping[str, int],
                slot_digests: Sequence[str | None]) -> None:
        if self._on_commit is not None:
            self._on_commit(self._state(adapters, last_sequence, slot_digests))

    # -- internals: requests ------------------------------------------------------------------
    def _thread_default(self) -> dict[str, float]:
        override = getattr(self._local, "override", None)
        if override is not None:
            return override
        return dict(self._default) if self._enabled else {}

    def _normalise(self, spec: AdapterSpec) -> dict[str, float]:
        if spec is None or spec == BASE:
            return {}
        if isinstance(spec, str):
            items = {spec: 1.0}
        elif isinstance(spec, Mapping):
            items = {str(k): float(v) for k, v in spec.items()}
        else:
            items = {str(n): 1.0 for n in spec}
        gate_max = self.slotmap.gate_max
        out = {}
        for name, weight in items.items():
            if name == BASE:
                continue
            if not (0.0 <= weight <= gate_max):  # also refuses NaN
                raise GateWeightError(f"weight {weight} for adapter {name!r} is outside the gate range [0, {gate_max}]")
            if weight > 0:
                out[name] = weight
        return out

    def _acquire(self, rows: list[dict[str, float]], tenant: str | None) -> tuple[list[int], np.ndarray]:
        names = set().union(*rows) if rows else set()
        if len(names) > self.num_slots:
            raise SlotBusyError(f"one request uses {len(names)} adapters; the model has {self.num_slots} slots")
        while True:
            with self._lock:
                adapters = {n: self._require(n) for n in names}
                for a in adapters.values():
                    self._check_tenant(a, tenant)
                wanted = {a.current for a in adapters.values()}
                slot_of = self._resident_slots(wanted)
                if slot_of is not None:
                    used = sorted(set(slot_of.values()))
                    tick = next(self._clock)
                    for s in used:
                        self._slots[s].pinned += 1
                        self._slots[s].last_used = tick
                    return used, self._gate_rows(rows, slot_of)
            self._ensure_resident(wanted, may_drain=False)

    def _release(self, slots: list[int]) -> None:
        with self._lock:
            for s in slots:
                self._slots[s].pinned -= 1
            self._cond.notify_all()

    def _resident_slots(self, digests: set[str]) -> dict[str, int] | None:
        """digest -> slot for every digest, using current (committed, not writing) slots only."""
        found: dict[str, int] = {}
        for s in self._slots:
            if s.digest in digests and not s.writing and not s.draining:
                found.setdefault(s.digest, s.info.slot)
        return found if len(found) == len(digests) else None

    def _gate_rows(self, rows: list[dict[str, float]], slot_of: dict[str, int]) -> np.ndarray:
        gates = self.slotmap.gates
        out = np.empty((len(gates), len(rows), 1), np.int8)
        for s, g in enumerate(gates):
            out[s] = g.zero_point
        for r, spec in enumerate(rows):
            for name, weight in spec.items():
                s = slot_of[self._adapters[name].current]
                out[s, r, 0] = gates[s].quantize(weight)
        return out

    def _graph_inputs(self, inputs: Sequence[np.ndarray], gates: np.ndarray) -> list[np.ndarray]:
        total = len(inputs) + len(self.slotmap.gates)
        by_position: list[np.ndarray | None] = [None] * total
        for g in self.slotmap.gates:
            if g.input_index >= total:
                raise AdapterError(f"gate {g.slot} is graph input {g.input_index}, but the model has {total} inputs")
            by_position[g.input_index] = gates[g.slot]
        data = iter(inputs)
        return [next(data) if x is None else x for x in by_position]

    def _interpreter(self) -> Interpreter:
        interp = getattr(self._local, "interpreter", None)
        if interp is None:
            interp = Interpreter(model_content=self.image.buffer, profile=self._profile)
            self._local.interpreter = interp
        return interp

    # -- internals: residency -----------------------------------------------------------------
    def _ensure_resident(self, digests: set[str], may_drain: bool = True) -> None:
        """Write every digest not yet resident into a slot, evicting by policy; waits while
        every candidate slot is pinned, up to `wait_seconds`."""
        deadline = time.monotonic() + self._wait
        drained: int | None = None
        impossible = 0
        try:
            while True:
                with self._lock:
                    missing = [d for d in digests if self._resident_slots({d}) is None]
                    if not missing:
                        return
                    digest = missing[0]
                    if any(s.draining and s.digest in missing for s in self._slots):
                        # A writer is draining a slot we need: wait for its swap, do not copy
                        # the adapter elsewhere (that would evict another one and thrash).
                        self._wait_until(deadline, f"adapter {self._label(digest)} stayed unavailable")
                        continue
                    slot = self._victim(keep=digests, exclude_digests=set())
                    if slot is not None:
                        plan = SwapPlan("restore", digest, self._package(digest), slot,
                                        self._slots[slot].digest, self._generation)
                if slot is None:
                    if may_drain:
                        self._undrain(drained)
                        drained = self._drain_one(digests, set(), deadline)
                        impossible = impossible + 1 if drained == -2 else 0
                        if impossible >= 2:
                            raise SlotBusyError(f"no slot can take adapter {self._label(digest)}: every writable "
                                                "slot holds an adapter this request needs")
                    else:  # requests wait for a slot; only swaps drain one (no drain fights)
                        with self._lock:
                            self._wait_until(deadline, f"no slot became idle for adapter {self._label(digest)}")
                    continue
                try:
                    self.apply(plan)
                except StalePlanError:
                    if time.monotonic() > deadline:
                        raise SlotBusyError(f"the slots kept changing for {self._wait} s") from None
        finally:
            self._undrain(drained)

    def _free_slot(self) -> int | None:
        """An idle slot that holds nothing anyone points at (empty first), or None."""
        current = self._current_digests()
        for want_empty in (True, False):
            for s in self._slots:
                if s.pinned or s.writing or s.retired or s.digest in current:
                    continue
                if (s.digest is None) == want_empty:
                    return s.info.slot
        return None

    def _victim(self, keep: set[str], exclude_digests: set[str]) -> int | None:
        """The slot to overwrite: empty, then stale versions, then the resident adapter chosen
        by the eviction policy; never a pinned or writing slot or one holding `keep`."""
        protected = self._protected(keep | exclude_digests)
        free = self._free_slot()
        if free is not None and free not in protected:
            return free
        priority = {a.current: a.priority for a in self._adapters.values()}
        candidates = [s for s in self._slots
                      if not s.pinned and not s.writing and not s.retired and s.info.slot not in protected]
        if not candidates:
            return None
        if self._eviction == "priority":
            victim = min(candidates, key=lambda s: (priority.get(s.digest, -np.inf), s.last_used))
        else:
            victim = min(candidates, key=lambda s: s.last_used)
        return victim.info.slot

    def _protected(self, digests: set[str]) -> set[int]:
        """One slot per digest that must stay (a second copy of the same bytes may go)."""
        seen: dict[str, int] = {}
        for s in self._slots:
            if s.digest in digests and not s.writing:
                seen.setdefault(s.digest, s.info.slot)
        return set(seen.values())

    def _current_digests(self) -> set[str]:
        return {a.current for a in self._adapters.values()}

    def _drain_one(self, keep: set[str], exclude_digests: set[str], deadline: float) -> int:
        """Every usable slot is pinned: mark the policy's choice `draining` so that no new
        request pins it (writers are not starved by a steady stream of readers) and wait until
        the requests in flight release it. The caller undrains it after its write."""
        with self._lock:
            protected = self._protected(keep | exclude_digests)
            candidates = [s for s in self._slots if not s.writing and not s.retired and s.info.slot not in protected]
            if not candidates and not any(s.draining or s.writing for s in self._slots):
                return -2  # nothing could ever be freed (the caller looks once more, then refuses)
            if not candidates or any(s.draining for s in self._slots):
                # Another swap drains or writes (one drain at a time), or the state changed
                # since the caller looked: wait briefly and let the caller look again.
                self._wait_until(deadline, "no slot became idle")
                return -1
            priority = {a.current: a.priority for a in self._adapters.values()}
            if self._eviction == "priority":
                slot = min(candidates, key=lambda s: (priority.get(s.digest, -np.inf), s.pinned, s.last_used))
            else:
                slot = min(candidates, key=lambda s: (s.pinned, s.last_used))
            slot.draining = True
            self._generation += 1
            while slot.pinned:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._cond.wait(remaining) and slot.pinned:
                    slot.draining = False
                    self._cond.notify_all()
                    raise SlotBusyError(f"slot {slot.info.slot} stayed pinned by in-flight requests for {self._wait} s")
            return slot.info.slot

    def _wait_until(self, deadline: float, what: str) -> None:
        """Wait (holding the condition's lock) for a state change, at most 50 ms at a time."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SlotBusyError(f"{what} within {self._wait} s "
                                f"(slots: {self.resident()}, pinned: {[s.pinned for s in self._slots]})")
        self._cond.wait(min(0.05, remaining))

    def _undrain(self, slot: int | None) -> None:
        if slot is None or slot < 0:
            return
        with self._lock:
            if self._slots[slot].draining:
                self._slots[slot].draining = False
                self._generation += 1
                self._cond.notify_all()

    def _clear_when_idle(self, slot: _Slot, digests: set[str]) -> None:
        with self._lock:
            while slot.digest in digests and (slot.pinned or slot.writing):
                if not self._cond.wait(self._wait):
                    raise SlotBusyError(f"slot {slot.info.slot} stayed in use for {self._wait} s")
            if slot.digest not in digests:
                return
            if slot.retired:  # never written again: forget what it holds, leave the bytes
                slot.digest = None
                self._generation += 1
                return
            slot.writing, slot.digest = True, None
            self._generation += 1
        self._write_zeros(slot)

    def _write_zeros(self, slot: _Slot) -> None:
        """Clear a slot the caller marked `writing` (holding nothing): zeros, read back, commit."""
        try:
            self._write_slot(slot.info.slot, None)
            with self._lock:
                self._commit(self._adapters, self._last_sequence, [sl.digest for sl in self._slots])
        finally:
            with self._lock:
                slot.writing = False
                self._generation += 1
                self._cond.notify_all()

    def _package(self, digest: str) -> AdapterPackage:
        pkg = self.cache.get(digest)
        if pkg is not None:
            return pkg
        if self._fetch is None:
            raise AdapterError(f"adapter {self._label(digest)} was evicted from the RAM cache and no store is attached")
        pkg = _as_package(self._fetch(digest))
        if pkg.content_digest != digest:
            raise AdapterError(f"the store returned a different package for {digest[:16]}...")
        # Re-verify what storage returned (signature, base, layout); its sequence was accepted before.
        verify_package(pkg, self.keyring, self.slotmap.base_digest, self.slotmap.layout_dicts(), {})
        self.cache.put(pkg)
        return pkg

    def prefetch(self, name: str) -> None:
        """Stage `name`'s package in the RAM cache (off the request path)."""
        with self._lock:
            digest = self._require(name).current
        self._package(digest)

    # -- internals: slot bytes ----------------------------------------------------------------
    def _slot_bytes(self, info: SlotInfo, package: AdapterPackage | None) -> bytearray:
        """The slot's whole aligned range with the package's tensors in place (zeros for None).
        Bytes between tensors (flatbuffer length prefixes, padding) are the base model's: they are
        read once at start-up (`_frames`) and written back unchanged."""
        data = bytearray(self._frames[info.slot])
        views = {} if package is None else self._tensor_views(package)
        for key, start, length in self._layout[info.slot]:
            src = views.get(key)
            data[start : start + length] = bytes(length) if src is None else src
        return data

    def _tensor_views(self, package: AdapterPackage) -> dict[tuple[str, str], memoryview]:
        """(layer, role) -> the package's bytes for that tensor (cached per package)."""
        views = self._views_cache.get(package.content_digest)
        if views is None:
            views = {(t.layer, t.role): package.tensor_bytes(t) for t in package.tensors}
            self._views_cache[package.content_digest] = views
        return views

    def _content_digest_of(self, tensors: Mapping[tuple[str, str], bytes | memoryview]) -> str:
        h = hashlib.sha256()
        for key, _, length in self._layout[0]:
            h.update(tensors.get(key, bytes(length)))
        return h.hexdigest()

    def _package_content(self, package: AdapterPackage) -> str:
        """SHA-256 of the slot bytes a package puts into a slot (cached: packages are immutable)."""
        digest = package.content_digest
        found = self._content_cache.get(digest)
        if found is None:
            found = self._content_digest_of(self._tensor_views(package))
            self._content_cache[digest] = found
        return found

    def _expected_content(self, digest: str | None) -> str:
        return self._zero_digest if digest is None else self._package_content(self._packages_meta[digest])

    def content_digest(self, slot: int) -> str:
        """SHA-256 of the tensor bytes the image holds in `slot` now (one read of the range)."""
        info = self.slotmap.slots[slot]
        data = memoryview(self.image.read(info.offset, info.length))
        h = hashlib.sha256()
        for _, start, length in self._layout[slot]:  # every slot lists its tensors in layout order
            h.update(data[start : start + length])
        return h.hexdigest()

    def _write_slot(self, slot: int, package: AdapterPackage | None) -> None:
        info = self.slotmap.slots[slot]
        data = self._slot_bytes(info, package)
        with self._write_lock:
            self.image.write(info.offset, data)
        # Read back from the storage and compare every byte of the range with what was written
        # (stronger than a digest, and no hashing on the swap path; the committed content
        # digest is the package's, computed once).
        back = self.image.read(info.offset, info.length)
        if back != data:
            self.stats["verify_failures"] += 1
            first = next(i for i, (x, y) in enumerate(zip(back, data)) if x != y) if len(back) == len(data) else 0
            raise SlotVerifyError(f"slot {slot}: the bytes read back differ from the written ones (first at "
                                  f"offset {info.offset + first}); the slot stays disabled")
        self.stats["swaps"] += 1
        self.stats["bytes_written"] += len(data)

    # -- internals: misc ----------------------------------------------------------------------
    def _require(self, name: str) -> _Adapter:
        adapter = self._adapters.get(name)
        if adapter is None:
            raise UnknownAdapterError(f"no adapter named {name!r} is loaded; loaded: {sorted(self._adapters)}")
        return adapter

    @staticmethod
    def _check_tenant(adapter: _Adapter, tenant: str | None) -> None:
        if tenant is not None and adapter.tenant is not None and adapter.tenant != tenant:
            raise TenantIsolationError(f"tenant {tenant!r} may not use adapter {adapter.name!r} "
                                       f"(it belongs to tenant {adapter.tenant!r})")

    def _label(self, digest: str) -> str:
        pkg = self._packages_meta.get(digest)
        return f"{digest[:12]}" if pkg is None else f"{pkg.name}@{pkg.metadata.get('version')}"

    def _event(self, kind: str, details: dict[str, Any]) -> None:
        if self._on_event is not None:
            self._on_event(kind, details)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or name == BASE:
        raise AdapterError(f"adapter name {name!r} is not allowed (empty, or the reserved {BASE!r})")


def _as_package(package: AdapterPackage | bytes | bytearray | str | os.PathLike[str]) -> AdapterPackage:
    if isinstance(package, AdapterPackage):
        return package
    if isinstance(package, (bytes, bytearray, memoryview)):
        return parse_package(package)
    try:
        with open(package, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise PackageError(f"cannot read adapter package {os.fspath(package)!r}: {exc}") from None
    return parse_package(data)


__all__ = [
    "BASE", "AdapterError", "AdapterExistsError", "AdapterSpec", "GateWeightError", "SlotBusyError", "SlotRecord",
    "SlotVerifyError", "StalePlanError", "SwapManager", "SwapPlan", "TenantIsolationError", "UnknownAdapterError",
]
