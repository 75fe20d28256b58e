"""The adapter registry: verified packages identified by content digest, never by name alone.

A name maps to a history of versions (oldest first); every entry is keyed by the package's
SHA-256, so reloading "the same name" with new bytes is a new entry, and nothing cached under
the old digest can be served for it (vLLM #42125).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterable

from tinyswap.errors import TinySwapError
from tinyswap.package import AdapterPackage


class RegistryError(TinySwapError):
    """An adapter name or digest is unknown, or a query is malformed."""


@dataclass(frozen=True)
class RegistryEntry:
    digest: str
    name: str
    version: str
    sequence: int
    task: str | None
    user: str | None
    tenant: str | None
    size: int


class Registry:
    def __init__(self) -> None:
        self._by_digest: dict[str, RegistryEntry] = {}
        self._history: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def add(self, package: AdapterPackage, name: str | None = None) -> RegistryEntry:
        tags = package.metadata.get("tags") or {}
        entry = RegistryEntry(package.content_digest, name or package.name, package.metadata["version"],
                              package.sequence, tags.get("task"), tags.get("user"), tags.get("tenant"), len(package.raw))
        with self._lock:
            self._by_digest[entry.digest] = entry
            history = self._history.setdefault(entry.name, [])
            if entry.digest not in history:
                history.append(entry.digest)
        return entry

    def get(self, digest: str) -> RegistryEntry:
        try:
            return self._by_digest[digest]
        except KeyError:
            raise RegistryError(f"no adapter with digest {digest[:16]}...") from None

    def history(self, name: str) -> list[RegistryEntry]:
        if name not in self._history:
            raise RegistryError(f"no adapter named {name!r}; known: {sorted(self._history)}")
        return [self._by_digest[d] for d in self._history[name]]

    def latest(self, name: str) -> RegistryEntry:
        return self.history(name)[-1]

    def remove(self, name: str) -> list[str]:
        with self._lock:
            digests = self._history.pop(name, [])
            for d in digests:
                self._by_digest.pop(d, None)
        return digests

    def forget(self, digest: str) -> None:
        """Drop one version (by digest) from the registry and from its name's history."""
        with self._lock:
            entry = self._by_digest.pop(digest, None)
            if entry is not None and digest in self._history.get(entry.name, []):
                self._history[entry.name].remove(digest)

    def query(self, name: str | None = None, version: str | None = None, task: str | None = None,
              user: str | None = None, tenant: str | None = None) -> list[RegistryEntry]:
        def keep(e: RegistryEntry) -> bool:
            return all(want is None or have == want for want, have in
                       ((name, e.name), (version, e.version), (task, e.task), (user, e.user), (tenant, e.tenant)))

        return [e for e in self._by_digest.values() if keep(e)]

    def names(self) -> Iterable[str]:
        return list(self._history)
