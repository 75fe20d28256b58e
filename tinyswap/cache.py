"""RAM cache of verified packages: a byte budget, LRU order, a pluggable priority, prefetch.

Keys are content digests; sizes are `AdapterPackage.ram_bytes` (the file, plus the plaintext
of a decrypted package). Eviction takes the lowest (priority, last use) first; an entry
whose priority is `PINNED` is never evicted. A prefetch hook lets a router stage the adapter
it expects next, off the request path.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from typing import Callable

from tinyswap.errors import TinySwapError
from tinyswap.package import AdapterPackage

PINNED = float("inf")


class CacheError(TinySwapError):
    """A package cannot fit in the cache's byte budget."""


class PackageCache:
    def __init__(self, budget_bytes: int, priority: Callable[[AdapterPackage], float] | None = None) -> None:
        if budget_bytes <= 0:
            raise CacheError(f"budget_bytes must be positive, got {budget_bytes}")
        self.budget = budget_bytes
        self._priority = priority or (lambda package: 0.0)
        self._items: OrderedDict[str, AdapterPackage] = OrderedDict()
        self._clock = itertools.count()
        self._lock = threading.Lock()
        self._used = 0  # sum of ram_bytes over the entries, kept as they come and go
        self.hits = self.misses = self.evictions = 0

    @property
    def used(self) -> int:
        return self._used

    def check_fits(self, package: AdapterPackage) -> None:
        """Raise `CacheError` unless `put(package)` would succeed: lets a caller refuse a
        package before it writes or commits anything, so `put` after a commit cannot fail."""
        size = package.ram_bytes
        if size > self.budget:
            raise CacheError(f"package {package.name!r} ({size} bytes) exceeds the cache budget of {self.budget}")
        with self._lock:
            if size + self._used <= self.budget:
                return  # pinned entries are a part of what is used: they leave room too
            pinned = sum(p.ram_bytes for d, p in self._items.items()
                         if d != package.content_digest and self._priority(p) == PINNED)
        if size + pinned > self.budget:
            raise CacheError(f"package {package.name!r} ({size} bytes) does not fit beside {pinned} bytes of "
                             f"pinned packages in the cache budget of {self.budget}")

    def put(self, package: AdapterPackage) -> None:
        size = package.ram_bytes
        if size > self.budget:
            raise CacheError(f"package {package.name!r} ({size} bytes) exceeds the cache budget of {self.budget}")
        with self._lock:
            old = self._items.get(package.content_digest)
            self._used += size - (0 if old is None else old.ram_bytes)
            self._items[package.content_digest] = package
            self._items.move_to_end(package.content_digest)
            while self._used > self.budget:
                victims = [(self._priority(p), i, d) for i, (d, p) in enumerate(self._items.items())
                           if d != package.content_digest and self._priority(p) != PINNED]
                if not victims:
                    self._used -= self._items.pop(package.content_digest).ram_bytes
                    raise CacheError(f"no evictable entry leaves room for {package.name!r}")
                _, _, digest = min(victims)
                self._used -= self._items.pop(digest).ram_bytes
                self.evictions += 1

    def get(self, digest: str) -> AdapterPackage | None:
        with self._lock:
            package = self._items.get(digest)
            if package is None:
                self.misses += 1
                return None
            self._items.move_to_end(digest)
            self.hits += 1
            return package

    def discard(self, digest: str) -> None:
        with self._lock:
            package = self._items.pop(digest, None)
            if package is not None:
                self._used -= package.ram_bytes

    def __contains__(self, digest: str) -> bool:
        return digest in self._items

    def prefetch(self, loader: Callable[[], AdapterPackage]) -> None:
        """Stage a package produced by `loader` (e.g. read and verified from storage)."""
        self.put(loader())
