"""Engines run the shards: `LocalEngine` in this process, `RayEngine` (ray_engine.py) as Ray
actors. Both return per-shard results in shard order, so the driver combines them the same
way whatever the engine and the number of workers."""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from tinyswap.fleet.shard import Shard


class Engine(Protocol):
    workers: int

    def start(self, shard_args: Sequence[tuple[Any, ...]]) -> None: ...

    def call(self, method: str, *args: Any) -> list[Any]: ...

    def stop(self) -> None: ...


class ShardHost:
    """Owns some shards (by index) and calls one method on each, in index order."""

    def __init__(self, shard_args: Sequence[tuple[Any, ...]], indices: Sequence[int]) -> None:
        self.shards = {i: Shard(*shard_args[i]) for i in indices}

    def call(self, method: str, args: tuple[Any, ...]) -> dict[int, Any]:
        return {i: getattr(shard, method)(*args) for i, shard in sorted(self.shards.items())}


class LocalEngine:
    workers = 1

    def __init__(self) -> None:
        self.host: ShardHost | None = None

    def start(self, shard_args: Sequence[tuple[Any, ...]]) -> None:
        self.host = ShardHost(shard_args, range(len(shard_args)))

    def call(self, method: str, *args: Any) -> list[Any]:
        assert self.host is not None
        results = self.host.call(method, args)
        return [results[i] for i in sorted(results)]

    def stop(self) -> None:
        self.host = None


def combine(parts: Sequence[Any]) -> Any:
    """Sum per-shard results (dicts of numbers, nested), in the order given."""
    first = parts[0]
    if isinstance(first, dict):
        keys = sorted({k for p in parts for k in p})
        return {k: combine([p[k] for p in parts if k in p]) for k in keys}
    total = first
    for p in parts[1:]:
        total = total + p
    return total


__all__ = ["Engine", "LocalEngine", "ShardHost", "combine"]
