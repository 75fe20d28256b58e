"""`tinyswap bench --compiler`: compile time, bundle size and the flash cost of slots, by model size.

MLPs of three dense layers sized for about 10 KB to 2 MB of int8 weights, a rank-8 LoRA slot
on every layer, S in {2, 4, 8}, 16-byte and 4096-byte (flash sector) alignment. Reports the
slot bytes over the slot payload bytes (what alignment and spacers cost) and the bundle over
the slot-free model (what S adapters cost in flash).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tinyswap.export.bundle import slot_ranges
from tinyswap.export.compiler import compile_model
from tinyswap.export.slot_plan import SlotPlan, SlotTarget
from tinyswap.export.spec import ModelSpec, parse_spec

WEIGHT_BYTES = (10_000, 100_000, 500_000, 2_000_000)


def mlp_of(weight_bytes: int, seed: int = 0) -> tuple[ModelSpec, np.ndarray]:
    """A three-layer MLP with about `weight_bytes` int8 weights, and its calibration rows."""
    width = max(8, int(math.sqrt(weight_bytes / 2)))
    rng = np.random.default_rng(seed)
    dims = [width, width, width, 10]
    layers, weights = [], {}
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append({"name": f"fc{i}", "type": "dense", "units": b, "activation": "relu" if i < 2 else "none"})
        weights[f"fc{i}/kernel"] = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        weights[f"fc{i}/bias"] = np.zeros(b, np.float32)
    spec = parse_spec({"name": f"mlp{width}", "input": {"shape": [1, width]}, "layers": layers}, weights)
    return spec, rng.standard_normal((64, width)).astype(np.float32)


@dataclass(frozen=True)
class CompilerRow:
    weights: int  # int8 kernel weights of the model
    slots: int  # S
    alignment: int
    compile_s: float  # median over the repeats
    bundle_bytes: int
    base_bytes: int  # the same model compiled without slots
    slot_bytes: int  # every slot's aligned byte range
    slot_payload_bytes: int  # the slot tensors' own bytes
    slot_overhead: float  # slot_bytes / slot_payload_bytes: what alignment and spacers cost
    flash_ratio: float  # bundle_bytes / base_bytes: what S adapters cost in flash


@dataclass(frozen=True)
class CompilerReport:
    rows: list[CompilerRow]

    @property
    def text(self) -> str:
        """What `tinyswap bench --compiler` prints and bench_compiler.md holds."""
        lines = ["| int8 weights | S | alignment | compile s | bundle bytes | slot bytes / payload | bundle / slot-free |",
                 "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in self.rows:
            lines.append(f"| {r.weights} | {r.slots} | {r.alignment} | {r.compile_s:.3f} | {r.bundle_bytes} | "
                         f"{r.slot_overhead:.2f} | {r.flash_ratio:.3f} |")
        return "\n".join(lines)


def run(out_dir: Path, repeats: int = 3, progress: Callable[[str], None] = print,
        weight_bytes: tuple[int, ...] = WEIGHT_BYTES) -> CompilerReport:
    """Compile every size x S x alignment `repeats` times; write bench_compiler.json and .md.
    The compiler itself is timed (not `build_bundle`): arena probing and file writing are not
    part of what a slot costs."""
    rows = []
    for size in weight_bytes:
        spec, cal = mlp_of(size)
        base = compile_model(spec, None, cal)
        weights = sum(int(np.prod(w.shape)) for k, w in spec.weights.items() if k.endswith("kernel"))
        for slots in (2, 4, 8):
            for alignment in (16, 4096):
                progress(f"compile {spec.name} ({weights} weights), S={slots}, alignment {alignment}")
                plan = SlotPlan(targets=tuple(SlotTarget(layer.name, "lora", 8) for layer in spec.layers),
                                num_slots=slots, alignment=alignment)
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    compiled = compile_model(spec, plan, cal)
                    times.append(time.perf_counter() - start)
                slot_bytes = sum(n for _, n in slot_ranges(compiled))
                payload = sum(compiled.built.buffer_ranges[st.tensor][1] for st in compiled.slot_tensors)
                rows.append(CompilerRow(weights, slots, alignment, statistics.median(times), len(compiled.data),
                                        len(base.data), slot_bytes, payload, slot_bytes / payload,
                                        len(compiled.data) / len(base.data)))
    report = CompilerReport(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench_compiler.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    (out_dir / "bench_compiler.md").write_text(report.text + "\n")
    return report


__all__ = ["CompilerReport", "CompilerRow", "WEIGHT_BYTES", "mlp_of", "run"]
