"""Refusals of bad scenarios: one typed error naming the step index, the kind and the field,
raised before anything runs on the device."""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap.errors import TinySwapError
from tinyswap.firmware_sim.scenario import (
    STEP_KINDS,
    ScenarioFileError,
    ScenarioFormatError,
    parse_duration,
    run_scenario,
    validate_scenario,
)
from tinyswap.firmware_sim.scenario import runner

from tests.tinyswap.firmware_sim.scenario.scenario_cases import scenario, with_step


@pytest.mark.parametrize("step, field, text", [
    # unknown kinds, and the known ones listed
    ({"kind": "teleport"}, "kind", "unknown step kind 'teleport' (known: ['activate', 'confirm', 'delete'"),
    ({"kind": 7}, "kind", "unknown step kind 7"),
    ({"package": "A1"}, "kind", "'kind' is missing (one of ['activate'"),
    # extra and missing fields
    ({"kind": "install", "package": "A1", "pakage": "A2"}, "pakage", "not a field of a 'install' step"),
    ({"kind": "confirm", "permanent": True}, "permanent", "not a field of a 'confirm' step"),
    ({"kind": "rollback"}, "name", "'name': is missing"),
    ({"kind": "install"}, "package", "'package': is missing"),
    ({"kind": "wait"}, "seconds", "'seconds': is missing"),
    ({"kind": "infer", "rows": 4}, "dataset", "'dataset': is missing"),
    ({"kind": "power_cut", "when": "before"}, "op", "'op': is missing"),
    # wrong types
    ({"kind": "update", "package": 3}, "package", "a package label"),
    ({"kind": "update", "package": "A1", "permanent": "yes"}, "permanent", "true or false"),
    ({"kind": "rollback", "name": ""}, "name", "a non-empty string"),
    ({"kind": "install", "package": "A1", "note": 5}, "note", "must be a string"),
    ({"kind": "install", "package": "A1", "expect_error": ["X"]}, "expect_error", "a non-empty string"),
    ({"kind": "activate", "adapters": 7}, "adapters", "adapter name"),
    ({"kind": "activate", "adapters": {"A": True}}, "adapters", "adapter name"),
    ({"kind": "infer", "dataset": "rows", "rows": "4"}, "rows", "an integer >= 1"),
    ({"kind": "infer", "dataset": "rows", "rows": True}, "rows", "an integer >= 1"),
    ({"kind": "infer", "dataset": "rows", "per_row": []}, "per_row", "non-empty list of adapter specs"),
    ({"kind": "infer", "dataset": "rows", "requests": [{"user": 1}]}, "requests[0].user", "a string"),
    ({"kind": "infer", "dataset": "rows", "requests": [{"who": "x"}]}, "requests[0].who", "unknown request field"),
    ({"kind": "infer", "dataset": "rows", "requests": [{"context": []}]}, "requests[0].context", "a JSON object"),
    ({"kind": "wait", "seconds": "soon"}, "seconds", "not a time"),
    ({"kind": "install", "package": "A1", "at": "25:61"}, "at", "not a time"),
    ({"kind": "power_cut", "when": "sometimes"}, "when", "one of"),
    # out of range
    ({"kind": "infer", "dataset": "rows", "rows": 0}, "rows", "an integer >= 1"),
    ({"kind": "infer", "dataset": "rows", "rows": 10**9}, "rows", "<= 1,000,000"),
    ({"kind": "infer", "dataset": "rows", "batch": 0}, "batch", "an integer >= 1"),
    ({"kind": "infer", "dataset": "rows", "start": -1}, "start", "an integer >= 0"),
    ({"kind": "power_cut", "when": "before", "op": 0}, "op", "an integer >= 1"),
    ({"kind": "wait", "seconds": -1}, "seconds", "not a time"),
    ({"kind": "wait", "seconds": "9" * 400 + "h"}, "seconds", "ten years"),
    ({"kind": "wait", "seconds": float("nan")}, "seconds", "not a time"),
    # labels and rules across fields and steps
    ({"kind": "update", "package": "Z9"}, "package", "no package labelled 'Z9'"),
    ({"kind": "infer", "dataset": "nope"}, "dataset", "no dataset labelled 'nope'"),
    ({"kind": "infer", "requests": [{"dataset": "nope"}]}, "requests[0].dataset", "no dataset labelled 'nope'"),
    ({"kind": "infer", "requests": [{"user": "a"}]}, "dataset", "request 0 names no dataset"),
    ({"kind": "infer", "dataset": "rows", "requests": [{"user": "a"}], "tenant": "t"}, "tenant", "their own tenant"),
    ({"kind": "infer", "dataset": "rows", "adapters": "A", "per_row": ["A"]}, "per_row", "at most one"),
    ({"kind": "power_cut", "when": "before", "op": 2}, "when", "needs a next step"),
    ({"kind": "power_cut", "op": 2}, "op", "only for a cut at an operation"),
    ({"kind": "power_cut", "when": "after", "op": 2, "keep": 1}, "keep", "only for when: torn"),
])
def test_bad_steps_are_refused_with_the_step_kind_and_field_named(work, tmp_path, step, field, text):
    with pytest.raises(ScenarioFormatError) as err:
        run_scenario(with_step(step), profile="mcu-qspi", out_dir=tmp_path, base_dir=work)
    assert err.value.step == 1 and err.value.field == field
    if isinstance(step.get("kind"), str) and step["kind"] in STEP_KINDS:
        assert err.value.kind == step["kind"] and str(err.value).startswith(f"step 1 ({step['kind']}): ")
    assert str(err.value).startswith("step 1") and text in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "report.json").exists()  # refused before anything ran


