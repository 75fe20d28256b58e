"""The RAM cache of verified packages: byte budget, LRU, pluggable priority, pinning, prefetch."""

from __future__ import annotations

import pytest

from tinyswap.cache import PINNED, CacheError, PackageCache
from tinyswap.package import parse_package

from tests.adapter_cases import example_bundle, package


@pytest.fixture(scope="module")
def pkgs():
    smap = example_bundle("mlp").smap
    return [parse_package(package(smap, i, f"p{i}")) for i in range(4)]


def test_lru_eviction_within_the_budget(pkgs) -> None:
    size = len(pkgs[0].raw)
    cache = PackageCache(budget_bytes=3 * size)
    for p in pkgs[:3]:
        cache.put(p)
    assert cache.get(pkgs[0].content_digest) is pkgs[0]  # p0 is now the most recent
    cache.put(pkgs[3])
    assert pkgs[1].content_digest not in cache and pkgs[0].content_digest in cache
    assert cache.used <= cache.budget and cache.evictions == 1
    assert cache.get(pkgs[1].content_digest) is None and cache.misses == 1


def test_priority_and_pinning(pkgs) -> None:
    size = len(pkgs[0].raw)
    prio = {pkgs[0].name: PINNED, pkgs[1].name: 5.0}
    cache = PackageCache(budget_bytes=2 * size, priority=lambda p: prio.get(p.name, 0.0))
    cache.put(pkgs[0])
    cache.put(pkgs[1])
    cache.put(pkgs[2])  # evicts p1 (priority 5), never the pinned p0
    assert pkgs[0].content_digest in cache and pkgs[1].content_digest not in cache
    prio[pkgs[2].name] = PINNED
    with pytest.raises(CacheError, match="no evictable"):
        cache.put(pkgs[3])
    assert pkgs[3].content_digest not in cache and cache.used <= cache.budget


def test_budget_errors_and_prefetch(pkgs) -> None:
    with pytest.raises(CacheError):
        PackageCache(0)
    with pytest.raises(CacheError, match="exceeds"):
        PackageCache(10).put(pkgs[0])
    cache = PackageCache(10 * len(pkgs[0].raw))
    cache.prefetch(lambda: pkgs[2])
    assert cache.get(pkgs[2].content_digest) is pkgs[2] and cache.hits == 1


def test_the_running_byte_total_equals_the_sum_of_the_entries_through_every_change(pkgs) -> None:
    size = len(pkgs[0].raw)
    prio = {pkgs[0].name: PINNED}
    cache = PackageCache(budget_bytes=2 * size, priority=lambda p: prio.get(p.name, 0.0))

    def held() -> int:  # independently: what the cache holds, package by package
        return sum(p.ram_bytes for p in pkgs if p.content_digest in cache)

    for step in (lambda: cache.put(pkgs[0]), lambda: cache.put(pkgs[1]), lambda: cache.put(pkgs[1]),
                 lambda: cache.put(pkgs[2]), lambda: cache.discard(pkgs[2].content_digest),
                 lambda: cache.discard(pkgs[2].content_digest), lambda: cache.put(pkgs[3])):
        step()
        assert cache.used == held()
    prio[pkgs[3].name] = PINNED
    with pytest.raises(CacheError, match="no evictable"):
        cache.put(pkgs[1])  # p0 and p3 pinned fill the budget
    assert cache.used == held() and {p.name for p in pkgs if p.content_digest in cache} == {"p0", "p3"}
    with pytest.raises(CacheError, match="beside"):
        cache.check_fits(pkgs[2])  # the slow path: pinned bytes leave no room
