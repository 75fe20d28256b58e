"""The committed state: the adapter table, the registry's version history and the slot table,
its JSON form (`export_state`, what a device keeps in its metadata partition), reading it back,
and the one commit transaction every change goes through.

A change is proposed as a value (`Change`), handed to the commit hook (the device persists it
atomically) and only then made live. If the hook raises, nothing changed: no gate can select
bytes whose state was not persisted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from tinyswap.registry import History, Registry
from tinyswap.swap.errors import AdapterError
from tinyswap.swap.records import AdapterState
from tinyswap.swap.residency import Residency

STATE_FORMAT = "tinyswap-manager-state"
STATE_VERSION = 1

#: The hook a device persists the state with (the `export_state()` form).
CommitHook = Callable[[dict[str, Any]], None]


@dataclass(slots=True)  # built on every swap: slots, not frozen (a frozen init costs ~5x)
class Change:
    """A proposed committed state."""

    adapters: Mapping[str, AdapterState]
    history: History
    slot_digests: tuple[str | None, ...]


@dataclass(frozen=True)
class SavedAdapter:
    name: str
    current: str
    versions: tuple[str, ...]
    priority: float
    tenant: str | None


@dataclass(frozen=True)
class SavedState:
    """`export_state()` output, read back and type-checked (packages not yet verified)."""

    adapters: tuple[SavedAdapter, ...]
    last_sequence: Mapping[str, int]
    slot_digests: tuple[str | None, ...]
    retired: tuple[int, ...]


@dataclass
class RestoreReport:
    """What `restore_state` could not restore."""

    disabled_slots: list[int] = field(default_factory=list)  # bytes differ from the record, or frame damaged
    missing: list[str] = field(default_factory=list)  # digests without a valid package
    dropped: list[str] = field(default_factory=list)  # adapters whose current version is missing

    def as_dict(self) -> dict[str, list]:
        return {"disabled_slots": list(self.disabled_slots), "missing": list(self.missing),
                "dropped": list(self.dropped)}


def state_json(change: Change, base_digest: str, content_of: Callable[[str | None], str],
               retired: Sequence[int]) -> dict[str, Any]:
    """The JSON form of a committed state."""
    return {
        "format": STATE_FORMAT, "version": STATE_VERSION, "base_digest": base_digest,
        "adapters": {n: {"current": a.current, "versions": list(change.history.versions.get(n, ())),
                         "priority": a.priority, "tenant": a.tenant} for n, a in change.adapters.items()},
        "last_sequence": dict(change.history.last_sequence),
        "slots": [{"slot": i, "digest": d, "content_sha256": content_of(d)} for i, d in enumerate(change.slot_digests)],
        "retired": list(retired),
    }


def parse_state(state: Mapping[str, Any], num_slots: int) -> SavedState:
    """Read `export_state()` output; a malformed one is an `AdapterError`."""
    try:
        raw_adapters = dict(state["adapters"])
        last_sequence = {str(k): int(v) for k, v in dict(state["last_sequence"]).items()}
        raw_slots = list(state["slots"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AdapterError(f"malformed manager state: {exc}") from None
    if len(raw_slots) != num_slots:
        raise AdapterError(f"the state lists {len(raw_slots)} slots, the model has {num_slots}")
    adapters = []
    for name, raw in raw_adapters.items():
        try:
            adapters.append(SavedAdapter(str(name), str(raw["current"]), tuple(str(d) for d in raw["versions"]),
                                         float(raw.get("priority", 0.0)), raw.get("tenant")))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise AdapterError(f"malformed state of adapter {name!r}: {exc}") from None
    slots = tuple((raw.get("digest") if isinstance(raw, Mapping) else None) for raw in raw_slots)
    retired_raw = state.get("retired", [])
    retired = tuple(i for i in (retired_raw if isinstance(retired_raw, list) else [])
                    if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < num_slots)
    return SavedState(tuple(adapters), last_sequence, slots, retired)


class CommittedState:
    """The live committed state and the one commit transaction. Callers hold `residency.lock`."""

    def __init__(self, registry: Registry, residency: Residency, base_digest: str,
                 content_of: Callable[[str | None], str], hook: CommitHook | None) -> None:
        self.registry = registry
        self.residency = residency
        self.adapters: Mapping[str, AdapterState] = {}
        self._base_digest = base_digest
        self._content_of = content_of
        self._hook = hook

    def propose(self, *, adapters: Mapping[str, AdapterState] | None = None, history: History | None = None,
                slot_digests: Sequence[str | None] | None = None) -> Change:
        """The live state with the given parts replaced (an unchanged adapter table is shared,
        not copied: it is replaced on every install, never changed in place)."""
        return Change(self.adapters if adapters is None else dict(adapters),
                      self.registry.snapshot() if history is None else history,
                      tuple(self.residency.digests() if slot_digests is None else slot_digests))

    def to_json(self, change: Change | None = None) -> dict[str, Any]:
        return state_json(change or self.propose(), self._base_digest, self._content_of, self.residency.retired())

    def commit(self, change: Change) -> None:
        """Persist `change` (the hook), then make it live. If the hook raises, nothing changed."""
        if self._hook is not None:
            self._hook(self.to_json(change))
        self.install(change)

    def install(self, change: Change) -> None:
        """Make `change` live without persisting it (a state read back from persistence)."""
        if change.adapters is not self.adapters:
            self.adapters = dict(change.adapters)
        self.registry.install(change.history)
        self.residency.changed()


__all__ = ["Change", "CommitHook", "CommittedState", "RestoreReport", "SavedAdapter", "SavedState", "STATE_FORMAT",
           "STATE_VERSION", "parse_state", "state_json"]
