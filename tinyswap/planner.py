"""Arena memory planner: activation buffers placed by lifetime, as TFLM's greedy planner does.

Buffers are placed largest first, each at the lowest aligned offset that does not overlap a
buffer whose lifetime intersects its own (TFLM `GreedyMemoryPlanner`). The arena's size is
the highest end offset: the figure a firmware engineer has to reserve.
"""

from __future__ import annotations

from dataclasses import dataclass

ARENA_ALIGNMENT = 16


@dataclass(frozen=True)
class BufferRequest:
    tensor: int
    size: int
    first_use: int  # operator index that writes it (-1: a graph input, written before op 0)
    last_use: int  # last operator index that reads it (n_ops: a graph output)


@dataclass(frozen=True)
class MemoryPlan:
    offsets: dict[int, int]  # tensor index -> byte offset in the arena
    sizes: dict[int, int]
    arena_bytes: int


def _align(value: int, alignment: int = ARENA_ALIGNMENT) -> int:
    return (value + alignment - 1) // alignment * alignment


def plan_memory(requests: list[BufferRequest]) -> MemoryPlan:
    order = sorted(requests, key=lambda r: (-r.size, r.first_use, r.tensor))
    placed: list[tuple[int, int, BufferRequest]] = []  # (offset, end, request)
    offsets: dict[int, int] = {}
    for req in order:
        live = sorted(
            (off, end)
            for off, end, other in placed
            if not (other.last_use < req.first_use or req.last_use < other.first_use)
        )
        candidate = 0
        for off, end in live:
            if candidate + req.size <= off:
                break
            candidate = max(candidate, _align(end))
        offsets[req.tensor] = candidate
        placed.append((candidate, candidate + req.size, req))
    arena = max((end for _, end, _ in placed), default=0)
    return MemoryPlan(offsets, {r.tensor: r.size for r in requests}, _align(arena))
