"""The Ethos-U cost table: Vela's estimates beside the CPU branches and the recompile alternative.

For each model and NPU configuration (`tinyswap.export.npu.cost`): Vela's NPU cycles, SRAM and
flash for the base alone, for the slotted NPU bundle (the sum over its segments) and for the
whole slotted model recompiled with an adapter (every slot computed on the NPU); the CPU cycles
of the adapter branches from the simulator's cycle model (`tinyswap.model_cost.model_cost` MACs of
the stitched model's CPU operators x Cortex-M55 cycles per MAC, `firmware_sim.profiles`); the
NPU/CPU transitions per inference; and what one new adapter costs in flash writes: one slot
range in the NPU bundle, the whole recompiled model otherwise (erase and program floor on each
storage profile, `firmware_sim.swap_latency.swap_floor_seconds`: no verification, no metadata).

`python -m tinyswap.benchmarks.npu_cost` prints the README's tables (needs the `npu` extra).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyswap.export.compiler import Compiled, compile_model
from tinyswap.export.npu.bundle import build_npu_bundle
from tinyswap.export.npu.config import NpuConfig
from tinyswap.export.npu.cost import NpuCost, npu_cost
from tinyswap.export.slot_plan import SlotPlan
from tinyswap.export.spec import load_spec
from tinyswap.model_cost import model_cost
from tinyswap.firmware_sim.profiles import CORTEX_M55
from tinyswap.firmware_sim.storage import PROFILES
from tinyswap.firmware_sim.swap_latency import swap_floor_seconds

#: The raw flash media of the storage profiles (managed media hide their erase blocks).
MEDIA = ("w25q128jv", "sam-internal", "stm32f4-internal")


@dataclass(frozen=True)
class CostRow:
    model: str
    cost: NpuCost
    branch_macs: int
    branch_cpu_cycles: int

    @property
    def config(self) -> NpuConfig:
        return self.cost.bundle.config


def _sector_sizes(medium: str, offset: int, length: int) -> list[int]:
    geometry = PROFILES[medium].geometry()
    return [geometry.sectors[i] for i in geometry.sectors_in(offset, length)]


def write_seconds(medium: str, length: int, offset: int = 0) -> float:
    """Erase the sectors under [offset, offset + length) on `medium` and program the bytes."""
    return swap_floor_seconds(offset, length, medium, _sector_sizes(medium, offset, length))


def slot_write_seconds(medium: str, slot_bytes: int) -> float:
    """One slot compiled on the medium's own sector boundary (the slot plan's alignment)."""
    sector = PROFILES[medium].geometry().sectors[0]
    return write_seconds(medium, max(slot_bytes, 1), 0) if slot_bytes <= sector else \
        write_seconds(medium, math.ceil(slot_bytes / sector) * sector, 0)


def cost_row(model: str, source: Compiled, base: Compiled, config: NpuConfig) -> CostRow:
    cost = npu_cost(build_npu_bundle(source, config), base)
    macs = model_cost(cost.bundle.data).macs_per_row  # the ethos-u operators count no MACs here: CPU only
    return CostRow(model, cost, macs, int(round(macs * CORTEX_M55.cycles_per_mac)))


def _memory(pairs: tuple[tuple[str, float], ...]) -> str:
    return " + ".join(f"{area} {kib:.2f}" for area, kib in pairs) or "0"


def compute_table(rows: list[CostRow]) -> str:
    head = ("| model | NPU (Vela's system config) | base alone: NPU cycles; memory KiB | NPU bundle (sum of segments): "
            "NPU cycles; memory KiB | branches on the CPU: MACs; M55 cycles | NPU/CPU transitions | recompiled per "
            "adapter, every slot on the NPU: NPU cycles; memory KiB |")
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        c = r.cost
        b, w = c.base.summary, c.recompiled.summary
        lines.append(
            f"| {r.model} | {r.config} ({b.system_config}, {b.clock_hz / 1e6:.0f} MHz) | {b.cycles_npu:,}; "
            f"{b.memory_text()} | {c.segments_cycles_npu:,}; {_memory(c.segments_memory_kib)} | "
            f"{r.branch_macs:,}; {r.branch_cpu_cycles:,} | {c.bundle.partition.transitions} | "
            f"{w.cycles_npu:,}; {w.memory_text()} |")
    return "\n".join(lines)


def update_table(rows: list[CostRow]) -> str:
    head = ("| model | NPU | NPU bundle: model bytes (flashed once); one adapter writes | recompile per adapter: "
            "reflash bytes | "
            + " | ".join(f"{m}: slot write / reflash ms" for m in MEDIA) + " |")
    lines = [head, "|" + "---|" * (4 + len(MEDIA))]
    for r in rows:
        slot, whole = r.cost.slot_bytes, len(r.cost.recompiled.output)
        times = [f"{slot_write_seconds(m, slot) * 1e3:.1f} / {write_seconds(m, whole) * 1e3:.1f}" for m in MEDIA]
        lines.append(f"| {r.model} | {r.config} | {len(r.cost.bundle.data):,}; {slot:,} | {whole:,} | "
                     + " | ".join(times) + " |")
    return "\n".join(lines)


def example_rows(repo: Path, configs: tuple[NpuConfig, ...] = tuple(NpuConfig)) -> list[CostRow]:
    """The digits CNN and the examples depthwise CNN, as the README's table shows them."""
    rows = []
    for model, stem in (("digits CNN", repo / "models/digits/cnn"), ("examples CNN", repo / "models/examples/cnn")):
        spec = load_spec(stem.with_suffix(".json"))
        plan = SlotPlan.from_json(json.loads(stem.with_suffix(".plan.json").read_text()))
        calibration = np.load(stem.with_suffix(".calibration.npy"))
        source, base = compile_model(spec, plan, calibration), compile_model(spec, None, calibration)
        rows += [cost_row(model, source, base, config) for config in configs]
    return rows


def main() -> None:
    rows = example_rows(Path.cwd())
    print(compute_table(rows))
    print()
    print(update_table(rows))


if __name__ == "__main__":
    main()


__all__ = ["CostRow", "MEDIA", "compute_table", "cost_row", "example_rows", "slot_write_seconds", "update_table",
           "write_seconds"]