def test_a_cut_needs_a_next_step_that_writes_flash():
    for following in ({"kind": "wait", "seconds": 1}, {"kind": "power_cut"}):
        sc = with_step({"kind": "power_cut", "when": "torn", "op": 1})
        sc["steps"].append(following)
        with pytest.raises(ScenarioFormatError, match="needs a next step") as err:
            validate_scenario(sc)
        assert (err.value.step, err.value.kind, err.value.field) == (1, "power_cut", "when")


def test_a_step_that_is_not_an_object():
    sc = scenario()
    sc["steps"][2] = ["install"]
    with pytest.raises(ScenarioFormatError, match="step 2: a step is a JSON object, got list") as err:
        validate_scenario(sc)
    assert err.value.step == 2


def test_unknown_top_level_field_and_profile(work, tmp_path):
    with pytest.raises(ScenarioFormatError, match="unknown field 'stepz'") as err:
        validate_scenario({**scenario(), "stepz": []})
    assert err.value.step is None and err.value.field == "stepz"
    with pytest.raises(ScenarioFormatError, match="unknown device profile"):
        run_scenario(scenario(), profile="toaster", out_dir=tmp_path, base_dir=work)


@pytest.mark.parametrize("changes, field", [
    ({"format": "other"}, "format"),
    ({"version": 2}, "format"),
    ({"steps": []}, "steps"),
    ({"steps": "install"}, "steps"),
    ({"packages": ["A1"]}, "packages"),
    ({"packages": {"A1": 1}}, "packages['A1']"),
    ({"name": 3}, "name"),
    ({"keyring": [1]}, "keyring"),
    ({"device": {"store_bytes": 0}}, "device.store_bytes"),
    ({"device": {"store_bytes": 10**15}}, "device.store_bytes"),  # the simulator would allocate it
    ({"datasets": {"d": {"path": "x.npz", "scale": float("nan")}}}, "datasets['d'].scale"),
    ({"datasets": {"d": {"path": "x.npz", "scale": float("inf")}}}, "datasets['d'].scale"),
    ({"datasets": {"d": {"path": "x.npz", "scale": 0}}}, "datasets['d'].scale"),
    ({"device": {"worst": 1}}, "device.worst"),
    ({"device": {"turbo": True}}, "device.turbo"),
    ({"router": {"rules": [{"adapter": 1}]}}, "router.rules[0]"),
    ({"router": {"experiments": [{"name": "x"}]}}, "router.experiments[0]"),
    ({"router": {"routes": []}}, "router.routes"),
    ({"datasets": {"d": {"path": "x.npz", "z": 1}}}, "datasets['d'].z"),
    ({"datasets": {"d": {"path": "x.npz", "scale": "big"}}}, "datasets['d']"),
    ({"datasets": {"d": 3}}, "datasets['d']"),
])
def test_bad_top_level_fields_are_named(changes, field):
    with pytest.raises(ScenarioFormatError) as err:
        validate_scenario(scenario(**changes))
    assert err.value.step is None and err.value.field == field
    assert str(err.value).startswith("scenario")
    with pytest.raises(ScenarioFormatError, match="a scenario is a JSON object"):
        validate_scenario([])  # type: ignore[arg-type]


def test_missing_files_are_named_with_the_step_that_uses_them(work, tmp_path):
    sc = with_step({"kind": "update", "package": "A2"})
    sc["packages"]["A2"] = "pkgs/missing.tsap"
    with pytest.raises(ScenarioFileError, match=r"step 1 \(update\): package 'A2' -> .*missing.tsap") as err:
        run_scenario(sc, profile="mcu-qspi", out_dir=tmp_path, base_dir=work)
    assert err.value.step == 1 and err.value.field == "package" and err.value.kind == "update"
    sc = with_step({"kind": "infer", "dataset": "gone"}, datasets={"gone": "nothing.npz"})
    with pytest.raises(ScenarioFileError, match=r"step 1 \(infer\): dataset 'gone'") as err:
        run_scenario(sc, profile="mcu-qspi", out_dir=tmp_path, base_dir=work)
    assert err.value.step == 1
    sc = with_step({"kind": "infer", "requests": [{"dataset": "gone"}]}, datasets={"gone": "nothing.npz"})
    with pytest.raises(ScenarioFileError, match=r"step 1 \(infer\): dataset 'gone'"):
        run_scenario(sc, profile="mcu-qspi", out_dir=tmp_path, base_dir=work)
    with pytest.raises(ScenarioFileError, match="keyring"):
        run_scenario(scenario(keyring="keys/none.pem"), profile="mcu-qspi", out_dir=tmp_path, base_dir=work)
    with pytest.raises(ScenarioFileError, match="bundle"):
        run_scenario(scenario(bundle="pkgs"), profile="mcu-qspi", out_dir=tmp_path, base_dir=work)
    with pytest.raises(ScenarioFormatError, match="'bundle' is missing"):
        run_scenario({k: v for k, v in scenario().items() if k != "bundle"}, profile="mcu-qspi", out_dir=tmp_path,
                     base_dir=work)
    with pytest.raises(ScenarioFormatError, match="resolved by the `tinyswap sim` command"):
        run_scenario(scenario(build={}), profile="mcu-qspi", out_dir=tmp_path, base_dir=work)


