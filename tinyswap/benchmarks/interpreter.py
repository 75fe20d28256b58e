"""`tinyswap bench --interpreter`: tinyswap vs the TFLite Micro wheel vs LiteRT, side by side.

Every runtime runs the same inputs in the same process, interleaved in blocks of BLOCK runs
(each runtime's block in turn, block after block) so that machine noise hits them alike; we
report medians and ratios to the TFLM wheel, not absolute promises. Two medians per runtime:
`median_ms` over the runs after the first of each block, as in a loop of inferences, and
`first_ms` over each block's first run, which follows the other runtimes' blocks: its caches
hold their data, not its own (in the README's run, tinyswap's batch-1 runs took up to 3x as
long there, the TFLM wheel's within 10% except on models it runs in microseconds). Two workloads per model: batch-1
latency (one inference), and 64 inferences (tinyswap and LiteRT as one batch-64 call; the TFLM
wheel cannot batch, so 64 invokes, which is what a host-side user of it would do; a stateful
streaming model is 64 consecutive frames, one invoke each, for every runtime). tinyswap's rows
also give microseconds per operator (the batch-1 median over the model's operators).

The standard set (`standard_models`): TFLite Micro's examples (`models/tflm/`), the converter-
made MLPerf-Tiny-class models (`models/converted/`: DS-CNN, MobileNet, ResNet, autoencoder),
the streaming wake word (`models/streaming/kws_stream`) and the small converter-made int8
models (`models/keras/`). With `busy=True` every measurement is repeated while another process
spins on one core (`spinning_core`), reported as separate rows.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from tinyswap.benchmarks.errors import BenchmarkError
from tinyswap.errors import InputFileError, ModelError
from tinyswap.files import read_bytes
from tinyswap.interpreter import Interpreter

DEFAULT_MODELS = ("micro_speech_quantized", "person_detect")
BATCH_ROWS = 64
# Of the standard set, by folder (stems; the keras folder contributes every int8 model in it).
CONVERTED = ("ds_cnn", "mobilenet", "resnet", "autoencoder")
STREAMING = ("kws_stream",)
IDLE, BUSY = "idle", "1 core busy"


@dataclass
class Row:
    model: str
    workload: str
    runtime: str
    median_ms: float
    ratio_vs_tflm: float | None
    note: str = ""
    operators: int = 0
    us_per_operator: float | None = None  # tinyswap, batch 1
    condition: str = IDLE
    first_ms: float | None = None  # the median of each block's first run (see the module docstring)
    first_ratio_vs_tflm: float | None = None  # first_ms over TFLM's


@dataclass(frozen=True)
class ModelCase:
    label: str  # "tflm/hello_world_int8"
    path: Path


def standard_models(root: Path) -> list[ModelCase]:
    """The benchmark's model set under a models folder (the repository's `models/`)."""
    cases = [ModelCase(f"tflm/{p.stem}", p) for p in sorted((root / "tflm").glob("*.tflite"))]
    cases += [ModelCase(f"converted/{s}", root / "converted" / f"{s}.tflite") for s in CONVERTED]
    cases += [ModelCase(f"streaming/{s}", root / "streaming" / f"{s}.tflite") for s in STREAMING]
    cases += [ModelCase(f"keras/{p.stem}", p) for p in sorted((root / "keras").glob("*.tflite"))
              if not p.stem.startswith("float_")]
    return cases


def model_cases(models_dir: Path, models: tuple[str, ...] | None) -> list[ModelCase]:
    """`models` (stems in `models_dir`); else the standard set when `models_dir` is a models
    folder (it has `tflm/`), else every .tflite file in `models_dir`."""
    if models is not None:
        return [ModelCase(name, models_dir / f"{name}.tflite") for name in models]
    if (models_dir / "tflm").is_dir():
        return standard_models(models_dir)
    cases = [ModelCase(p.stem, p) for p in sorted(models_dir.glob("*.tflite"))]
    if not cases:
        raise InputFileError(models_dir, "holds no .tflite model to benchmark", "model directory")
    return cases


# Runs per block: the first after the other runtimes' blocks, the rest in a loop.
BLOCK = 5


def _median_ms(fn: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _runners(raw: bytes, x: np.ndarray, stateful: bool) -> dict[str, Callable[[], object] | str]:
    """Name -> a zero-argument callable running all rows of x, or the reason it cannot run.
    Stateful models run row by row everywhere (each row is the next frame)."""
    from tinyswap.oracles import LiteRTResolver, litert_interpreter, tflm_interpreter

    runners: dict[str, Callable[[], object] | str] = {}
    ours = Interpreter(model_content=raw)
    ours.run(x[:1] if stateful else x)  # allocate for this batch once, as a serving loop would
    in_index = ours.get_input_details()[0]["index"]
    out_index = ours.get_output_details()[0]["index"]

    def run_ours() -> object:
        for rows in ([r[None] for r in x] if stateful else [x]):
            ours.set_tensor(in_index, rows)
            ours.invoke()
        return ours.get_tensor(out_index)

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
            if not stateful and x.shape[0] != d["shape"][0]:
                interp.resize_tensor_input(d["index"], list(x.shape))
                interp.allocate_tensors()
        except Exception as exc:  # noqa: BLE001 - LiteRT's own refusal is the datum
            runners[label] = f"refused by LiteRT: {str(exc).splitlines()[0][:80]}"
            continue

        def run_litert(interp=interp, d=d) -> object:
            for rows in ([r[None] for r in x] if stateful else [x]):
                interp.set_tensor(d["index"], rows)
                interp.invoke()
            return interp.get_tensor(interp.get_output_details()[0]["index"])

        runners[label] = run_litert
    return runners


def _spin(ready: Any) -> None:  # pragma: no cover - runs in the child process
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except (AttributeError, OSError):
        pass  # no affinity control here: the spinner still occupies one core's worth of time
    ready.set()
    while True:
        pass


@contextmanager
def spinning_core() -> Iterator[None]:
    """Another process busy-looping on one core (pinned where the OS allows) for the duration:
    the benchmark's view of a shared machine, where TFLM's single thread keeps running and
    any runtime that relies on spare cores does not. Measurements start once it spins."""
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(target=_spin, args=(ready,), daemon=True)
    process.start()
    try:
        if not ready.wait(timeout=60):
            raise BenchmarkError("the spinning process did not start within 60 s")
        yield
    finally:
        process.terminate()
        process.join(timeout=5)


def _measure(case: ModelCase, raw: bytes, shape: list[int], dtype: np.dtype, operators: int, stateful: bool,
             repeats: int, condition: str, progress: Callable[[str], None]) -> list[Row]:
    rows: list[Row] = []
    for batch, label, reps in ((1, "batch 1 (latency)", repeats),
                               (BATCH_ROWS, f"{BATCH_ROWS} inferences", max(5, repeats // 8))):
        progress(f"bench {case.label}: {label}, {reps} blocks of {BLOCK} runs per runtime ({condition})")
        x = np.random.default_rng(0).integers(-128, 128, size=(batch, *shape)).astype(dtype)
        runners = _runners(raw, x, stateful)
        first: dict[str, list[float]] = {k: [] for k, v in runners.items() if callable(v)}
        looped: dict[str, list[float]] = {k: [] for k in first}
        for fn in runners.values():  # warm-up
            if callable(fn):
                fn()
        for _ in range(reps):  # interleaved: each repetition runs every runtime's block once
            for key, fn in runners.items():
                if callable(fn):
                    block = _median_ms(fn, BLOCK)
                    first[key].append(block[0])
                    looped[key] += block[1:]
        tflm_ms = statistics.median(looped["tflite_micro"])
        tflm_first = statistics.median(first["tflite_micro"])
        note = "64 frames, one invoke each (stateful)" if stateful and batch > 1 else ""
        for key, fn in runners.items():
            if not callable(fn):
                rows.append(Row(case.label, label, key, float("nan"), None, fn, condition=condition))
                continue
            med, cold = statistics.median(looped[key]), statistics.median(first[key])
            per_op = med * 1e3 / operators if key == "tinyswap" and batch == 1 and operators else None
            rows.append(Row(case.label, label, key, med, med / tflm_ms, note, operators, per_op, condition,
                            cold, cold / tflm_first))
    return rows


def benchmark(models_dir: Path, models: tuple[str, ...] | None = DEFAULT_MODELS, repeats: int = 30,
              progress: Callable[[str], None] = print, busy: bool = False) -> list[Row]:
    rows: list[Row] = []
    for case in model_cases(models_dir, models):
        raw = read_bytes(case.path, "model")
        try:
            probe = Interpreter(model_content=raw)
            probe.allocate_tensors()
        except ModelError as exc:  # the interpreter was handed bytes: name the file here
            raise InputFileError(case.path, f"not a valid .tflite model: {exc}", "model") from exc
        details = probe.get_input_details()
        if len(details) != 1:
            progress(f"bench {case.label}: skipped ({len(details)} inputs; the benchmark feeds one)")
            continue
        shape = [int(s) for s in details[0]["shape"][1:]]
        facts = (raw, shape, np.dtype(details[0]["dtype"]), len(probe.model.main.operators), probe.variable_bytes > 0)
        rows += _measure(case, *facts, repeats, IDLE, progress)
        if busy:
            with spinning_core():
                rows += _measure(case, *facts, repeats, BUSY, progress)
    return rows


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| model | workload | runtime | median ms (in a loop) | time / tflite_micro | speed-up vs tflite_micro | "
        "us per operator | first of block ms | its speed-up |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        where = r.workload if r.condition == IDLE else f"{r.workload}, {r.condition}"
        if r.ratio_vs_tflm is None:
            lines.append(f"| {r.model} | {where} | {r.runtime} | - | - | {r.note} | - | - | - |")
        else:
            per_op = "-" if r.us_per_operator is None else f"{r.us_per_operator:.1f}"
            speed = f"{1 / r.ratio_vs_tflm:.2f}x" + (f" ({r.note})" if r.note else "")
            first = "-" if r.first_ms is None else f"{r.first_ms:.3f}"
            first_speed = "-" if not r.first_ratio_vs_tflm else f"{1 / r.first_ratio_vs_tflm:.2f}x"
            lines.append(f"| {r.model} | {where} | {r.runtime} | {r.median_ms:.3f} | {r.ratio_vs_tflm:.2f} | "
                         f"{speed} | {per_op} | {first} | {first_speed} |")
    return "\n".join(lines)


def versions() -> str:
    """The versions every figure depends on, for the report's header."""
    names = ("numpy", "tflite-micro", "ai-edge-litert", "threadpoolctl")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return f"Python {platform.python_version()}, " + ", ".join(found)


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
        models: tuple[str, ...] | None = None, busy: bool = False) -> InterpreterReport:
    """Benchmark `models` (.tflite stems in `models_dir`; None: see `model_cases`); write
    bench_interpreter.json and .md. `busy`: every measurement again with one core busy."""
    if not models_dir.is_dir():
        raise BenchmarkError(f"model directory {models_dir} does not exist")
    rows = benchmark(models_dir, models, repeats=repeats, progress=progress, busy=busy)
    machine = f"{cpu_name()} ({os.cpu_count()} logical CPUs), {versions()}"
    report = InterpreterReport(time.strftime("%Y-%m-%d"), machine, rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench_interpreter.json").write_text(
        json.dumps({"date": report.date, "machine": machine, "rows": [asdict(r) for r in rows]}, indent=2)
    )
    (out_dir / "bench_interpreter.md").write_text(report.text + "\n")
    return report


__all__ = ["BLOCK", "DEFAULT_MODELS", "InterpreterReport", "ModelCase", "Row", "benchmark", "cpu_name", "markdown_table",
           "model_cases", "run", "spinning_core", "standard_models", "versions"]
