"""`tinyswap bench`: every side-by-side benchmark in one run and one table.

1. Interpreter: tinyswap vs the tflite_micro wheel vs LiteRT (`tinyswap.benchmarks.interpreter`).
2. Swapping: tinyswap's switch / cached hot swap / cold swap vs PEFT's `hotswap_adapter`
   (`tinyswap.benchmarks.swap`).
3. Simulated swap vs the storage floor, per device profile, on the digits CNN bundle, with the
   device's idle step (pre-erase) and without it (`tinyswap.firmware_sim.swap_latency`, through
   `tinyswap.commands.digits.switch_latency`).
4. Arena: our planner's arena vs TFLite Micro's own recorded arena (RecordingMicroAllocator
   "head", the planned tensors; its "tail" holds runtime structures we do not model).
5. Slot overhead: MACs, invoke time (tinyswap and the wheel) and TFLM arena of slot-free,
   always-run and conditional (IF-gated) slot branches (`tinyswap.benchmarks.slot_overhead`).

Everything is written to OUT/bench.json and OUT/bench.md (plus each part's own files).
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from tinyswap.benchmarks import interpreter as interpreter_bench
from tinyswap.benchmarks import slot_overhead as slot_bench
from tinyswap.benchmarks import swap as swap_bench
from tinyswap.resources import models_dir


@dataclass(frozen=True)
class ArenaRow:
    model: str
    tinyswap_arena: int
    tflm_head: int  # TFLM's planned tensors: what our planner models
    tflm_tail: int  # TFLM's runtime structures
    tflm_total: int  # the recorder's total: understates what AllocateTensors needs on some models
    ratio: float | None  # tinyswap_arena / tflm_head
    tflm_smallest: int | None = None  # the smallest arena the wheel allocates and invokes in (measured)


def arena_rows(models: dict[str, bytes]) -> list[ArenaRow]:
    from tinyswap.arena import tflm_arena_figure
    from tinyswap.interpreter import Interpreter
    from tinyswap.oracles import tflm_arena

    rows = []
    for name, raw in models.items():
        interp = Interpreter(model_content=raw)
        interp.allocate_tensors()
        theirs = tflm_arena(raw)
        figure = tflm_arena_figure(raw)
        rows.append(ArenaRow(name, interp.arena_bytes, theirs["head"], theirs["tail"], theirs["total"],
                             interp.arena_bytes / theirs["head"] if theirs["head"] else None,
                             figure.smallest_bytes if figure.measured else None))
    return rows


def _arena_models(tflm_dir: Path, digits: dict[str, bytes]) -> dict[str, bytes]:
    models = {p.stem: p.read_bytes() for p in sorted(tflm_dir.glob("*.tflite"))}
    models.update({f"keras/{p.stem}": p.read_bytes() for p in sorted((models_dir() / "keras").glob("*.tflite"))})
    models.update({f"digits/{k} (with slots)": v for k, v in digits.items()})
    return models


@dataclass(frozen=True)
class SuiteReport:
    text: str  # OUT/bench.md: the summary table and every part's table
    seconds: float


def run(out_dir: Path, tflm_dir: Path, repeats: int = 20, progress: Callable[[str], None] = print) -> SuiteReport:
    """Every benchmark in one process; `tflm_dir` holds the TFLite Micro example models."""
    from tinyswap.commands.digits import compile_digits, prepare, switch_latency
    from tinyswap.firmware_sim.swap_latency import as_rows, markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    progress("[1/4] interpreter: tinyswap vs tflite_micro vs LiteRT")
    # The shipped TFLite Micro examples stand for the standard set under the models folder.
    shipped = tflm_dir.resolve() == (models_dir() / "tflm").resolve()
    interp = interpreter_bench.run(models_dir() if shipped else tflm_dir, out_dir, repeats, progress=progress)
    progress("[2/4] swapping: tinyswap vs PEFT hotswap_adapter")
    swap = swap_bench.run(out_dir, repeats=max(20, repeats * 10))
    progress("[3/4] simulated swap vs storage floor (digits CNN bundle)")
    with tempfile.TemporaryDirectory() as tmp:
        digits = prepare(Path(tmp), "cnn")
        latency = switch_latency(digits)
    # The arena rows need only the compiled bytes: no files, no packages.
    digit_models = {"cnn": digits.model_bytes, "mlp": compile_digits("mlp").data}
    latency_md = markdown(latency)
    progress("[4/4] arena: our planner vs TFLite Micro's recorded arena")
    arenas = arena_rows(_arena_models(tflm_dir, digit_models))
    arena_lines = ["| model | tinyswap arena B | TFLM planned (head) B | ratio | TFLM recorded total (head + tail) B "
                   "| smallest arena TFLM allocates and invokes in B |", "|---|---:|---:|---:|---:|---:|"]
    for r in arenas:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        smallest = "-" if r.tflm_smallest is None else str(r.tflm_smallest)
        arena_lines.append(f"| {r.model} | {r.tinyswap_arena} | {r.tflm_head} | {ratio} | {r.tflm_total} | {smallest} |")

    progress("slot overhead: slot-free vs always-run vs conditional branches")
    slots = slot_bench.run(out_dir, repeats=max(5, repeats // 2), progress=progress)

    summary = ["| benchmark | case | tinyswap | reference | ratio |", "|---|---|---:|---:|---:|"]
    for row in interp.rows:
        if row.runtime == "tinyswap" and row.ratio_vs_tflm:
            first = "" if not row.first_ratio_vs_tflm else f" (first of block {1 / row.first_ratio_vs_tflm:.2f}x)"
            summary.append(f"| interpreter | {row.model}, {row.workload} | {row.median_ms:.3f} ms | "
                           f"tflite_micro {row.median_ms / row.ratio_vs_tflm:.3f} ms | "
                           f"{1 / row.ratio_vs_tflm:.2f}x faster{first} |")
    for srow in swap.rows:
        if srow.peft_us:
            spread = "" if srow.speedup_p10 is None else f" (p10-p90 {srow.speedup_p10:.1f}-{srow.speedup_p90:.1f})"
            summary.append(f"| swap | {srow.operation} | {srow.tinyswap_us:.1f} us | PEFT hotswap_adapter "
                           f"{srow.peft_us:.1f} us | {srow.speedup:.1f}x faster{spread}, target >= {srow.target:g}x |")
    for r in latency:
        if r.swap_floor_ms is not None:
            summary.append(f"| simulated swap | {r.configuration}, after the idle step ({r.idle_ms:.1f} ms of "
                           f"pre-erase off the request path) | {r.swap_ms:.1f} ms, {r.swap_erases} erases | "
                           f"storage floor {r.swap_floor_ms:.1f} ms | {r.swap_over_floor:.2f}x the floor "
                           f"(without the idle step {r.without_idle_over_floor:.2f}x) |")
    equal = sum(1 for a in arenas if a.tinyswap_arena == a.tflm_head)
    worst = max(arenas, key=lambda a: a.ratio or 0)
    summary.append(f"| arena | {len(arenas)} models | equal on {equal} | TFLM recorded arena | "
                   f"worst {worst.ratio:.2f}x ({worst.model}) |")
    for srow in slots.rows:
        if srow.configuration == "conditional" and srow.active == 1:
            summary.append(f"| slot overhead | {srow.model}, 1 of {slot_bench.NUM_SLOTS} slots active (rank "
                           f"{slot_bench.RANK}, IF-gated) | {srow.macs:,} MACs | slot-free model | "
                           f"{srow.macs_over_free:+.1%} MACs |")
    machine = f"{interpreter_bench.cpu_name()}, Python {platform.python_version()}"
    elapsed = time.perf_counter() - started
    text = "\n".join([
        f"tinyswap bench, {time.strftime('%Y-%m-%d')}, {machine}, {elapsed:.0f} s", "",
        "## Summary (medians; ratios side by side in one run)", "", *summary, "",
        "## Interpreter", "", interp.text, "", "## Swapping vs PEFT", "", swap.text, "",
        "## Simulated swap per storage configuration (digits CNN, 4 KB-aligned slots)", "", latency_md, "",
        "## Arena", "", *arena_lines, "",
        "## Slot overhead (slot-free, always-run and conditional branches)", "", slots.text, ""])
    (out_dir / "bench.md").write_text(text)
    # The same records as each part's own JSON file, so bench.json holds nothing they do not.
    interp_json = {"date": interp.date, "machine": interp.machine, "rows": [asdict(r) for r in interp.rows]}
    (out_dir / "bench.json").write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "machine": machine, "seconds": elapsed, "interpreter": interp_json,
        "swap": asdict(swap), "simulated_swap": as_rows(latency), "arena": [asdict(a) for a in arenas],
        "slot_overhead": [asdict(r) for r in slots.rows]}, indent=2))
    return SuiteReport(text, elapsed)


__all__ = ["ArenaRow", "SuiteReport", "arena_rows", "run"]
