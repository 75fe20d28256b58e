"""`tinyswap bench --interpreter`: tinyswap vs the TFLite Micro wheel vs LiteRT, side by side.

Every runtime runs the same inputs in the same process, interleaved repetition by repetition
so that machine noise hits them alike; we report medians and ratios to the TFLM wheel, not
absolute promises. Two workloads per model: batch-1 latency (one inference), and 64
inferences (tinyswap and LiteRT as one batch-64 call; the TFLM wheel cannot batch, so 64
invokes, which is what a host-side user of it would do).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tinyswap.benchmarks.errors import BenchmarkError
from tinyswap.errors import InputFileError, ModelError
from tinyswap.files import read_bytes
from tinyswap.interpreter import Interpreter

DEFAULT_MODELS = ("micro_speech_quantized", "person_detect")


@dataclass
class Row:
    model: str
    workload: str
    runtime: str
    median_ms: float
    ratio_vs_tflm: float | None
    note: str = ""


def _median_ms(fn: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _runners(raw: bytes, x: np.ndarray) -> dict[str, Callable[[], object] | str]:
    """Name -> a zero-argument callable running all rows of x, or the reason it cannot run."""
    from tinyswap.oracles import LiteRTResolver, litert_interpreter, tflm_interpreter

    runners: dict[str, Callable[[], object] | str] = {}
    ours = Interpreter(model_content=raw)
    ours.run(x)  # allocate for this batch once, as a serving loop would
    in_index = ours.get_input_details()[0]["index"]

    def run_ours() -> object:
        ours.set_tensor(in_index, x)
        ours.invoke()
        return ours.get_tensor(ours.get_output_details()[0]["index"])

    runners["tinyswap"] = run_ours

    tflm = tflm_interpreter(raw)

    def run_tflm() -> object:
        for row in x:
            tflm.set_input(row[None], 0)
            tflm.invoke()
        return tflm.get_output(0)

    runners["tflite_micro"] = run_tflm

    for label, resolver in (("litert-default", LiteRTResolver.DEFAULT), ("litert-ref", LiteRTResolver.REF)):
        try:
            interp = litert_interpreter(raw, resolver)
            d = interp.get_input_details()[0]
            if x.shape[0] != d["shape"][0]:
                interp.resize_tensor_input(d["index"], list(x.shape))
                interp.allocate_tensors()
        except Exception as exc:  # noqa: BLE001 - LiteRT's own refusal is the datum
            runners[label] = f"refused by LiteRT: {str(exc).splitlines()[0][:80]}"
            continue

        def run_litert(interp=interp, d=d) -> object:
            interp.set_tensor(d["index"], x)
            interp.invoke()
            return interp.get_tensor(interp.get_output_details()[0]["index"])

        runners[label] = run_litert
    return runners


def benchmark(models_dir: Path, models: tuple[str, ...] = DEFAULT_MODELS, repeats: int = 30,
              progress: Callable[[str], None] = print) -> list[Row]:
    rows: list[Row] = []
    for name in models:
        path = models_dir / f"{name}.tflite"
        raw = read_bytes(path, "model")
        try:
            shape = [int(s) for s in Interpreter(model_content=raw).get_input_details()[0]["shape"][1:]]
        except ModelError as exc:  # the interpreter was handed bytes: name the file here
            raise InputFileError(path, f"not a valid .tflite model: {exc}", "model") from exc
        for batch, label, reps in ((1, "batch 1 (latency)", repeats), (64, "64 inferences", max(5, repeats // 4))):
            progress(f"bench {name}: {label}, {reps} repeats per runtime")
            x = np.random.default_rng(0).integers(-128, 128, size=(batch, *shape), dtype=np.int8)
            runners = _runners(raw, x)
            times: dict[str, list[float]] = {k: [] for k, v in runners.items() if callable(v)}
            for fn in runners.values():  # warm-up
                if callable(fn):
                    fn()
            for _ in range(reps):  # interleaved: each repetition runs every runtime once
                for key, fn in runners.items():
                    if callable(fn):
                        times[key] += _median_ms(fn, 1)
            tflm_ms = statistics.median(times["tflite_micro"])
            for key, fn in runners.items():
                if not callable(fn):
                    rows.append(Row(name, label, key, float("nan"), None, fn))
                    continue
                med = statistics.median(times[key])
                rows.append(Row(name, label, key, med, med / tflm_ms))
    return rows


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| model | workload | runtime | median ms | time / tflite_micro | speed-up vs tflite_micro |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        if r.ratio_vs_tflm is None:
            lines.append(f"| {r.model} | {r.workload} | {r.runtime} | - | - | {r.note} |")
        else:
            lines.append(
                f"| {r.model} | {r.workload} | {r.runtime} | {r.median_ms:.3f} | {r.ratio_vs_tflm:.2f} | "
                f"{1 / r.ratio_vs_tflm:.2f}x |"
            )
    return "\n".join(lines)


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (else what `platform` knows): benchmark figures
    are only comparable on the same machine, so every report states it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class InterpreterReport:
    date: str
    machine: str
    rows: list[Row]

    @property
    def text(self) -> str:
        """What `tinyswap bench --interpreter` prints and bench_interpreter.md holds."""
        return f"Measured {self.date} on {self.machine}.\n\n{markdown_table(self.rows)}"


def run(models_dir: Path, out_dir: Path, repeats: int, progress: Callable[[str], None] = print,
        models: tuple[str, ...] = DEFAULT_MODELS) -> InterpreterReport:
    """Benchmark `models` (.tflite stems in `models_dir`); write bench_interpreter.json and .md."""
    if not models_dir.is_dir():
        raise BenchmarkError(f"model directory {models_dir} does not exist")
    rows = benchmark(models_dir, models, repeats=repeats, progress=progress)
    machine = f"{cpu_name()} ({os.cpu_count()} logical CPUs), Python {platform.python_version()}, NumPy {np.__version__}"
    report = InterpreterReport(time.strftime("%Y-%m-%d"), machine, rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench_interpreter.json").write_text(
        json.dumps({"date": report.date, "machine": machine, "rows": [asdict(r) for r in rows]}, indent=2)
    )
    (out_dir / "bench_interpreter.md").write_text(report.text + "\n")
    return report


__all__ = ["DEFAULT_MODELS", "InterpreterReport", "Row", "benchmark", "cpu_name", "markdown_table", "run"]
