"""`SwapManager`: verified adapters into compiled slots, activated by gates, per request.

The names are PEFT's (`load_adapter`, `set_adapter`, `enable_adapters`, `disable_adapters`,
`disable_adapter()` as a context manager, `active_adapters`, `delete_adapter`,
`hotswap_adapter`, mixed batches through `adapter_names=[...]` with `"__base__"`), the
mechanism is not: the base model's bytes are never written, an adapter is written into an
*idle* slot of the model image and only then may a gate enable it (see `residency` for why
this is safe while inference runs). Each output is the output of exactly one committed state.

Two phases, as PEFT's hot swap ("dry run first"): `plan_load` / `plan_hotswap` verify the
package and choose a slot, changing nothing; `apply(plan)` writes the slot, reads it back,
compares and only then commits. A plan made against an older state is refused.

Anti-rollback and rollback: a package whose sequence number is not above the last accepted for
its name is refused (downgrade attack); `rollback(name)` is the operator's explicit return to a
version this manager verified and accepted before, so it is allowed and does not lower the
counter (as MCUboot's revert of an unconfirmed image). Versions and counters live in the
registry (`tinyswap.registry`), the one version history.

This module is the facade; the parts are `residency` (slots, eviction, draining, the retry
loop), `slot_bytes` (building, writing and verifying ranges, content digests), `persistence`
(the committed state and its commit transaction) and `gates` (pure gate arithmetic).
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from tinyswap.cache import PackageCache
from tinyswap.envelope import DeviceKeys, DeviceKeySource, open_package
from tinyswap.errors import InputFileError, TinySwapError
from tinyswap.files import read_bytes
from tinyswap.image import ModelImage, RamImage
from tinyswap.interpreter import Interpreter
from tinyswap.package import MAX_PACKAGE_BYTES, AdapterPackage, Keyring, PackageError, parse_package, verify_package
from tinyswap.registry import History, Registry, RegistryEntry
from tinyswap.slotmap import SlotMap
from tinyswap.swap import gates as gate_math
from tinyswap.swap.errors import (
    AdapterError,
    AdapterExistsError,
    HotswapMismatchError,
    HotswapTenantError,
    SlotBusyError,
    StalePlanError,
    TenantIsolationError,
    UnknownAdapterError,
    VersionConflictError,
)
from tinyswap.swap.persistence import CommitHook, CommittedState, RestoreReport, parse_state
from tinyswap.swap.records import BASE, AdapterSpec, AdapterState, EvictionPolicy, PlanAction, SlotRecord, SwapPlan
from tinyswap.swap.residency import Attempt, Residency
from tinyswap.swap.slot_bytes import SlotBytes, SwapStats

#: Anything a package can be given as: parsed, its bytes, or a path.
PackageSource = AdapterPackage | bytes | bytearray | str | os.PathLike[str]


class SwapManager:
    """Adapters on a model image with compiled slots.

    image: the writable model image (`RamImage`, or a device's flash-backed image); a plain
        `bytes`/`bytearray` is wrapped in a `RamImage`.
    slotmap: the bundle's `slotmap.json` (dict or `SlotMap`); checked against the image.
    keyring: the Ed25519 keys whose packages are accepted.
    device_keys: this device's X25519 private keys (or a `DeviceKeys`), to decrypt encrypted
        packages (`tinyswap.envelope`) after they are verified; without one, an encrypted
        package is refused (`NotARecipientError`). Plaintext lives only in the RAM cache.
    cache: RAM cache of verified packages (default: 4 MiB budget, LRU); the only place the
        manager keeps package bytes.
    registry: the version history (accepted versions per name, anti-rollback counters).
    fetch: reload a package by digest when the cache evicted it (a device reads its store);
        the bytes are verified again.
    eviction: "lru" (least recently used resident adapter first) or "priority" (lowest
        `priority` first, LRU among equals).
    on_commit: called with the new state (`export_state()` form) after a slot's bytes were
        written and verified and before any gate may use them, and after every rollback and
        delete: a device persists it atomically here. If it raises, nothing is committed and
        the written slot stays disabled.
    untenanted_requests_see_all: tenancy fails closed by default: a request that names no
        tenant may use only adapters without a tenant tag. True lets such requests use every
        adapter (a single-tenant deployment whose packages carry a tenant tag); a request that
        names a tenant is isolated either way.
    """

    def __init__(self, image: ModelImage | bytes | bytearray, slotmap: SlotMap | Mapping[str, Any], keyring: Keyring,
                 *, cache: PackageCache | None = None, registry: Registry | None = None,
                 fetch: Callable[[str], bytes] | None = None, eviction: str = "lru", profile: str = "tflm",
                 on_commit: CommitHook | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 wait_seconds: float = 10.0, untenanted_requests_see_all: bool = False,
                 device_keys: DeviceKeySource = None) -> None:
        self.image: ModelImage = RamImage(image) if isinstance(image, (bytes, bytearray)) else image
        self.slotmap = slotmap if isinstance(slotmap, SlotMap) else SlotMap.from_json(dict(slotmap))
        if eviction not in EvictionPolicy.__members__.values():
            raise AdapterError(f"eviction is {eviction!r}; expected 'lru' or 'priority'")
        self.slotmap.check_model(self.image.buffer)
        self._layout = self.slotmap.layout_dicts()  # what every package is verified against, built once
        self.keyring = keyring
        self.device_keys = DeviceKeys.of(device_keys)
        self.cache = cache or PackageCache(4 << 20)
        self.registry = registry or Registry()
        self._fetch = fetch
        self._profile = profile
        self._on_event = on_event
        self._untenanted_see_all = bool(untenanted_requests_see_all)
        self._bytes = SlotBytes(self.image, self.slotmap)
        self._slots = Residency(self.slotmap, EvictionPolicy(eviction), wait_seconds,
                                lambda: self._committed.adapters, self._label)
        self._lock = self._slots.lock
        self._committed = CommittedState(self.registry, self._slots, self.slotmap.base_digest,
                                         self._expected_content, on_commit)
        self._default: dict[str, float] = {}
        self._enabled = True
        self._local = threading.local()

    # -- queries ------------------------------------------------------------------------------
    @property
    def stats(self) -> SwapStats:
        return self._bytes.stats

    @property
    def num_slots(self) -> int:
        return self.slotmap.num_slots

    @property
    def active_adapters(self) -> list[str]:
        """The adapters this thread's requests use when they name none (PEFT's property)."""
        return [name for name, w in self._thread_default().items() if w > 0]

    @property
    def active_weights(self) -> dict[str, float]:
        return dict(self._thread_default())

    @property
    def adapters(self) -> list[str]:
        with self._lock:
            return list(self._committed.adapters)

    def slot_table(self) -> list[SlotRecord]:
        with self._lock:
            return [SlotRecord(s.index, s.digest, self._expected_content(s.digest)) for s in self._slots.slots]

    def resident(self) -> dict[int, str | None]:
        """Slot -> adapter name@version it holds (None: zeros)."""
        with self._lock:
            return self._slots.describe()

    def adapter_info(self, name: str) -> RegistryEntry:
        with self._lock:
            return self.registry.get(self._require(name).current)

    def last_sequence(self, name: str) -> int | None:
        return self.registry.last_sequence(name)

    def content_digest(self, slot: int) -> str:
        """SHA-256 of the tensor bytes the image holds in `slot` now (one read of the range)."""
        return self._bytes.read_content(slot)

    # -- loading ------------------------------------------------------------------------------
    def verify(self, package: PackageSource) -> AdapterPackage:
        """Parse and verify a package against this model (signature, digest, base binding,
        slot layout, anti-rollback), then decrypt it if it is encrypted. Changes nothing.
        Returns the package to plan with (for an encrypted one: its decrypted copy, in RAM)."""
        pkg = _as_package(package)
        verify_package(pkg, self.keyring, self.slotmap.base_digest, self._layout,
                       self.registry.sequences())
        self._refuse_version_conflict(pkg)
        # Only after every check above: decryption authenticates the payload, not the signer.
        pkg = open_package(pkg, self.device_keys)
        self.cache.check_fits(pkg)  # apply caches it after the commit, where nothing may fail
        return pkg

    def plan_load(self, package: PackageSource, adapter_name: str | None = None, *, priority: float = 0.0) -> SwapPlan:
        pkg = _as_package(package)
        name = adapter_name or pkg.name
        _check_name(name)
        self._refuse_existing(name)
        pkg = self.verify(pkg)  # the plan holds the decrypted package: the write cannot fail to decrypt
        with self._lock:
            self._refuse_existing(name)
            slot = self._slots.free_slot()
            return SwapPlan(PlanAction.load, name, pkg, slot, self._holder(slot), self._slots.generation, priority)

    def load_adapter(self, package: PackageSource, adapter_name: str | None = None, *, priority: float = 0.0) -> str:
        """Verify, register and cache a package under `adapter_name` (default: its own name) and
        write it into a free slot if there is one (otherwise on first use). Returns its digest."""
        plan = self.plan_load(package, adapter_name, priority=priority)
        self.apply(plan)
        return plan.package.content_digest

    def plan_hotswap(self, name: str, package: PackageSource) -> SwapPlan:
        pkg = self.verify(package)
        with self._lock:
            adapter = self._require(name)
            old_kind = self.registry.get(adapter.current).kind
            if pkg.metadata.get("kind") != old_kind:
                raise AdapterError(f"hotswap of {name!r}: kind {pkg.metadata.get('kind')!r} replaces "
                                   f"{old_kind!r}; a hot swap keeps the adapter method")
            if pkg.content_digest == adapter.current:
                raise AdapterError(f"hotswap of {name!r}: the package is the version already in use")
            self._check_same_identity(adapter, pkg)
            slot = self._slots.victim(keep=set(), exclude_digests={adapter.current})
            return SwapPlan(PlanAction.hotswap, name, pkg, slot, self._holder(slot), self._slots.generation,
                            adapter.priority)

    def hotswap_adapter(self, name: str, package: PackageSource) -> str:
        """Replace `name` by a new version, in place and atomically: the new version is written
        into an idle slot and verified while the old one keeps serving, then `name` points at it.
        The old version stays resident (while slots allow) so `rollback` is a gate flip."""
        pkg = _as_package(package)

        def attempt() -> Attempt:
            plan = self.plan_hotswap(name, pkg)
            if plan.slot is not None:
                return Attempt(plan=plan, last=True, label=f"hotswap of {name!r}: ")
            with self._lock:
                current = self._require(name).current
                retired = self._slots.retired()
            return Attempt(exclude=frozenset({current}),
                           stuck=f"hotswap of {name!r}: no slot besides the live version's can be written "
                                 f"(retired: {retired})")

        self._slots.until_done(attempt, self.apply, may_drain=True)
        return pkg.content_digest

    def apply(self, plan: SwapPlan) -> None:
        """Write the planned slot, read it back, verify, commit. Raises `StalePlanError` if
        anything changed since the plan was made."""
        pkg = plan.package
        digest = pkg.content_digest
        with self._lock:
            if plan.generation != self._slots.generation:
                raise StalePlanError("the slot state changed after this plan was made; plan again")
            # Verification may have been done against an older anti-rollback counter.
            if plan.action != PlanAction.restore:
                previous = self.registry.last_sequence(pkg.name)
                if previous is not None and pkg.sequence <= previous:
                    raise StalePlanError(f"sequence {pkg.sequence} is no longer above {previous}")
                self._refuse_version_conflict(pkg)
            if plan.action == PlanAction.hotswap:
                self._check_same_identity(self._require(plan.name), pkg)
            if digest not in self.cache:
                self.cache.check_fits(pkg)
            if plan.slot is not None:
                slot = self._slots.slots[plan.slot]
                if slot.pinned or slot.writing or slot.digest != plan.evicts:
                    raise StalePlanError(f"slot {plan.slot} is no longer idle")
                if plan.action == PlanAction.restore and self._slots.resident_slot(digest) is not None:
                    raise StalePlanError("another request made this adapter resident meanwhile")
                if slot.digest in self._slots.current_digests():
                    self._bytes.stats.evictions += 1
                self._slots.mark_writing(plan.slot)
            self._slots.generation += 1
        if plan.slot is not None:
            try:
                self._bytes.write(plan.slot, pkg)
            except BaseException:
                self._slots.finish_write(plan.slot)
                raise
        with self._lock:
            self._bytes.remember(pkg)  # the state records the slot's content digest
            # One proposal with every part this plan changes (the swap path builds it once).
            adapters = history = slot_digests = None
            if plan.action != PlanAction.restore:
                adapters = dict(self._committed.adapters)
                if plan.action == PlanAction.load:
                    adapters[plan.name] = AdapterState(plan.name, digest, plan.priority,
                                                       (pkg.metadata.get("tags") or {}).get("tenant"))
                else:
                    adapters[plan.name] = adapters[plan.name].at(digest)
                history = self.registry.snapshot().accept(RegistryEntry.of(pkg, plan.name))
            if plan.slot is not None:
                slot_digests = list(self._slots.digests())
                slot_digests[plan.slot] = digest
            change = self._committed.propose(adapters=adapters, history=history, slot_digests=slot_digests)
            try:
                self._committed.commit(change)  # persisted before any gate may use it
            except BaseException:
                if plan.slot is not None:
                    self._slots.slots[plan.slot].writing = False
                self._slots.changed()
                raise
            if digest not in self.cache:
                self.cache.put(pkg)
            if plan.slot is not None:
                slot = self._slots.slots[plan.slot]
                slot.writing, slot.digest, slot.last_used = False, digest, self._slots.tick()
            # No second `changed()`: the commit's bumped the generation and woke the waiters, and
            # none of them can look before this block releases the lock, slot update included.
        if self._on_event is not None:  # no event dict on the swap path when nobody listens
            self._event(plan.action, {"name": plan.name, "digest": digest, "slot": plan.slot,
                                      "version": pkg.metadata["version"]})

    def rollback(self, name: str) -> str:
        """Return `name` to the version accepted before its current one: a gate flip when that
        version is still resident, a slot write from the cache (or store) otherwise."""
        with self._lock:
            adapter = self._require(name)
            versions = self.registry.versions(name)
            index = versions.index(adapter.current)
            if index == 0:
                raise AdapterError(f"adapter {name!r} has no earlier version to roll back to")
            target = versions[index - 1]
        self._ensure_resident({target})
        with self._lock:
            adapters = dict(self._committed.adapters)
            adapters[name] = adapters[name].at(target)
            self._committed.commit(self._committed.propose(adapters=adapters))
        self._event("rollback", {"name": name, "digest": target})
        return target

    def delete_adapter(self, name: str) -> None:
        """Forget `name`: no new request can use it; its slots are cleared (zeros written) as
        soon as in-flight requests release them; its metadata is pruned."""
        with self._lock:
            self._require(name)
            digests = set(self.registry.versions(name))
            adapters = {n: a for n, a in self._committed.adapters.items() if n != name}
            self._committed.commit(self._committed.propose(adapters=adapters,
                                                           history=self.registry.snapshot().without(name)))
            self._default.pop(name, None)
        for d in digests:
            if d not in self.registry:  # another name may list the same bytes
                self.cache.discard(d)
        for slot in self._slots.slots:
            if self._slots.take_for_clearing(slot, digests):
                self._write_zeros(slot.index)
        self._prune_metadata()
        self._event("delete", {"name": name})

    def prune_versions(self, name: str, keep: int = 2) -> list[str]:
        """Forget all but the newest `keep` accepted versions of `name` (never the current one)
        so that history, metadata and the store stay bounded. Returns the forgotten digests
        (a device deletes their packages from its store). Anti-rollback counters stay."""
        if keep < 1:
            raise AdapterError(f"keep must be at least 1, got {keep}")
        with self._lock:
            adapter = self._require(name)
            versions = list(self.registry.versions(name))
            kept = versions[-keep:]
            if adapter.current not in kept:
                kept = [adapter.current] + kept[1:]
            dropped = [d for d in versions if d not in kept]
            if not dropped:
                return []
            self._committed.commit(self._committed.propose(history=self.registry.snapshot().keeping(name, kept)))
        for d in dropped:
            if d not in self.registry:
                self.cache.discard(d)
        self._prune_metadata()
        return dropped

    def prefetch(self, name: str) -> None:
        """Stage `name`'s package in the RAM cache (off the request path)."""
        with self._lock:
            digest = self._require(name).current
        self._package(digest)

    # -- activation ---------------------------------------------------------------------------
    def set_adapter(self, adapters: AdapterSpec, *, tenant: str | None = None) -> None:
        """The default active set: a name, a list (weight 1 each) or {name: weight}. The
        adapters are made resident now, so the next request does not wait for a write."""
        spec = self._normalise(adapters)
        with self._lock:
            for name in spec:
                self._check_tenant(self._require(name), tenant)
            wanted = {self._committed.adapters[n].current for n in spec}
            if self._slots.resident_slots(wanted) is not None:  # the common case: a gate flip, nothing to write
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
        Per thread, not shared state: a shared switch is unsafe across threads (PEFT's is shared)."""
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
        slots, gates, _ = self._acquire(rows, tenant)
        try:
            return self.run_gated(*inputs, gates=gates)
        finally:
            self._slots.release(slots)

    def io_details(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The model's data inputs (gates left out) and outputs, as `Interpreter` describes them."""
        interp = self._interpreter()
        gate_positions = {g.input_index for g in self.slotmap.gates}
        inputs = [d for position, d in enumerate(interp.get_input_details()) if position not in gate_positions]
        return inputs, interp.get_output_details()

    def normalise_adapters(self, adapters: AdapterSpec) -> dict[str, float]:
        """`adapters` (a name, a list, {name: weight} or "__base__") as {name: gate weight}."""
        return self._normalise(adapters)

    def run_gated(self, *inputs: np.ndarray, gates: np.ndarray) -> list[np.ndarray]:
        """Run the model on the data `inputs` with explicit gate inputs [S, batch, 1] (from
        `pinned`, `pinned_versions` or `gates_for`); the caller keeps what they select resident."""
        return self._interpreter().run(*gate_math.graph_inputs(inputs, self.slotmap.gates, gates))

    @contextlib.contextmanager
    def pinned(self, adapters: AdapterSpec, *, tenant: str | None = None) -> Iterator[np.ndarray]:
        """Keep `adapters` resident while the block runs (what every in-flight request does;
        useful for a streaming session). Yields the gate inputs [S, 1, 1] that select them."""
        with self.pinned_versions(adapters, tenant=tenant) as (gates, _):
            yield gates

    @contextlib.contextmanager
    def pinned_versions(self, adapters: AdapterSpec, *,
                        tenant: str | None = None) -> Iterator[tuple[np.ndarray, dict[str, str]]]:
        """As `pinned`, also yielding the package digest of each adapter's version it pinned
        (a stream tags its state with them: `tinyswap.swap.streams`)."""
        slots, gates, versions = self._acquire([self._normalise(adapters)], tenant)
        try:
            yield gates, versions
        finally:
            self._slots.release(slots)

    def make_resident(self, name: str) -> int:
        """Write `name`'s current version into a slot now (from the RAM cache, or the store),
        evicting by policy if needed; returns the slot. A no-op when already resident."""
        with self._lock:
            digest = self._require(name).current
        self._ensure_resident({digest})
        with self._lock:
            found = self._slots.resident_slot(digest)
            if found is None:  # evicted again by a concurrent request before we looked
                raise SlotBusyError(f"adapter {name!r} could not be kept resident")
            return found

    def gates_for(self, adapters: AdapterSpec, batch: int = 1, *, tenant: str | None = None) -> np.ndarray:
        """The int8 gate inputs [S, batch, 1] that select `adapters` now (for a caller that runs
        its own interpreter), for a request of `tenant`. The adapters must be resident; nothing
        is pinned."""
        spec = self._normalise(adapters)
        with self._lock:
            for n in spec:
                self._check_tenant(self._require(n), tenant)
            current = {n: self._require(n).current for n in spec}
            slot_of = self._slots.resident_slots(current.values())
            if slot_of is None:
                raise SlotBusyError(f"{sorted(spec)} are not all resident; call set_adapter first")
            return gate_math.gate_rows(self.slotmap.gates, [spec] * batch, {n: slot_of[d] for n, d in current.items()})

    # -- persistence --------------------------------------------------------------------------
    def export_state(self) -> dict[str, Any]:
        """The committed state as JSON-able data, what a device keeps in its metadata partition:
        every adapter with its accepted versions (package digests) and current one, the
        anti-rollback counters, and the slot table with each slot's content SHA-256."""
        with self._lock:
            return self._committed.to_json()

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
            if self._committed.adapters or any(self._slots.digests()):
                raise AdapterError("restore_state needs a fresh manager (adapters are loaded already)")
        fetch = packages.get if isinstance(packages, Mapping) else packages
        saved = parse_state(state, self.num_slots)
        report = RestoreReport()
        verified: dict[str, AdapterPackage] = {}

        def load(digest: str) -> AdapterPackage | None:
            if digest in verified:
                return verified[digest]
            data = fetch(digest)
            try:
                pkg = _as_package(data) if data is not None else None
                if pkg is not None:
                    pkg = self._verify_known(pkg)
            except PackageError:
                pkg = None
            if pkg is None or pkg.content_digest != digest:
                report.missing.append(digest)
                return None
            verified[digest] = pkg
            return pkg

        adapters: dict[str, AdapterState] = {}
        history = History()
        for saved_adapter in saved.adapters:
            versions = [d for d in saved_adapter.versions if load(d) is not None]
            if saved_adapter.current not in versions:
                report.dropped.append(saved_adapter.name)
                continue
            adapters[saved_adapter.name] = AdapterState(saved_adapter.name, saved_adapter.current,
                                                        saved_adapter.priority, saved_adapter.tenant)
            for d in versions:
                history = history.accept(RegistryEntry.of(verified[d], saved_adapter.name))
        with self._lock:
            for pkg in verified.values():
                self._bytes.remember(pkg)
                self.cache.put(pkg)
            damaged = set(self.slotmap.damaged_frames(self.image.buffer))
            for slot, digest in zip(self._slots.slots, saved.slot_digests):
                if slot.index in damaged:  # interrupted write: clear_slot rewrites the frame
                    report.disabled_slots.append(slot.index)
                elif digest is None:
                    continue
                elif digest in verified and self._content_matches(slot.index, digest):
                    slot.digest = digest
                else:
                    report.disabled_slots.append(slot.index)
            for index in saved.retired:
                self._slots.slots[index].retired = True
            self._committed.install(self._committed.propose(adapters=adapters,
                                                            history=history.with_sequences(saved.last_sequence)))
        self._prune_metadata()
        return report.as_dict()

    def retire_slot(self, slot: int) -> None:
        """Never write `slot` again (its flash is worn out): it is no longer a swap target;
        what it holds now may keep serving. Persisted with the state."""
        with self._lock:
            if not 0 <= slot < self.num_slots:
                raise AdapterError(f"slot {slot} does not exist (the model has {self.num_slots})")
            self._slots.slots[slot].retired = True
            self._committed.commit(self._committed.propose())

    def clear_slot(self, slot: int) -> None:
        """Write zeros into a slot that no adapter uses (e.g. one `restore_state` disabled)."""
        with self._lock:
            target = self._slots.slots[slot]
            if target.retired:
                raise SlotBusyError(f"slot {slot} is retired (worn): it is never written again")
            if target.pinned or target.writing or target.digest in self._slots.current_digests():
                raise SlotBusyError(f"slot {slot} is in use")
            self._slots.mark_writing(slot)
            self._slots.generation += 1
        self._write_zeros(slot)

    def prepare_slot(self, name: str | None = None) -> int | None:
        """Idle time: prepare the slot the next write will take, so that write only programs
        (`ModelImage.pre_erase`: on flash, its sectors are erased now instead of on the swap's
        path). `name`: prepare for a hot swap of that adapter (the slot `hotswap_adapter` would
        take, which may hold a resident adapter: it is evicted now, committed before anything is
        erased); None: only an empty slot (a stale version kept for a gate-flip `rollback` is
        kept). Returns the slot prepared, or None (no such slot idle, or the image has nothing to
        prepare)."""
        with self._lock:
            if name is None:
                slot = next((s.index for s in self._slots.slots if s.digest is None and not s.pinned
                             and not s.writing and not s.retired), None)
            else:
                slot = self._slots.victim(keep=set(), exclude_digests={self._require(name).current})
            if slot is None:
                return None
            holder = self._slots.slots[slot].digest
            if holder in self._slots.current_digests():
                self.stats.evictions += 1
            self._slots.mark_writing(slot)
            self._slots.generation += 1
        try:
            if holder is not None:  # the slot is recorded empty before its bytes go
                with self._lock:
                    self._committed.commit(self._committed.propose())
            info = self.slotmap.slots[slot]
            prepared = self.image.pre_erase(info.offset, info.template(), info.tensor_spans())
        finally:
            self._slots.finish_write(slot)
        return slot if prepared else None

    # -- internals ----------------------------------------------------------------------------
    def _write_zeros(self, slot: int) -> None:
        """Clear a slot the caller marked `writing` (holding nothing): zeros, read back, commit."""
        try:
            self._bytes.write(slot, None)
            with self._lock:
                self._committed.commit(self._committed.propose())
        finally:
            self._slots.finish_write(slot)

    def _ensure_resident(self, digests: set[str], may_drain: bool = True) -> None:
        """Write every digest not yet resident into a slot, evicting by policy; waits while
        every candidate slot is pinned, up to `wait_seconds`."""

        def attempt() -> Attempt:
            with self._lock:
                missing = [d for d in digests if self._slots.resident_slot(d) is None]
                if not missing:
                    return Attempt(done=True)
                digest = missing[0]
                if any(s.draining and s.digest in missing for s in self._slots.slots):
                    # A writer is draining a slot we need: wait for its swap, do not copy the
                    # adapter elsewhere (that would evict another one and thrash).
                    return Attempt(wait=f"adapter {self._label(digest)} stayed unavailable")
                slot = self._slots.victim(keep=digests, exclude_digests=set())
                if slot is None:  # the label only for the messages: off the common path
                    label = self._label(digest)
                    return Attempt(keep=frozenset(digests), idle=f"no slot became idle for adapter {label}",
                                   stuck=f"no slot can take adapter {label}: every writable slot holds an "
                                         "adapter this request needs")
                # Writing the last missing digest completes the operation: return once it is written.
                return Attempt(plan=SwapPlan(PlanAction.restore, digest, self._package(digest), slot,
                                             self._holder(slot), self._slots.generation), last=len(missing) == 1)

        self._slots.until_done(attempt, self.apply, may_drain=may_drain)

    def _acquire(self, rows: list[dict[str, float]],
                 tenant: str | None) -> tuple[list[int], np.ndarray, dict[str, str]]:
        names = set().union(*rows) if rows else set()
        if len(names) > self.num_slots:
            raise SlotBusyError(f"one request uses {len(names)} adapters; the model has {self.num_slots} slots")
        while True:
            with self._lock:
                current = {n: self._require(n).current for n in names}
                for n in names:
                    self._check_tenant(self._committed.adapters[n], tenant)
                slot_of = self._slots.resident_slots(current.values())
                if slot_of is not None:
                    used = sorted(set(slot_of.values()))
                    self._slots.pin(used)
                    return used, gate_math.gate_rows(self.slotmap.gates, rows,
                                                     {n: slot_of[d] for n, d in current.items()}), current
            self._ensure_resident(set(current.values()), may_drain=False)

    def _package(self, digest: str) -> AdapterPackage:
        """The package bytes: from the RAM cache, else from the store, verified again."""
        pkg = self.cache.get(digest)
        if pkg is not None:
            return pkg
        if self._fetch is None:
            raise AdapterError(f"adapter {self._label(digest)} was evicted from the RAM cache and no store is attached")
        pkg = _as_package(self._fetch(digest))
        if pkg.content_digest != digest:
            raise AdapterError(f"the store returned a different package for {digest[:16]}...")
        pkg = self._verify_known(pkg)
        self.cache.put(pkg)
        return pkg

    def _verify_known(self, pkg: AdapterPackage) -> AdapterPackage:
        """Re-verify a package that storage returned (signature, base, layout; its sequence
        was accepted before, so anti-rollback does not apply) and decrypt it if encrypted."""
        verify_package(pkg, self.keyring, self.slotmap.base_digest, self._layout, {})
        return open_package(pkg, self.device_keys)

    def _expected_content(self, digest: str | None) -> str:
        found = self._bytes.content_of(digest)
        if found is None:  # not remembered (pruned metadata): from the package, fetched if need be
            found = self._bytes.remember(self._package(digest))  # type: ignore[arg-type]
        return found

    def _content_matches(self, slot: int, digest: str) -> bool:
        try:
            return self._bytes.read_content(slot) == self._expected_content(digest)
        except TinySwapError:  # an unreadable slot is a disabled slot, not a failed restore
            return False

    def _prune_metadata(self) -> None:
        """Drop the content digests of packages neither in the history nor in any slot."""
        with self._lock:
            live = self.registry.snapshot().digests() | {d for d in self._slots.digests() if d is not None}
            self._bytes.forget(self._bytes.known() - live)

    def _holder(self, slot: int | None) -> str | None:
        return None if slot is None else self._slots.slots[slot].digest

    def _refuse_existing(self, name: str) -> None:
        if name in self._committed.adapters:
            raise AdapterExistsError(f"adapter {name!r} is already loaded; use hotswap_adapter for a new version")

    def _require(self, name: str) -> AdapterState:
        adapter = self._committed.adapters.get(name)
        if adapter is None:
            raise UnknownAdapterError(f"no adapter named {name!r} is loaded; loaded: {sorted(self._committed.adapters)}")
        return adapter

    def _check_tenant(self, adapter: AdapterState, tenant: str | None) -> None:
        """Fail closed: a request of tenant T may use adapters tagged T or untagged; a request
        without a tenant only untagged ones (unless `untenanted_requests_see_all`)."""
        if adapter.tenant is None or adapter.tenant == tenant:
            return
        if tenant is None:
            if self._untenanted_see_all:
                return
            raise TenantIsolationError(f"a request without a tenant may not use adapter {adapter.name!r} (it belongs "
                                       f"to tenant {adapter.tenant!r}); name the tenant, or construct the manager "
                                       "with untenanted_requests_see_all=True for a single-tenant deployment")
        raise TenantIsolationError(f"tenant {tenant!r} may not use adapter {adapter.name!r} "
                                   f"(it belongs to tenant {adapter.tenant!r})")

    def _check_same_identity(self, adapter: AdapterState, pkg: AdapterPackage) -> None:
        """A hot swap replaces a version of the same package for the same tenant."""
        entry = self.registry.get(adapter.current)
        old_name = entry.package_name or entry.name
        if pkg.name != old_name:
            raise HotswapMismatchError(f"hotswap of {adapter.name!r}: the package is named {pkg.name!r}, the adapter "
                                       f"runs package {old_name!r}; a hot swap keeps the package name")
        new_tenant = (pkg.metadata.get("tags") or {}).get("tenant")
        if new_tenant != adapter.tenant:
            raise HotswapTenantError(f"hotswap of {adapter.name!r}: the package belongs to tenant {new_tenant!r}, "
                                     f"the adapter to tenant {adapter.tenant!r}; a hot swap keeps the tenant")

    def _refuse_version_conflict(self, pkg: AdapterPackage) -> None:
        """One `name@version` is one package: other bytes under an accepted one are refused."""
        version = pkg.metadata["version"]
        for entry in self.registry.with_version(pkg.name, version):
            if entry.digest != pkg.content_digest:
                raise VersionConflictError(f"package {pkg.name}@{version} was accepted as {entry.digest}; this "
                                           f"package {pkg.content_digest} has other bytes under the same "
                                           "name@version (give it a new version)")

    def _normalise(self, spec: AdapterSpec) -> dict[str, float]:
        return gate_math.normalise(spec, self.slotmap.gate_max)

    def _thread_default(self) -> dict[str, float]:
        override = getattr(self._local, "override", None)
        if override is not None:
            return override
        return dict(self._default) if self._enabled else {}

    def _interpreter(self) -> Interpreter:
        interp = getattr(self._local, "interpreter", None)
        if interp is None:
            # Only the slots' bytes change: every other constant is folded once at allocation.
            interp = Interpreter(model_content=self.image.buffer, profile=self._profile,
                                 mutable_ranges=[(s.offset, s.length) for s in self.slotmap.slots])
            self._local.interpreter = interp
        return interp

    def _label(self, digest: str) -> str:
        entry = self.registry.find(digest)
        return f"{digest[:12]}" if entry is None else entry.label

    def _event(self, kind: str, details: dict[str, Any]) -> None:
        if self._on_event is not None:
            self._on_event(kind, details)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or name == BASE:
        raise AdapterError(f"adapter name {name!r} is not allowed (empty, or the reserved {BASE!r})")


def _as_package(package: PackageSource) -> AdapterPackage:
    if isinstance(package, AdapterPackage):
        return package
    if isinstance(package, (bytes, bytearray, memoryview)):
        return parse_package(package)
    try:
        data = read_bytes(package, "adapter package", max_bytes=MAX_PACKAGE_BYTES)
    except InputFileError as exc:
        raise PackageError(f"cannot read adapter package {os.fspath(package)!r}: {exc.problem}") from None
    return parse_package(data)


__all__ = ["PackageSource", "SwapManager"]