def test_everything_is_checked_before_the_device_is_built(work, tmp_path, monkeypatch):
    """Validate completely, then run: files, dataset shapes and the router are checked before
    a device exists, so a bad scenario never touches (simulated) flash."""
    def no_device(*args, **kwargs):
        raise AssertionError("the device was built before the scenario was fully checked")

    monkeypatch.setattr(runner, "Device", no_device)
    np.savez(tmp_path / "wide.npz", x=np.zeros((4, 3), np.float32))
    cases = [
        (scenario(datasets={"rows": str(tmp_path / "wide.npz")}), ScenarioFormatError, "do not fit the model input"),
        (scenario(router={"experiments": [{"name": "ab", "arms": {"A": 70, "B": 70}}]}), ScenarioFormatError,
         "router.experiments"),
        (scenario(packages={**scenario()["packages"], "bad": "pkgs/none.tsap"}), ScenarioFileError, "package 'bad'"),
    ]
    for sc, error, text in cases:
        with pytest.raises(error, match=text):
            run_scenario(sc, profile="mcu-qspi", out_dir=tmp_path / "out", base_dir=work)
    assert not (tmp_path / "out").exists()


def test_durations():
    assert [parse_duration(v, "at") for v in (3, "250ms", "5s", "10min", "6h", "06:30", "1:00:01.5")] == \
        [3.0, 0.25, 5.0, 600.0, 21600.0, 23400.0, 3601.5]
    for bad in (-1, "tomorrow", True, "25:61", None, float("inf"), float("nan"), [1]):
        with pytest.raises(ScenarioFormatError):
            parse_duration(bad, "at")


def test_every_scenario_error_is_a_tinyswap_error():
    assert issubclass(ScenarioFormatError, TinySwapError) and issubclass(ScenarioFileError, TinySwapError)


def test_the_whole_scenario_is_typed_past_the_json_boundary():
    from tinyswap.firmware_sim.scenario.validate import DatasetSpec, DeviceOptions, RuleSpec, parse_scenario

    spec = parse_scenario(scenario(device={"worst": True}, keyring="keys/key.pub.pem",
                                   datasets={"rows": {"path": "rows.npz", "y": None, "scale": 2}}))
    assert spec.name == "every-step" and spec.description is None and spec.bundle == "bundle"
    assert spec.keyring == ("keys/key.pub.pem",) and spec.packages["A1"] == "pkgs/A1.tsap"
    assert spec.datasets == {"rows": DatasetSpec("rows.npz", "x", None, 2)}
    assert spec.rules == (RuleSpec({"user": "bob"}, "B"),)
    assert spec.experiments[0].name == "ab" and spec.experiments[0].key == "user"
    assert spec.device == DeviceOptions(worst=True) and spec.device.store_bytes == 256 * 1024
    assert len(spec.steps) == 22 and validate_scenario(scenario()) == list(parse_scenario(scenario()).steps)


@pytest.mark.parametrize("where", ["packages", "keyring", "datasets"])
def test_device_nodes_named_as_files_are_refused_unread(work, tmp_path, where):
    import os

    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero on this system")
    changes = {"packages": {"packages": {**scenario()["packages"], "A1": "/dev/zero"}},
               "keyring": {"keyring": ["/dev/zero"]}, "datasets": {"datasets": {"rows": "/dev/zero"}}}[where]
    with pytest.raises(ScenarioFileError, match="/dev/zero: not a regular file"):
        run_scenario(scenario(**changes), profile="mcu-qspi", out_dir=tmp_path / "out", base_dir=work)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("arrays, text", [
    ({"x": np.full((2, 256), "a")}, "rows must be numbers"),
    ({"x": np.full((2, 256), np.nan, np.float32)}, "NaN or infinite"),
    ({"x": np.full((2, 256), np.inf, np.float32)}, "NaN or infinite"),
    ({"x": np.zeros((2, 256), np.float32), "y": np.array(["a", "b"])}, "labels must be finite numbers"),
    ({"x": np.zeros((2, 256), np.float32), "y": np.array([0.5, 1.0])}, "labels are class indices"),
])
def test_hostile_dataset_contents_are_format_errors(work, tmp_path, arrays, text):
    np.savez(tmp_path / "bad.npz", **arrays)
    sc = scenario(datasets={"rows": str(tmp_path / "bad.npz")})
    with pytest.raises(ScenarioFormatError, match=text):
        run_scenario(sc, profile="mcu-qspi", out_dir=tmp_path / "out", base_dir=work)
