"""`tinyswap demo`: the main job, end to end on its embedded default.

From the committed digits files only (nothing is trained): export the CNN bundle, pack and sign
its adapters, boot a simulated `mcu-qspi` device and run the scripted day of
models/digits/scenarios/demo.json (task switch, per-camera personalisation by routing, an A/B
canary with per-arm accuracy, mixed batches, a refused package, an OTA update cut by power
failures during install and during the slot write with recovery, a trial that reverts, a
rollback, a user's adapter trained on the device from her own samples and confirmed by its
held-out accuracy, and a mislabelled retraining the confirm gate reverts); then a keyword
spotter of our own streams audio-like frames on a second device across an adapter update, a
rollback and a reboot (models/streaming/scenarios/kws_day.json, which chooses the stream's
policy; `demo_stream.py`); then measure INT8 accuracy per adapter (checked byte for byte against TFLite Micro)
and the switch latency per storage profile. Writes into OUT: report.json, trace.json (opens in
Perfetto), timeline.png, flash_ops.png, latency.png, the bundle, keys and packages it made, and
stream/ (the keyword spotter's report.json and trace.json).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from tinyswap.commands.digits import DIGITS

SCENARIO = DIGITS / "scenarios" / "demo.json"


def run(out_dir: Path, progress: Callable[[str], None] = print) -> dict[str, Any]:
    from tinyswap.firmware_sim.scenario import load_scenario, run_scenario, validate_scenario
    from tinyswap.firmware_sim.swap_latency import as_rows, markdown
    from tinyswap.commands import demo_stream
    from tinyswap.commands.demo_parts import accuracy_table, latency_plot
    from tinyswap.commands.digits import prepare, switch_latency
    from tinyswap.commands.sim import build_scenario, print_summary

    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    progress("tinyswap demo: the digits CNN (2 adapter slots) on a simulated Cortex-M7 with QSPI NOR and an SD card")
    progress("[1/5] export the bundle, pack and sign the adapters (committed weights; nothing is trained)")
    scenario = load_scenario(SCENARIO)
    validate_scenario(scenario)
    # One compilation serves both the scripted day and the accuracy and latency tables, which
    # holds only while the scenario's build section names the committed CNN: checked first.
    _check_builds_digits_cnn(scenario["build"])
    digits = prepare(out_dir / "build", "cnn")
    scenario = build_scenario(scenario, SCENARIO.parent, out_dir / "build" / "scenario", built=digits.built)

    progress(f"[2/5] a day on the device ({SCENARIO.relative_to(DIGITS.parents[1])}, {len(scenario['steps'])} steps)")
    report = run_scenario(scenario, profile="mcu-qspi", out_dir=out_dir, base_dir=SCENARIO.parent,
                          progress=lambda line: progress("      " + line))

    progress(f"[3/5] a keyword spotter streams words on a second device across an adapter update "
             f"({demo_stream.SCENARIO.relative_to(DIGITS.parents[1])})")
    stream_started = time.perf_counter()
    streaming = demo_stream.run(out_dir / "stream", progress=lambda line: progress("      " + line))
    stream_seconds = time.perf_counter() - stream_started

    progress("[4/5] accuracy per adapter: INT8 through tinyswap, each checked against TFLite Micro")
    accuracy = accuracy_table(digits)

    progress("[5/5] switch latency per storage profile (simulated, datasheet timings)")
    latency = switch_latency(digits)
    latency_png = latency_plot(latency, out_dir / "latency.png")

    report["demo"] = {
        "accuracy_per_adapter": [asdict(row) for row in accuracy], "switch_latency": as_rows(latency), "arena": digits.built.tflm_arena.to_json(),
        "streaming": {"scenario": str(demo_stream.SCENARIO.relative_to(DIGITS.parents[1])),
                      "report": str(out_dir / "stream" / "report.json"), "streams": streaming["streams"], "seconds": stream_seconds},
        "seconds": time.perf_counter() - started,
    }
    report.setdefault("outputs", {})["latency"] = str(latency_png)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))

    progress("")
    progress("=" * 100)
    progress("Accuracy per adapter (INT8 bundle, 540 test images per domain; 'identical' = tinyswap's output "
             "equals TFLite Micro's byte for byte, first 40 rows)")
    progress(f"  {'adapter':<14} {'kind':<11} {'domain':<9} {'base':>7} {'adapted':>8} {'gain':>7}  "
             f"{'TFLM':<10} {'package':>8}")
    for row in accuracy:
        adapted = "-" if row.adapted_int8 is None else f"{100 * row.adapted_int8:.1f}%"
        gain = "-" if row.adapted_int8 is None else f"+{100 * (row.adapted_int8 - row.base_int8):.1f}"
        size = "-" if row.package_bytes is None else f"{row.package_bytes} B"
        progress(f"  {row.adapter[:14]:<14} {row.kind:<11} {row.domain:<9} {100 * row.base_int8:>6.1f}% "
                 f"{adapted:>8} {gain:>7}  {'identical' if row.tflm_identical else 'DIFFERS':<10} {size:>8}")
    progress("")
    progress("The scripted day")
    print_summary(report, emit=progress)
    progress("")
    progress("Streaming through adapter swaps (the keyword spotter's stretch of the day)")
    for line in demo_stream.summary(streaming):
        progress(line)
    progress("")
    progress("Switch latency per storage profile (simulated; a per-request switch between resident adapters "
             "costs no flash operation)")
    for line in markdown(latency).splitlines():
        progress("  " + line)
    progress("")
    progress(f"wrote     {latency_png}")
    progress(f"done in {time.perf_counter() - started:.1f} s")
    return report


def _check_builds_digits_cnn(build: dict[str, Any]) -> None:
    from tinyswap.errors import TinySwapError

    named = {key: (SCENARIO.parent / build[key]).resolve() if build.get(key) else None
             for key in ("spec", "plan", "calibration")}
    expected = {"spec": (DIGITS / "cnn.json").resolve(), "plan": (DIGITS / "cnn.plan.json").resolve(),
                "calibration": None}  # None: the spec's own cnn.calibration.npy
    if named != expected:
        raise TinySwapError(f"{SCENARIO}: the demo reuses the digits CNN bundle for its build section, but it "
                            f"names {named}")


__all__ = ["SCENARIO", "run"]
