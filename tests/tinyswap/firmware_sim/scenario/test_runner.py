"""`run_scenario`: every step kind on the example CNN bundle, power cuts before and after the
commit of an update, the report / trace / plots, in-memory inputs, and stopping on an
unexpected error with the outputs still written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tinyswap.firmware_sim.scenario import STEP_KINDS, ScenarioStepFailed, run_scenario

from tests.tinyswap.firmware_sim.device_cases import packages_for
from tests.tinyswap.firmware_sim.scenario.scenario_cases import scenario, with_step


@pytest.fixture(scope="module")
def ran(work, tmp_path_factory) -> tuple[dict, Path, list[str]]:
    out = tmp_path_factory.mktemp("out")
    lines: list[str] = []
    report = run_scenario(scenario(), profile="mcu-qspi", out_dir=out, base_dir=work, progress=lines.append)
    return report, out, lines


def test_every_step_kind_runs_and_the_report_says_what_happened(ran):
    report, out, lines = ran
    steps = report["steps"]
    # every kind but `stream`, which needs a streaming model (test_stream.py runs it)
    assert {s["kind"] for s in steps} == set(STEP_KINDS.names()) - {"stream"}
    assert report["completed"] and report["failed"] is None
    assert [s["outcome"] for s in steps].count("ok") == len(steps) - 3
    assert steps[18]["outcome"] == "expected error" and steps[18]["error"].startswith("SignatureError")
    assert steps[18]["mutating_ops"] == 0  # refused before any flash write
    assert steps[21]["outcome"] == "expected error" and steps[21]["error"].startswith("TrainingPlanError")
    assert steps[21]["mutating_ops"] == 0 and report["on_device_training"] == []
    # one progress line per step (after the provisioning line), with the simulated time
    assert len([line for line in lines if " step " in line]) == len(steps)
    assert "0:10:00.000  step 12 update" in lines[-10]
    # timing: steps follow each other on the simulated clock; `at` and `wait` move it
    for a, b in zip(steps, steps[1:]):
        assert b["start_s"] >= a["start_s"] + a["duration_s"] - 1e-12
    assert steps[12]["start_s"] == 600.0
    assert steps[17]["duration_s"] == 3600.0
    assert steps[1]["duration_s"] > 0 and steps[1]["flash"]["model"]["erase_ops"] >= 1
    # the saved report is the returned one
    assert json.loads((out / "report.json").read_text())["steps"][9]["outcome"] == "power lost"


def test_report_keys_and_step_records_are_stable(ran):
    """The report's shape is a contract of `tinyswap sim` (scripts read report.json)."""
    report, out, _ = ran
    assert list(report) == ["format", "version", "scenario", "profile", "completed", "failed", "steps", "accuracy",
                            "experiments", "boots", "power_cuts", "final", "budget", "time", "device_log",
                            "on_device_training", "streams", "outputs"]
    keys = ["index", "kind", "target", "note", "at_s", "start_s", "outcome", "error", "result", "duration_s",
            "time_by_category", "flash", "mutating_ops", "active_after"]
    steps = report["steps"]
    assert list(steps[0]) == keys
    assert list(steps[9]) == keys[:9] + ["cut"] + keys[9:]  # the step a power cut was armed for
    assert [s["target"] for s in steps[:8]] == ["A1", "A1", "A", "rows", "__base__", "B1", "rows", "rows"]
    assert steps[14]["target"] == "A" and steps[17]["target"] is None and steps[12]["at_s"] == 600.0
    saved = json.loads((out / "report.json").read_text())
    assert saved["steps"][9]["cut"] == steps[9]["cut"] and saved["steps"][3]["outcome"] == "ok"
    assert set(report["outputs"]) == {"report", "trace", "timeline", "flash_ops"}


def test_progress_lines_describe_each_kind(ran):
    _, _, lines = ran
    text = "\n".join(lines)
    for fragment in ("step  0 install   A 1.1 stored", "step  1 swap      A 1.1 in slot", "step  2 activate  A@1.1",
                     "step  3 infer     16 rows: A@1.1 on rows", "armed: before flash write 3 of the next step",
                     "step  9 update    POWER LOST (before flash write 3 of this step)", "step 13 confirm   confirmed",
                     "step 15 prefetch  B staged", "step 16 delete    deleted B", "step 17 wait      3600.000 s",
                     "step 18 install   EXPECTED ERROR: SignatureError", "step 19 power_cut power off now"):
        assert fragment in text, fragment


def test_accuracy_is_recorded_per_adapter_and_dataset(ran):
    report, _, _ = ran
    acc = {(a["adapter"], a["dataset"]): a for a in report["accuracy"]}
    base = acc[("__base__", "rows")]
    assert base["accuracy"] == 1.0  # the labels are the base model's own predictions
    assert base["rows"] == 24 + 4 + report["experiments"]["ab"]["__base__"]["requests"]
    assert ("A@1.1", "rows") in acc and ("B@1.1", "rows") in acc
    assert acc[("A@1.1", "rows")]["accuracy"] < 1.0  # the adapter changes the outputs
    infer = report["steps"][6]["result"]
    assert infer["rows"] == 12 and {b["adapter"] for b in infer["by_adapter"]} == {"A@1.1", "B@1.1", "__base__"}
    # routed requests: bob follows the rule, the others are split by the experiment
    routed = report["steps"][7]["result"]["routed"]
    assert routed["B"] == 20 and routed.get("A", 0) + routed.get("__base__", 0) == 20
    arms = report["experiments"]["ab"]
    assert arms["A"]["requests"] + arms["__base__"]["requests"] == 20
    assert arms["__base__"]["mean"] == 1.0 and arms["A"]["outcomes"] == arms["A"]["requests"] > 0


