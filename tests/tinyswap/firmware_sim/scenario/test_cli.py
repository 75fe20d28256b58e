"""`tinyswap sim` on scenario files: output, typed errors as one line, and the committed
examples (models/digits/scenarios/), which build their own bundle and packages."""

from __future__ import annotations

import copy
import json

from tinyswap.cli import main
from tinyswap.firmware_sim.scenario import load_scenario, validate_scenario

from tests.tinyswap.firmware_sim.scenario.scenario_cases import DAY, DEMO, scenario


def test_cli_sim_runs_a_scenario_file(work, tmp_path, capsys):
    path = work / "every-step.json"  # relative paths resolve against the scenario file's folder
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
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    assert main(["sim", str(path), "--out", str(tmp_path)]) == 2
    assert "tinyswap: error: step 3: field 'kind': unknown step kind 'inferr'" in capsys.readouterr().err


def test_cli_sim_bad_files_give_one_line(tmp_path, capsys):
    (tmp_path / "binary.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    (tmp_path / "text.json").write_text("steps: [install]\n")
    for path, text in ((tmp_path, "is a directory"), (tmp_path / "binary.json", "is not UTF-8 text"),
                       (tmp_path / "text.json", "is not valid JSON")):
        assert main(["sim", str(path), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("tinyswap: error: ") and text in err and err.count("\n") == 1, err
        assert "Traceback" not in err


def test_the_committed_scenarios_are_valid():
    for path in (DAY, DEMO):
        steps = validate_scenario(load_scenario(path))
        assert len(steps) > 20 and steps[0].kind == "infer"


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
