"""Pieces of `tinyswap demo` that do not need the simulated device: accuracy per adapter
(INT8 through tinyswap, checked against TFLite Micro) and the latency-per-storage plot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the simulator is imported inside functions only
    from tinyswap.commands.digits import DigitsBundle
    from tinyswap.firmware_sim.swap_latency import SwapLatency


@dataclass(frozen=True)
class AccuracyRow:
    """One line of the demo's accuracy table (report.json's `accuracy_per_adapter`)."""

    adapter: str  # "(base model)" for the all-gates-off row
    kind: str  # lora, bottleneck, or "-" for the base model
    domain: str
    base_int8: float  # accuracy on the domain with every gate off
    adapted_int8: float | None  # with the adapter's gate at 1.0 (None: the base model's row)
    tflm_identical: bool  # the first rows equal TFLite Micro's outputs byte for byte
    package_bytes: int | None
    float_adapted: float | None = None  # the float accuracy recorded with the adapter


def accuracy_table(digits: DigitsBundle, tflm_rows: int = 40) -> list[AccuracyRow]:
    """Per adapter: INT8 accuracy on its domain with all gates off (the base model) and with the
    adapter's gate at 1.0, through a SwapManager on the bundle; the first `tflm_rows` rows of
    each run are compared with TFLite Micro byte for byte."""
    from tinyswap.oracles import run_tflm, tflm_interpreter
    from tinyswap.swap import SwapManager

    manager = SwapManager(bytearray(digits.model_bytes), digits.slotmap, digits.keyring)
    labels = digits.labels
    gate_inputs = [g["input_index"] for g in digits.slotmap["gates"]]
    rows = []

    def tflm_equal(x: np.ndarray, y: np.ndarray, adapter: str | None) -> bool:
        gates = manager.gates_for(adapter if adapter else "__base__", batch=len(x))
        image = bytes(manager.image.buffer)
        interp = tflm_interpreter(image)
        for r in range(len(x)):
            inputs: list[np.ndarray | None] = [None] * (1 + len(gate_inputs))
            for s, index in enumerate(gate_inputs):
                inputs[index] = gates[s][r : r + 1]
            data_index = next(i for i, v in enumerate(inputs) if v is None)
            inputs[data_index] = x[r : r + 1]
            if not np.array_equal(run_tflm(image, inputs, interp)[0][0], y[r]):
                return False
        return True

    x0 = digits.images["original"]
    base0 = manager.infer(x0)[0]
    rows.append(AccuracyRow("(base model)", "-", "original", float(np.mean(base0.argmax(1) == labels)), None,
                            tflm_equal(x0[:tflm_rows], base0[:tflm_rows], None), None))
    for domain, data in digits.packages.items():
        adapter = digits.adapters[domain]
        manager.load_adapter(data)
        x = digits.images[domain]
        base = manager.infer(x)[0]
        adapted = manager.infer(x, adapters=adapter.name)[0]
        same = (tflm_equal(x[:tflm_rows], adapted[:tflm_rows], adapter.name)
                and tflm_equal(x[:tflm_rows], base[:tflm_rows], None))
        rows.append(AccuracyRow(adapter.name, adapter.kind, domain, float(np.mean(base.argmax(1) == labels)),
                                float(np.mean(adapted.argmax(1) == labels)), same, len(data), adapter.accuracy))
        manager.delete_adapter(adapter.name)
    return rows


def latency_plot(latency: list[SwapLatency], path: Path) -> Path:
    """Bars per storage configuration: install, hot swap, its floor, rollback (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.device}\nmodel: {r.model_medium}{' (XIP)' if r.swap_floor_ms else ' -> RAM'}\nstore: {r.store_medium}"
              + ("\n(datasheet max)" if "maximum" in r.configuration else "") for r in latency]
    series = [("OTA install (store write)", [r.install_ms for r in latency], "#4c72b0"),
              ("idle step (pre-erase, off the request path)", [r.idle_ms for r in latency], "#8c8c8c"),
              ("hot swap after it (programs only + verify + commit)", [r.swap_ms for r in latency], "#dd8452"),
              ("hot swap without the idle step (erases on its path)", [r.swap_without_idle_ms for r in latency],
               "#937860"),
              ("storage floor of the slot write (erase + program)", [r.swap_floor_ms or 0.0 for r in latency],
               "#55a868"),
              ("rollback (gate flip + commit)", [r.rollback_ms for r in latency], "#c44e52")]
    fig, ax = plt.subplots(figsize=(11, 5.4))
    width = 0.8 / len(series)
    xs = np.arange(len(latency))
    for i, (name, values, colour) in enumerate(series):
        bars = ax.bar(xs + (i - (len(series) - 1) / 2) * width, [max(v, 1e-3) for v in values], width, label=name,
                      color=colour)
        for bar, v in zip(bars, values):
            if v > 0:
                ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() * 1.08, f"{v:.3g}", ha="center",
                        va="bottom", fontsize=7, rotation=90)
    ax.set_yscale("log")
    ax.set_ylabel("simulated milliseconds (log scale)")
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_title("Adapter switch latency per storage profile (digits CNN, 4 KB slots; per-request switch: 0 flash ops)")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_ylim(1e-2, max(max(v for _, vs, _ in series for v in vs) * 20, 10))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
