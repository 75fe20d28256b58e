"""The Ray engine: shard hosts as Ray actors (a local Ray, or a cluster at `address`).

Ray is imported here only, when this engine starts; without it the error names the `fleet`
extra. Shard i lives on actor i % workers; results are gathered into shard order."""

from __future__ import annotations

from typing import Any, Sequence

from tinyswap.fleet.errors import FleetEngineError


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise FleetEngineError("the ray engine needs Ray: pip install 'tinyswap[fleet]' "
                               "(or use --engine local)") from exc
    return ray


class RayEngine:
    def __init__(self, workers: int = 2, address: str | None = None) -> None:
        self.ray = _ray()
        self.workers = workers
        self.address = address
        self.actors: list[Any] = []
        self._started_ray = False

    def start(self, shard_args: Sequence[tuple[Any, ...]]) -> None:
        ray = self.ray
        if not ray.is_initialized():
            try:
                if self.address:
                    ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
                else:
                    ray.init(num_cpus=max(self.workers, 1), include_dashboard=False, log_to_driver=False)
            except Exception as exc:  # noqa: BLE001 - Ray raises many types; all mean "cannot start"
                raise FleetEngineError(f"cannot start Ray ({'address ' + self.address if self.address else 'local'})"
                                       f": {exc}") from exc
            self._started_ray = True
        from tinyswap.fleet.engine import ShardHost

        host = ray.remote(num_cpus=1)(ShardHost)
        shared = ray.put(list(shard_args))
        workers = min(self.workers, len(shard_args))
        self.actors = [host.remote(shared, [i for i in range(len(shard_args)) if i % workers == w])
                       for w in range(workers)]

    def call(self, method: str, *args: Any) -> list[Any]:
        merged: dict[int, Any] = {}
        for part in self.ray.get([a.call.remote(method, args) for a in self.actors]):
            merged.update(part)
        return [merged[i] for i in sorted(merged)]

    def stop(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        if self._started_ray:
            self.ray.shutdown()


__all__ = ["RayEngine"]
