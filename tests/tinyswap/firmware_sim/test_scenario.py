"""`tinyswap sim` scenarios: every step kind on the example CNN bundle, power cuts before and
after the commit of an update, the report / trace / plots, typed refusals of bad scenarios,
the command line, and the committed example (models/digits/scenarios/day.json)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization

from tinyswap.export.bundle import write_bundle
from tinyswap.firmware_sim.scenario import (
    STEP_FIELDS,
    ScenarioFileError,
    ScenarioFormatError,
    ScenarioStepFailed,
    parse_duration,
    run_scenario,
    validate_scenario,
)
from tinyswap.cli import main
from tinyswap.swap import SwapManager

from tests.adapter_cases import KEY
from tests.conftest import REPO
from tests.tinyswap.firmware_sim.device_cases import KEYRING, bundle_for, inputs, packages_for

DAY = REPO / "models" / "digits" / "scenarios" / "day.json"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with a bundle, the public key, packages A1 / A2 / B1 / a corrupted one, and a
    dataset whose labels are the base model's own predictions (so the base scores 100%)."""
    d = tmp_path_factory.mktemp("scenario")
    b, p = bundle_for(4096), packages_for(4096)
    write_bundle(b.compiled, d / "bundle")
    (d / "keys").mkdir()
    (d / "keys" / "key.pub.pem").write_bytes(KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (d / "pkgs").mkdir()
    for label in ("A1", "A2", "B1"):
        (d / "pkgs" / f"{label}.tsap").write_bytes(p[label])
    bad = bytearray(p["C1"])
    bad[-1] ^= 0x01  # the last signature byte
    (d / "pkgs" / "bad.tsap").write_bytes(bytes(bad))
    x = inputs(48, seed=3)
    y = SwapManager(bytearray(b.data), b.smap, KEYRING).infer(x, adapters="__base__")[0].argmax(axis=1)
    np.savez(d / "rows.npz", x=x, y=y)
    return d


def scenario(**changes) -> dict:
    base = {
        "name": "every-step",
        "bundle": "bundle",
        "keyring": ["keys/key.pub.pem"],
        "packages": {"A1": "pkgs/A1.tsap", "A2": "pkgs/A2.tsap", "B1": "pkgs/B1.tsap", "bad": "pkgs/bad.tsap"},
        "datasets": {"rows": "rows.npz"},
        "router": {"rules": [{"match": {"user": "bob"}, "adapter": "B"}],
                   "experiments": [{"name": "ab", "arms": {"A": 50, "__base__": 50}, "match": {"task": "ab"}}]},
        "steps": [
            {"kind": "install", "package": "A1"},                                        # 0
            {"kind": "swap", "package": "A1", "permanent": True},                        # 1
            {"kind": "activate", "adapters": "A", "permanent": True},                    # 2
            {"kind": "infer", "dataset": "rows", "rows": 16},                            # 3 active set
            {"kind": "infer", "dataset": "rows", "rows": 24, "adapters": "__base__"},    # 4
            {"kind": "update", "package": "B1", "permanent": True},                      # 5
            {"kind": "infer", "dataset": "rows", "rows": 12, "per_row": ["A", "B", "__base__"]},  # 6
            {"kind": "infer", "dataset": "rows", "rows": 40, "batch": 16,                # 7
             "requests": [{"user": "bob"}, {"user": "u-{row}", "task": "ab"}]},
            {"kind": "power_cut", "when": "before", "op": 3},                            # 8
            {"kind": "update", "package": "A2", "permanent": True},                      # 9 cut before the commit
            {"kind": "reboot"},                                                          # 10
            {"kind": "infer", "dataset": "rows", "rows": 8},                             # 11
            {"kind": "update", "package": "A2", "at": "10min"},                          # 12 on trial
            {"kind": "confirm"},                                                         # 13
            {"kind": "rollback", "name": "A", "permanent": True},                        # 14
            {"kind": "prefetch", "name": "B"},                                           # 15
            {"kind": "delete", "name": "B", "permanent": True},                          # 16
            {"kind": "wait", "seconds": "1h"},                                           # 17
            {"kind": "install", "package": "bad", "expect_error": "SignatureError"},    # 18
            {"kind": "power_cut"},                                                       # 19 now
            {"kind": "reboot"},                                                          # 20
        ],
    }
    base.update(changes)
    return base


@pytest.fixture(scope="module")
def ran(work, tmp_path_factory) -> tuple[dict, Path, list[str]]:
    out = tmp_path_factory.mktemp("out")
    lines: list[str] = []
    report = run_scenario(scenario(), profile="mcu-qspi", out_dir=out, base_dir=work, progress=lines.append)
    return report, out, lines


def test_every_step_kind_runs_and_the_report_says_what_happened(ran):
    report, out, lines = ran
    steps = report["steps"]
    assert {s["kind"] for s in steps} == set(STEP_FIELDS)
    assert report["completed"] and report["failed"] is None
    assert [s["outcome"] for s in steps].count("ok") == len(steps) - 2
    assert steps[18]["outcome"] == "expected error" and steps[18]["error"].startswith("SignatureError")
    assert steps[18]["mutating_ops"] == 0  # refused before any flash write
    # one progress line per step (after the provisioning line), with the simulated time
    assert len([line for line in lines if " step " in line]) == len(steps)
    assert "0:10:00.000  step 12 update" in lines[-9]
    # timing: steps follow each other on the simulated clock; `at` and `wait` move it
    for a, b in zip(steps, steps[1:]):
        assert b["start_s"] >= a["start_s"] + a["duration_s"] - 1e-12
    assert steps[12]["start_s"] == 600.0
    assert steps[17]["duration_s"] == 3600.0
    assert steps[1]["duration_s"] > 0 and steps[1]["flash"]["model"]["erase_ops"] >= 1
    # the saved report is the returned one
    assert json.loads((out / "report.json").read_text())["steps"][9]["outcome"] == "power lost"


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


# ------------------------------------------------------------------------------ refusals

def _with_step(step: dict, **changes) -> dict:
    sc = scenario(**changes)
    sc["steps"] = [{"kind": "install", "package": "A1"}, step]
    return sc


@pytest.mark.parametrize("step, field, text", [
    ({"kind": "teleport"}, "kind", "unknown step kind 'teleport'"),
    ({"package": "A1"}, "kind", "'kind' is missing"),
    ({"kind": "install", "package": "A1", "pakage": "A2"}, "pakage", "not a field of a 'install' step"),
    ({"kind": "rollback"}, "name", "'name': is missing"),
    ({"kind": "update", "package": "Z9"}, "package", "no package labelled 'Z9'"),
    ({"kind": "infer", "rows": 4}, "dataset", "'dataset': is missing"),
    ({"kind": "infer", "dataset": "nope"}, "dataset", "no dataset labelled 'nope'"),
    ({"kind": "infer", "dataset": "rows", "adapters": "A", "per_row": ["A"]}, "per_row", "at most one"),
    ({"kind": "wait", "seconds": "soon"}, "seconds", "not a time"),
    ({"kind": "power_cut", "when": "before"}, "op", "'op': is missing"),
    ({"kind": "power_cut", "when": "before", "op": 2}, "when", "needs a next step"),
    ({"kind": "power_cut", "when": "sometimes"}, "when", "one of"),
    ({"kind": "activate", "adapters": 7}, "adapters", "adapter name"),
])
def test_bad_steps_are_refused_with_the_step_and_field_named(work, tmp_path, step, field, text):
    with pytest.raises(ScenarioFormatError) as err:
        run_scenario(_with_step(step), profile="mcu-qspi", out_dir=tmp_path, base_dir=work)
    assert err.value.step == 1 and err.value.field == field
    assert str(err.value).startswith("step 1") and text in str(err.value)
    assert not (tmp_path / "report.json").exists()  # refused before anything ran


def test_unknown_top_level_field_and_profile(work, tmp_path):
    with pytest.raises(ScenarioFormatError, match="unknown field 'stepz'") as err:
        validate_scenario({**scenario(), "stepz": []})
    assert err.value.step is None and err.value.field == "stepz"
    with pytest.raises(ScenarioFormatError, match="unknown device profile"):
        run_scenario(scenario(), profile="toaster", out_dir=tmp_path, base_dir=work)


def test_missing_files_are_named_with_the_step_that_uses_them(work, tmp_path):
    sc = _with_step({"kind": "update", "package": "A2"})
    sc["packages"]["A2"] = "pkgs/missing.tsap"
    with pytest.raises(ScenarioFileError, match=r"step 1 \(update\): package 'A2' -> .*missing.tsap") as err:
        run_scenario(sc, profile="mcu-qspi", out_dir=tmp_path, base_dir=work)
    assert err.value.step == 1 and err.value.field == "package"
    sc = _with_step({"kind": "infer", "dataset": "gone"}, datasets={"gone": "nothing.npz"})
    with pytest.raises(ScenarioFileError, match=r"step 1 \(infer\): dataset 'gone'") as err:
        run_scenario(sc, profile="mcu-qspi", out_dir=tmp_path, base_dir=work)
    assert err.value.step == 1
    with pytest.raises(ScenarioFileError, match="keyring"):
        run_scenario(scenario(keyring="keys/none.pem"), profile="mcu-qspi", out_dir=tmp_path, base_dir=work)
    with pytest.raises(ScenarioFileError, match="bundle"):
        run_scenario(scenario(bundle="pkgs"), profile="mcu-qspi", out_dir=tmp_path, base_dir=work)


def test_an_unexpected_error_stops_the_run_and_still_writes_the_outputs(work, tmp_path):
    sc = _with_step({"kind": "rollback", "name": "nobody"})
    with pytest.raises(ScenarioStepFailed, match=r"step 1 \(rollback\)") as err:
        run_scenario(sc, profile="mcu-qspi", out_dir=tmp_path, base_dir=work)
    assert err.value.step == 1 and not err.value.report["completed"]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["failed"]["step"] == 1 and saved["steps"][1]["outcome"] == "error"
    assert (tmp_path / "timeline.png").exists() and (tmp_path / "trace.json").exists()
    # an expected error that does not happen is a failure too
    sc = _with_step({"kind": "install", "package": "A2", "expect_error": "SignatureError"})
    with pytest.raises(ScenarioStepFailed, match="expected SignatureError, but the step succeeded"):
        run_scenario(sc, profile="mcu-qspi", out_dir=tmp_path, base_dir=work)


def test_durations():
    assert [parse_duration(v, "at") for v in (3, "250ms", "5s", "10min", "6h", "06:30", "1:00:01.5")] == \
        [3.0, 0.25, 5.0, 600.0, 21600.0, 23400.0, 3601.5]
    for bad in (-1, "tomorrow", True, "25:61"):
        with pytest.raises(ScenarioFormatError):
            parse_duration(bad, "at")


# ------------------------------------------------------------------------------ command line

def test_cli_sim_runs_a_scenario_file(work, tmp_path, capsys):
    path = work / "every-step.json"
    path.write_text(json.dumps(scenario()))
    assert main(["sim", str(path), "--profile", "mcu-ram", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "step 20 reboot" in out and "summary" in out and "accuracy  __base__" in out
    for name in ("report.json", "trace.json", "timeline.png", "flash_ops.png"):
        assert f"wrote     {tmp_path / name}" in out
    assert json.loads((tmp_path / "report.json").read_text())["profile"]["name"] == "mcu-ram"


def test_cli_sim_errors_are_tinyswap_errors(work, tmp_path, capsys):
    assert main(["sim", str(tmp_path / "absent.json"), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("tinyswap: error: cannot read scenario")
    bad = copy.deepcopy(scenario())
    bad["steps"][3]["kind"] = "inferr"
    path = work / "bad.json"
    path.write_text(json.dumps(bad))
    assert main(["sim", str(path), "--out", str(tmp_path)]) == 2
    assert "tinyswap: error: step 3: field 'kind': unknown step kind 'inferr'" in capsys.readouterr().err


def test_the_committed_example_runs_from_a_fresh_checkout(tmp_path, capsys):
    """models/digits/scenarios/day.json: compiled and packed at run time (its `build` section)."""
    assert main(["sim", str(DAY), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "packages signed with a throwaway key" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["completed"] and report["profile"]["name"] == "mcu-qspi"
    acc = {(a["adapter"], a["dataset"]): a["accuracy"] for a in report["accuracy"]}
    assert acc[("__base__", "invert")] < 0.05 and acc[("cnn-invert@1.0.0", "invert")] > 0.95
    assert acc[("cnn-rot90@1.0.0", "rot90")] > 0.9 and acc[("__base__", "original")] > 0.95
    arms = report["experiments"]["sensor-adapter"]
    assert arms["cnn-sensor"]["mean"] > arms["__base__"]["mean"] + 0.1
    steps = report["steps"]
    lost = [s for s in steps if s["outcome"] == "power lost"]
    assert len(lost) == 1 and lost[0]["flash"]["model"]["program_ops"] > 0  # cut inside the slot write
    after = steps[lost[0]["index"] + 1]
    assert after["kind"] == "reboot" and after["active_after"]["cnn-invert"]["version"] == "1.0.0"
    assert any(b["reverted"] for b in report["boots"])
    assert [s["outcome"] for s in steps].count("expected error") == 1
    assert report["budget"]["flash"]["model"]["base_sector_erases_during_run"] == 0
