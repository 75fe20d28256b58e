"""`tinyswap bench --slots`: what adapter slots cost per invoke, counted and measured.

For each model: the slot-free model, the plan compiled with every branch always running
(`branches: "always"`), and the same plan with each branch behind an IF on its gate
(`branches: "conditional"`) with 0, 1, ..., S slots active. Per configuration: MACs of one
invoke (`tinyswap.model_cost`, the one owner of MAC counting), the median invoke time in
tinyswap's interpreter and in the tflite_micro wheel (same inputs, interleaved repetition by
repetition), and the smallest arena the wheel allocates and invokes the model in
(`tinyswap.arena`). Slots hold random bytes, so an active branch does real work.

Models: the digits CNN with its shipped plan (three targets at rank 8 on layers of 8 to 16
channels, where a rank-8 branch is about as large as the layer), the digits CNN with one rank-8
LoRA on its classifier, the converted MobileNet-style model with rank-8 LoRAs on its first
convolution and classifier (its usual adapter targets; its layers have 1 to 32 channels, so a
rank-8 branch on the first one is larger than the layer) and with one on its classifier alone,
and person_detect (MobileNetV1 0.25 at
96x96) with rank-8 LoRAs on its last two pointwise convolutions and its head.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tinyswap.export.bundle import slot_map
from tinyswap.export.compiler import Compiled, compile_model
from tinyswap.export.inject import inject_slots
from tinyswap.export.slot_plan import SlotBranches, SlotPlan, SlotTarget
from tinyswap.export.spec import load_spec
from tinyswap.benchmarks.interpreter import cpu_name
from tinyswap.interpreter import Interpreter
from tinyswap.model_cost import model_cost, slot_cost_report
from tinyswap.resources import models_dir

RANK = 8
NUM_SLOTS = 2


@dataclass(frozen=True)
class Case:
    """One model: its slot-free bytes and how to compile it with a plan."""

    name: str
    free: bytes
    plan: SlotPlan
    build: Callable[[SlotPlan], Compiled]


@dataclass(frozen=True)
class SlotOverheadRow:
    model: str
    configuration: str  # "slot-free", "always", "conditional"
    active: int | None  # slots whose gate is on (None: the slot-free model)
    macs: int  # of one invoke
    macs_over_free: float  # macs / the slot-free model's - 1
    tinyswap_ms: float  # median invoke
    tflm_ms: float  # median invoke of the tflite_micro wheel
    tflm_arena: int | None  # smallest arena the wheel allocates and invokes in (None: not measured)


@dataclass(frozen=True)
class SlotOverheadReport:
    date: str
    machine: str
    rows: list[SlotOverheadRow]

    @property
    def text(self) -> str:
        lines = [f"Measured {self.date} on {self.machine}; slots of rank {RANK}, S = {NUM_SLOTS}, random slot bytes.",
                 "", "| model | configuration | slots active | MACs | MACs vs slot-free | tinyswap ms | "
                 "tflite_micro ms | TFLM smallest arena B |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in self.rows:
            active = "-" if r.active is None else f"{r.active} of {NUM_SLOTS}"
            arena = "-" if r.tflm_arena is None else str(r.tflm_arena)
            lines.append(f"| {r.model} | {r.configuration} | {active} | {r.macs:,} | {r.macs_over_free:+.1%} | "
                         f"{r.tinyswap_ms:.3f} | {r.tflm_ms:.3f} | {arena} |")
        return "\n".join(lines)


def default_cases() -> list[Case]:
    models = models_dir()
    digits = models / "digits"
    spec = load_spec(digits / "cnn.json")
    calibration = np.load(digits / "cnn.calibration.npy")
    shipped = dataclasses.replace(SlotPlan.load(digits / "cnn.plan.json"), num_slots=NUM_SLOTS)

    def compiled(plan: SlotPlan) -> Compiled:
        return compile_model(spec, plan, calibration)

    free = compile_model(spec, None, calibration).data
    head = dataclasses.replace(shipped, targets=(SlotTarget("fc", "lora", RANK),))
    cases = [Case("digits CNN (shipped plan)", free, shipped, compiled), Case("digits CNN (rank-8 head)", free, head,
                                                                              compiled)]
    for label, path, targets in (
            ("MobileNet-style (converted)", models / "converted" / "mobilenet.tflite", ("#1", "#9")),
            ("MobileNet-style (converted, rank-8 head)", models / "converted" / "mobilenet.tflite", ("#9",)),
            ("person_detect (MobileNetV1 0.25)", models / "tflm" / "person_detect.tflite", ("#24", "#26", "#28"))):
        if not path.is_file():
            continue
        data = path.read_bytes()
        plan = SlotPlan(tuple(SlotTarget(t, "lora", RANK) for t in targets), num_slots=NUM_SLOTS)
        cases.append(Case(label, data, plan, lambda p, data=data: inject_slots(data, p)))
    return cases


def _random_slots(compiled: Compiled, rng: np.random.Generator) -> bytes:
    data = bytearray(compiled.data)
    for st in compiled.slot_tensors:
        if st.tensor.dtype == np.int8:  # the weights; int32 biases stay 0
            offset, length = compiled.built.buffer_ranges[st.tensor]
            data[offset:offset + length] = rng.integers(-127, 128, length).astype(np.int8).tobytes()
    return bytes(data)


def _timers(data: bytes, inputs: list[np.ndarray]) -> dict[str, Callable[[], object]]:
    from tinyswap.oracles import tflm_interpreter

    ours = Interpreter(model_content=data)
    ours.allocate_tensors()
    indices = [d["index"] for d in ours.get_input_details()]
    tflm = tflm_interpreter(data)

    def run_ours() -> object:
        for index, x in zip(indices, inputs):
            ours.set_tensor(index, x)
        ours.invoke()
        return ours.get_tensor(ours.get_output_details()[0]["index"])

    def run_tflm() -> object:
        for i, x in enumerate(inputs):
            tflm.set_input(x, i)
        tflm.invoke()
        return tflm.get_output(0)

    return {"tinyswap": run_ours, "tflite_micro": run_tflm}


def measure_case(case: Case, repeats: int, arena: bool = True) -> list[SlotOverheadRow]:
    """The slot-free model, `always` and `conditional` with 0..S active, interleaved."""
    from tinyswap.arena import tflm_arena_figure

    rng = np.random.default_rng(0)
    free_macs = model_cost(case.free).macs_per_row
    data_inputs = [np.asarray(rng.integers(-128, 128, d["shape"]), d["dtype"])
                   for d in Interpreter(model_content=case.free).get_input_details()]
    configurations: list[tuple[str, int | None, bytes, list[np.ndarray], int]] = [
        ("slot-free", None, case.free, data_inputs, free_macs)]
    for branches in SlotBranches:
        compiled = case.build(dataclasses.replace(case.plan, branches=branches))
        report = slot_cost_report(compiled.data, slot_map(compiled))
        data = _random_slots(compiled, rng)
        for k in (range(NUM_SLOTS + 1) if branches == SlotBranches.CONDITIONAL else (NUM_SLOTS,)):
            gates = [np.full(g.shape, 127 if s < k else -128, np.int8) for s, g in enumerate(compiled.gates)]
            configurations.append((branches.value, k, data, data_inputs + gates, report.macs_with_active_slots[k]))
    timers = [_timers(data, inputs) for _, _, data, inputs, _ in configurations]
    times: list[dict[str, list[float]]] = [{name: [] for name in t} for t in timers]
    for t in timers:  # warm-up
        for fn in t.values():
            fn()
    for _ in range(repeats):  # interleaved: each repetition runs every configuration in both runtimes
        for t, out in zip(timers, times):
            for name, fn in t.items():
                start = time.perf_counter()
                fn()
                out[name].append((time.perf_counter() - start) * 1e3)
    rows = []
    for (label, active, data, _, macs), out in zip(configurations, times):
        figure = tflm_arena_figure(data) if arena else None
        rows.append(SlotOverheadRow(case.name, label, active, macs, macs / free_macs - 1,
                                    statistics.median(out["tinyswap"]), statistics.median(out["tflite_micro"]),
                                    figure.smallest_bytes if figure is not None and figure.measured else None))
    return rows


def run(out_dir: Path, repeats: int = 20, progress: Callable[[str], None] = print,
        cases: list[Case] | None = None, arena: bool = True) -> SlotOverheadReport:
    """Measure every case; write bench_slots.json and bench_slots.md into `out_dir`."""
    rows: list[SlotOverheadRow] = []
    for case in cases if cases is not None else default_cases():
        progress(f"bench slots: {case.name}, {repeats} interleaved repeats")
        rows += measure_case(case, repeats, arena)
    machine = f"{cpu_name()} ({os.cpu_count()} logical CPUs), Python {platform.python_version()}, NumPy {np.__version__}"
    report = SlotOverheadReport(time.strftime("%Y-%m-%d"), machine, rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench_slots.json").write_text(json.dumps(
        {"date": report.date, "machine": machine, "rank": RANK, "num_slots": NUM_SLOTS,
         "rows": [asdict(r) for r in rows]}, indent=2))
    (out_dir / "bench_slots.md").write_text(report.text + "\n")
    return report


__all__ = ["Case", "SlotOverheadReport", "SlotOverheadRow", "default_cases", "measure_case", "run"]
