"""`tinyswap demo`, the main job: it runs end to end from the committed files and writes what
it promises (report.json, a Perfetto trace, PNG plots), and its figures hold the digits
models' targets (each adapter +10 points INT8, identical to TFLite Micro). The digits CNN is
compiled once, for both the scripted day and the accuracy and latency tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tinyswap.export.build
from tinyswap.cli import main
from tinyswap.commands import demo
from tinyswap.errors import TinySwapError


def test_demo_runs_and_writes_its_report_trace_and_plots(tmp_path, capsys, monkeypatch) -> None:
    compiled = []
    real_compile = tinyswap.export.build.compile_model

    def counting_compile(spec, plan, calibration):
        compiled.append(spec.name)
        return real_compile(spec, plan, calibration)

    monkeypatch.setattr(tinyswap.export.build, "compile_model", counting_compile)
    # A relative --out, as `scripts/main.sh` passes it: every path the demo hands a scenario
    # must still name the same file from the scenario's own folder.
    monkeypatch.chdir(tmp_path)
    out = Path("demo")
    assert main(["demo", "--out", str(out)]) == 0
    assert len(compiled) == 1  # one bundle serves the scenario and the tables
    build = out / "build"
    assert (build / "bundle" / "model.tflite").exists() and (build / "keys" / "signing_key.pub.pem").exists()
    assert len(list((build / "packages").glob("*.tsap"))) == 6  # every CNN adapter, for the tables
    assert len(list((build / "scenario" / "packages").glob("*.tsap"))) == 5  # the scenario's build section
    printed = capsys.readouterr().out
    assert f"built     {build / 'bundle'} (" in printed  # the scenario runs on that same bundle
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
    # the personalisation steps: alice's adapter trained on the device and confirmed, her
    # mislabelled retraining reverted by the gate, her first version still current
    first, careless = report["on_device_training"]
    assert first["confirmed"] and first["accuracy_after"] >= first["accuracy_before"] + 0.10
    assert first["peak_ram_bytes"] <= 64 * 1024 and first["simulated_seconds"] < 60
    assert not careless["confirmed"] and careless["replaced"] == "personal-alice"
    assert report["final"]["adapters"]["personal-alice"]["current"] == first["package_digest"]
    by = {(a["adapter"], a["dataset"]): a["accuracy"] for a in report["accuracy"]}
    assert by[("personal-alice@1.0.0", "mirror")] >= by[("__base__", "mirror")] + 0.15
    assert "reverted by the confirm gate" in printed
    # the keyword spotter streams across an adapter update with the scenario's policy
    streaming = report["demo"]["streaming"]["streams"]
    (mic,) = streaming["per_stream"]
    assert mic["policy"] == "pin" and set(mic["frames_by_version"]) == {"kws-user@1.0.0", "kws-user@2.0.0"}
    assert mic["pinned_frames"] > 0 and streaming["no_frame_consumed_state_of_another_adapter_set"] is True
    assert "Streaming through adapter swaps" in printed and (out / "stream" / "trace.json").exists()
    trace = json.loads((out / "trace.json").read_text())
    assert len(trace["traceEvents"]) > 100
    for png in ("timeline.png", "flash_ops.png", "latency.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, png
    assert [r["device"] for r in report["demo"]["switch_latency"]] == ["mcu-qspi", "mcu-qspi", "mcu-ram", "gateway"]


def test_the_demo_refuses_a_scenario_whose_build_is_not_the_digits_cnn(monkeypatch) -> None:
    with pytest.raises(TinySwapError, match="reuses the digits CNN bundle"):
        demo._check_builds_digits_cnn({"spec": "../mlp.json", "plan": "../mlp.plan.json"})
    with pytest.raises(TinySwapError, match="reuses the digits CNN bundle"):
        demo._check_builds_digits_cnn({"spec": "../cnn.json", "plan": "../cnn.plan.json",
                                       "calibration": "../mlp.calibration.npy"})
    demo._check_builds_digits_cnn({"spec": "../cnn.json", "plan": "../cnn.plan.json"})
