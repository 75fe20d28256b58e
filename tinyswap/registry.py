"""The adapter registry: verified packages identified by content digest, never by name alone,
and the one version history of the process.

A name maps to a history of versions (oldest first); every entry is keyed by the package's
SHA-256, so reloading "the same name" with new bytes is a new entry, and nothing cached under
the old digest can be served for it (serving a stale adapter under a reloaded name is a known
failure of adapter servers). The registry also keeps the anti-rollback counter per package name
(the highest sequence ever accepted; deleting or pruning an adapter never lowers it). Entries hold metadata only, never package bytes: the bytes live in the
budgeted `PackageCache` or in storage.

The whole history is one immutable `History` value. A writer that must persist a change before
it takes effect (the swap manager's commit) derives the next value, hands it to its commit hook
and only then `install`s it, so readers never see a state that was not committed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from tinyswap.errors import TinySwapError
from tinyswap.package import AdapterPackage


class RegistryError(TinySwapError):
    """An adapter name or digest is unknown, or a query is malformed."""


@dataclass(frozen=True)
class RegistryEntry:
    """What is known about one accepted package, without its bytes."""

    digest: str
    name: str  # the adapter name it was accepted under
    version: str
    sequence: int
    task: str | None
    user: str | None
    tenant: str | None
    size: int  # bytes of the package file
    kind: str = ""  # the adapter method ("lora" | "bottleneck")
    package_name: str = ""  # the name inside the package (anti-rollback counters are per package name)
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # the package's JSON metadata

    @classmethod
    def of(cls, package: AdapterPackage, name: str | None = None) -> "RegistryEntry":
        tags = package.metadata.get("tags") or {}
        return cls(package.content_digest, name or package.name, str(package.metadata["version"]), package.sequence,
                   tags.get("task"), tags.get("user"), tags.get("tenant"), len(package.raw),
                   str(package.metadata.get("kind", "")), package.name, MappingProxyType(dict(package.metadata)))

    @property
    def label(self) -> str:
        return f"{self.package_name or self.name}@{self.version}"


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class History:
    """Accepted versions per adapter name, their entries by digest, and anti-rollback counters.
    Immutable: every change returns a new value."""

    entries: Mapping[str, RegistryEntry] = field(default_factory=dict)  # digest -> entry
    versions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # name -> digests, oldest first
    last_sequence: Mapping[str, int] = field(default_factory=dict)  # package name -> highest accepted

    def accept(self, entry: RegistryEntry) -> "History":
        """`entry` appended to its name's history (once) and its counter raised."""
        versions = dict(self.versions)
        history = versions.get(entry.name, ())
        if entry.digest not in history:
            versions[entry.name] = history + (entry.digest,)
        sequences = dict(self.last_sequence)
        key = entry.package_name or entry.name
        sequences[key] = max(entry.sequence, sequences.get(key, entry.sequence))
        return History(_frozen({**self.entries, entry.digest: entry}), _frozen(versions), _frozen(sequences))

    def without(self, name: str) -> "History":
        """`name` and its versions forgotten (entries another name still lists stay); counters stay."""
        versions = {n: v for n, v in self.versions.items() if n != name}
        return History(self._entries_for(versions), _frozen(versions), self.last_sequence)

    def keeping(self, name: str, digests: Iterable[str]) -> "History":
        """Only `digests` of `name`'s history stay (in their order); counters stay."""
        keep = set(digests)
        versions = dict(self.versions)
        versions[name] = tuple(d for d in versions.get(name, ()) if d in keep)
        return History(self._entries_for(versions), _frozen(versions), self.last_sequence)

    def with_sequences(self, last_sequence: Mapping[str, int]) -> "History":
        return replace(self, last_sequence=_frozen(last_sequence))

    def digests(self) -> set[str]:
        return {d for v in self.versions.values() for d in v}

    def _entries_for(self, versions: Mapping[str, tuple[str, ...]]) -> Mapping[str, RegistryEntry]:
        used = {d for v in versions.values() for d in v}
        return _frozen({d: e for d, e in self.entries.items() if d in used})


class Registry:
    def __init__(self) -> None:
        self._state = History()
        self._lock = threading.Lock()

    # -- the history as one value ----------------------------------------------------------------
    def snapshot(self) -> History:
        return self._state

    def install(self, history: History) -> None:
        """Make `history` the current one (the caller committed it first, if it must)."""
        with self._lock:
            self._state = history

    # -- changes ---------------------------------------------------------------------------------
    def add(self, package: AdapterPackage, name: str | None = None) -> RegistryEntry:
        entry = RegistryEntry.of(package, name)
        with self._lock:
            self._state = self._state.accept(entry)
        return entry

    def remove(self, name: str) -> list[str]:
        with self._lock:
            digests = list(self._state.versions.get(name, ()))
            self._state = self._state.without(name)
        return digests

    def forget(self, digest: str) -> None:
        """Drop one version (by digest) from the registry and from its name's history."""
        with self._lock:
            entry = self._state.entries.get(digest)
            if entry is not None:
                self._state = self._state.keeping(entry.name, [d for d in self._state.versions.get(entry.name, ())
                                                               if d != digest])

    # -- queries ---------------------------------------------------------------------------------
    def get(self, digest: str) -> RegistryEntry:
        try:
            return self._state.entries[digest]
        except KeyError:
            raise RegistryError(f"no adapter with digest {digest[:16]}...") from None

    def find(self, digest: str) -> RegistryEntry | None:
        return self._state.entries.get(digest)

    def __contains__(self, digest: str) -> bool:
        return digest in self._state.entries

    def versions(self, name: str) -> tuple[str, ...]:
        """The accepted digests of `name`, oldest first (empty when unknown)."""
        return self._state.versions.get(name, ())

    def history(self, name: str) -> list[RegistryEntry]:
        state = self._state
        if name not in state.versions:
            raise RegistryError(f"no adapter named {name!r}; known: {sorted(state.versions)}")
        return [state.entries[d] for d in state.versions[name]]

    def latest(self, name: str) -> RegistryEntry:
        return self.history(name)[-1]

    def with_version(self, package_name: str, version: str) -> list[RegistryEntry]:
        """The accepted entries of package `package_name` at `version` (one `name@version` is one
        package: the swap manager refuses a second one with other bytes)."""
        return [e for e in self._state.entries.values()
                if (e.package_name or e.name) == package_name and e.version == version]

    def last_sequence(self, package_name: str) -> int | None:
        return self._state.last_sequence.get(package_name)

    def sequences(self) -> Mapping[str, int]:
        """Anti-rollback counters by package name (a read-only view)."""
        return self._state.last_sequence

    def query(self, name: str | None = None, version: str | None = None, task: str | None = None,
              user: str | None = None, tenant: str | None = None) -> list[RegistryEntry]:
        def keep(e: RegistryEntry) -> bool:
            return all(want is None or have == want for want, have in
                       ((name, e.name), (version, e.version), (task, e.task), (user, e.user), (tenant, e.tenant)))

        return [e for e in self._state.entries.values() if keep(e)]

    def names(self) -> Iterable[str]:
        return list(self._state.versions)


__all__ = ["History", "Registry", "RegistryEntry", "RegistryError"]
