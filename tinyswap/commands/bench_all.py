"""`tinyswap bench`: every side-by-side benchmark in one run and one table.

1. Interpreter: tinyswap vs the tflite_micro wheel vs LiteRT (tinyswap/bench.py).
2. Swapping: tinyswap's switch / cached hot swap / cold swap vs PEFT's `hotswap_adapter`
   (export/bench_swap.py).
3. Simulated swap vs the storage floor, per device profile, on the digits CNN bundle
   (firmware_sim/swap_latency.py).
4. Arena: our planner's arena vs TFLite Micro's own recorded arena (RecordingMicroAllocator
   "head", the planned tensors; its "tail" holds runtime structures we do not model).

Everything is written to OUT/bench.json and OUT/bench.md (plus each part's own files).
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from tinyswap.bench import _cpu_name

from tinyswap.resources import models_dir


def arena_rows(models: dict[str, bytes]) -> list[dict[str, Any]]:
    from tinyswap.interpreter import Interpreter
    from tinyswap.oracles import tflm_arena

    rows = []
    for name, raw in models.items():
        interp = Interpreter(model_content=raw)
        interp.allocate_tensors()
        theirs = tflm_arena(raw)
        rows.append({"model": name, "tinyswap_arena": interp.arena_bytes, "tflm_head": theirs["head"],
                     "tflm_tail": theirs["tail"], "tflm_total": theirs["total"],
                     "ratio": interp.arena_bytes / theirs["head"] if theirs["head"] else None})
    return rows


def _arena_models(shared: Path, digits: dict[str, bytes]) -> dict[str, bytes]:
    models = {p.stem: p.read_bytes() for p in sorted(shared.glob("*.tflite"))}
    models.update({f"keras/{p.stem}": p.read_bytes() for p in sorted((models_dir() / "keras").glob("*.tflite"))})
    models.update({f"digits/{k} (with slots)": v for k, v in digits.items()})
    return models


def run(out_dir: Path, models_dir: Path, repeats: int = 20, progress: Callable[[str], None] = print) -> str:
    from tinyswap.export.bench_swap import run as run_swap
    from tinyswap.firmware_sim.swap_latency import as_rows, markdown, measure
    from tinyswap.bench import run_interpreter_benchmark
    from tinyswap.commands.digits import prepare, resign

    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    progress("[1/4] interpreter: tinyswap vs tflite_micro vs LiteRT")
    interp_md = run_interpreter_benchmark(models_dir, out_dir, repeats)
    interp = json.loads((out_dir / "bench_interpreter.json").read_text())
    progress("[2/4] swapping: tinyswap vs PEFT hotswap_adapter")
    swap_md = run_swap(out_dir, repeats=max(20, repeats * 10))
    swap = json.loads((out_dir / "bench_swap.json").read_text())
    progress("[3/4] simulated swap vs storage floor (digits CNN bundle)")
    with tempfile.TemporaryDirectory() as tmp:
        digits = prepare(Path(tmp), "cnn")
        v1 = digits.packages["rot90"]
        v2 = resign(digits, "mirror", name=digits.adapters["rot90"].name, sequence=2, version="2.0.0")
        latency = measure(digits.model_bytes, digits.slotmap, digits.keyring, v1, v2, digits.packages["invert"])
        mlp = prepare(Path(tmp) / "mlp", "mlp")
        digit_models = {"cnn": digits.model_bytes, "mlp": mlp.model_bytes}
    latency_md = markdown(latency)
    progress("[4/4] arena: our planner vs TFLite Micro's recorded arena")
    arenas = arena_rows(_arena_models(models_dir, digit_models))
    arena_lines = ["| model | tinyswap arena B | TFLM planned (head) B | ratio | TFLM total (head + tail) B |",
                   "|---|---:|---:|---:|---:|"]
    for r in arenas:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        arena_lines.append(f"| {r['model']} | {r['tinyswap_arena']} | {r['tflm_head']} | {ratio} | {r['tflm_total']} |")

    summary = ["| benchmark | case | tinyswap | reference | ratio |", "|---|---|---:|---:|---:|"]
    for row in interp["rows"]:
        if row["runtime"] == "tinyswap" and row["ratio_vs_tflm"]:
            summary.append(f"| interpreter | {row['model']}, {row['workload']} | {row['median_ms']:.3f} ms | "
                           f"tflite_micro {row['median_ms'] / row['ratio_vs_tflm']:.3f} ms | "
                           f"{1 / row['ratio_vs_tflm']:.2f}x faster |")
    for row in swap["rows"]:
        if row["peft_us"]:
            summary.append(f"| swap | {row['operation']} | {row['tinyswap_us']:.1f} us | PEFT hotswap_adapter "
                           f"{row['peft_us']:.1f} us | {row['speedup']:.1f}x faster |")
    for r in latency:
        if r.swap_floor_ms is not None:
            summary.append(f"| simulated swap | {r.configuration} | {r.swap_ms:.1f} ms | storage floor "
                           f"{r.swap_floor_ms:.1f} ms | {r.swap_over_floor:.2f}x the floor |")
    equal = sum(1 for r in arenas if r["tinyswap_arena"] == r["tflm_head"])
    worst = max(arenas, key=lambda r: r["ratio"] or 0)
    summary.append(f"| arena | {len(arenas)} models | equal on {equal} | TFLM recorded arena | "
                   f"worst {worst['ratio']:.2f}x ({worst['model']}) |")
    machine = f"{_cpu_name()}, Python {platform.python_version()}"
    elapsed = time.perf_counter() - started
    report = "\n".join([
        f"tinyswap bench, {time.strftime('%Y-%m-%d')}, {machine}, {elapsed:.0f} s", "",
        "## Summary (medians; ratios side by side in one run)", "", *summary, "",
        "## Interpreter", "", interp_md, "", "## Swapping vs PEFT", "", swap_md, "",
        "## Simulated swap per storage configuration (digits CNN, 4 KB-aligned slots)", "", latency_md, "",
        "## Arena", "", *arena_lines, ""])
    (out_dir / "bench.md").write_text(report)
    (out_dir / "bench.json").write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "machine": machine, "seconds": elapsed, "interpreter": interp,
        "swap": swap, "simulated_swap": as_rows(latency), "arena": arenas}, indent=2))
    return report


__all__ = ["arena_rows", "run"]
