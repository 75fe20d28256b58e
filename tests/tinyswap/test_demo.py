"""`tinyswap demo`, the main job: it runs end to end from the committed files and writes what
it promises (report.json, a Perfetto trace, PNG plots), and its figures hold the targets of
the models issue (each adapter +10 points INT8, identical to TFLite Micro)."""

from __future__ import annotations

import json

from tinyswap.cli import main


def test_demo_runs_and_writes_its_report_trace_and_plots(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Accuracy per adapter" in printed and "Switch latency per storage profile" in printed
    report = json.loads((out / "report.json").read_text())
    rows = report["demo"]["accuracy_per_adapter"]
    adapters = [r for r in rows if r["adapted_int8"] is not None]
    assert len(adapters) == 6 and {r["kind"] for r in adapters} == {"lora", "bottleneck"}
    assert all(r["tflm_identical"] for r in rows)
    assert all(r["adapted_int8"] - r["base_int8"] >= 0.10 for r in adapters)
    assert len(report["power_cuts"]) == 3 and any(b["reverted"] for b in report["boots"])
    assert report["budget"]["flash"]["model"]["base_sector_erases_during_run"] == 0
    assert report["final"]["trial"] is False
    trace = json.loads((out / "trace.json").read_text())
    assert len(trace["traceEvents"]) > 100
    for png in ("timeline.png", "flash_ops.png", "latency.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, png
    assert [r["device"] for r in report["demo"]["switch_latency"]] == ["mcu-qspi", "mcu-qspi", "mcu-ram", "gateway"]