def test_a_cut_before_the_commit_leaves_the_old_version_live(ran):
    report, _, _ = ran
    steps = report["steps"]
    assert steps[8]["result"]["fired"] is True
    assert steps[9]["outcome"] == "power lost" and steps[9]["active_after"] is None
    assert steps[9]["cut"]["when"] == "before" and steps[9]["cut"]["op"] == 3
    assert steps[10]["active_after"]["A"]["version"] == "1.1"  # the version before the interrupted update
    boot = next(b for b in report["boots"] if b["step"] == 10)
    assert boot["active"] == {"A": 1.0}
    assert steps[12]["active_after"]["A"]["version"] == "1.2" and steps[12]["result"]["trial"]
    assert steps[14]["active_after"]["A"]["version"] == "1.1"  # rollback
    # the brown-out (step 19) reboots into the last confirmed state: rollback and delete were permanent
    assert [c["when"] for c in report["power_cuts"]] == ["before", "now"]
    final = report["final"]
    assert final["active"]["A"]["version"] == "1.1" and "B" not in final["adapters"] and not final["trial"]
    budget = report["budget"]
    assert budget["flash"]["model"]["base_sector_erases_during_run"] == 0
    assert budget["flash"]["model"]["base_sector_programs_during_run"] == 0
    assert budget["ram"]["arena_bytes"] <= budget["ram"]["arena_budget"]
    assert 0 < budget["flash"]["store"]["used_bytes"] <= budget["flash"]["store"]["size"]


def test_a_cut_after_the_commit_leaves_the_new_version_live(work, tmp_path):
    steps = [{"kind": "update", "package": "A1", "permanent": True},
             {"kind": "activate", "adapters": "A", "permanent": True},
             {"kind": "update", "package": "A2", "permanent": True}]
    clean = run_scenario(scenario(steps=steps), profile="mcu-qspi", out_dir=tmp_path / "clean", base_dir=work)
    n = clean["steps"][2]["mutating_ops"]  # the commit is the update's last write
    cut = steps[:2] + [{"kind": "power_cut", "when": "after", "op": n}, steps[2], {"kind": "reboot"}]
    report = run_scenario(scenario(steps=cut), profile="mcu-qspi", out_dir=tmp_path / "cut", base_dir=work)
    assert report["steps"][3]["outcome"] == "power lost"
    assert report["steps"][4]["active_after"]["A"]["version"] == "1.2"
    # one write earlier, the commit never happened
    cut[2] = {"kind": "power_cut", "when": "torn", "op": n}
    report = run_scenario(scenario(steps=cut), profile="mcu-qspi", out_dir=tmp_path / "torn", base_dir=work)
    assert report["steps"][4]["active_after"]["A"]["version"] == "1.1"


def test_a_cut_beyond_the_next_steps_writes_is_reported_not_reached(work, tmp_path):
    steps = [{"kind": "power_cut", "when": "after", "op": 10_000}, {"kind": "update", "package": "A1"}]
    lines: list[str] = []
    report = run_scenario(scenario(steps=steps), profile="gateway", out_dir=tmp_path, base_dir=work,
                          progress=lines.append)
    assert report["completed"] and report["steps"][0]["result"]["fired"] is False
    assert report["steps"][1]["cut"]["fired"] is False and "not reached" in report["steps"][1]["cut"]["note"]
    assert "(armed power cut at flash write 10000 not reached)" in lines[-1]


def test_trace_and_plots_are_written(ran):
    _, out, _ = ran
    trace = json.loads((out / "trace.json").read_text())
    events = trace["traceEvents"]
    names = {e["name"] for e in events}
    assert {"provision", "boot", "install", "swap", "infer", "commit", "power cut", "reboot", "wait"} <= names
    assert sum(e["ph"] == "X" for e in events) > 50
    assert all("ts" in e for e in events if e["ph"] in ("X", "i"))
    for name in ("timeline.png", "flash_ops.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name


def test_in_memory_packages_and_datasets(work, tmp_path):
    x = np.load(work / "rows.npz")["x"]
    y = np.load(work / "rows.npz")["y"]
    sc = {"bundle": str(work / "bundle"), "keyring": str(work / "keys" / "key.pub.pem"),
          "steps": [{"kind": "update", "package": "mem", "permanent": True},
                    {"kind": "infer", "dataset": "mem", "adapters": "__base__"}]}
    report = run_scenario(sc, profile="gateway", out_dir=tmp_path, base_dir=tmp_path,
                          packages={"mem": packages_for(4096)["A1"]}, datasets={"mem": (x, y)})
    assert report["steps"][0]["result"]["name"] == "A"
    assert report["accuracy"] == [{"adapter": "__base__", "dataset": "mem", "rows": len(x), "correct": len(x),
                                   "accuracy": 1.0}]


def test_an_unexpected_error_stops_the_run_and_still_writes_the_outputs(work, tmp_path):
    sc = with_step({"kind": "rollback", "name": "nobody"})
    with pytest.raises(ScenarioStepFailed, match=r"step 1 \(rollback\)") as err:
        run_scenario(sc, profile="mcu-qspi", out_dir=tmp_path, base_dir=work)
    assert err.value.step == 1 and err.value.kind == "rollback" and not err.value.report["completed"]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["failed"]["step"] == 1 and saved["steps"][1]["outcome"] == "error"
    assert (tmp_path / "timeline.png").exists() and (tmp_path / "trace.json").exists()
    # an expected error that does not happen is a failure too
    sc = with_step({"kind": "install", "package": "A2", "expect_error": "SignatureError"})
    with pytest.raises(ScenarioStepFailed, match="expected SignatureError, but the step succeeded"):
        run_scenario(sc, profile="mcu-qspi", out_dir=tmp_path, base_dir=work)
