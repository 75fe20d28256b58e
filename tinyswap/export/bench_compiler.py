"""Compiler benchmark: compile time, bundle size and the flash cost of slots, by model size.

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
from pathlib import Path
from typing import Callable

import numpy as np

from tinyswap.export.bundle import slot_ranges
from tinyswap.export.compiler import compile_model
from tinyswap.export.slot_plan import SlotPlan, SlotTarget
from tinyswap.export.spec import parse_spec

WEIGHT_BYTES = (10_000, 100_000, 500_000, 2_000_000)


def mlp_of(weight_bytes: int, seed: int = 0):
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


def run(out_dir: Path, repeats: int = 3, progress: Callable[[str], None] = print) -> str:
    rows = []
    for size in WEIGHT_BYTES:
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
                rows.append({
                    "weights": weights, "slots": slots, "alignment": alignment,
                    "compile_s": statistics.median(times), "bundle_bytes": len(compiled.data),
                    "base_bytes": len(base.data), "slot_bytes": slot_bytes, "slot_payload_bytes": payload,
                    "slot_overhead": slot_bytes / payload, "flash_ratio": len(compiled.data) / len(base.data),
                })
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench_compiler.json").write_text(json.dumps(rows, indent=2))
    lines = ["| int8 weights | S | alignment | compile s | bundle bytes | slot bytes / payload | bundle / slot-free |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['weights']} | {r['slots']} | {r['alignment']} | {r['compile_s']:.3f} | {r['bundle_bytes']} | "
                     f"{r['slot_overhead']:.2f} | {r['flash_ratio']:.3f} |")
    table = "\n".join(lines)
    (out_dir / "bench_compiler.md").write_text(table + "\n")
    return table
