"""The scenario `train` step on the digits CNN: what report.json says (`on_device_training`),
its progress line, and its refusals as expected errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tinyswap.commands.digits import DIGITS, compile_digits
from tinyswap.firmware_sim.scenario import run_scenario
from tinyswap.firmware_sim.scenario.errors import ScenarioFormatError

from tests.tinyswap.firmware_sim.training_cases import VENDOR_KEY


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("work")
    compile_digits("cnn", root / "bundle")
    (root / "key.pub.pem").write_bytes(VENDOR_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return root


def day(*steps: dict) -> dict:
    return {"format": "tinyswap-scenario", "version": 1, "name": "train", "bundle": "bundle",
            "keyring": ["key.pub.pem"],
            "datasets": {"mirror": {"path": str(DIGITS / "digits_test.npz"), "x": "mirror", "y": "labels",
                                    "scale": 0.0625}},
            "steps": list(steps)}


def run(work: Path, tmp_path: Path, *steps: dict) -> dict:
    return run_scenario(day(*steps), profile="mcu-qspi", out_dir=tmp_path / "out", base_dir=work)


def test_a_train_step_reports_its_aggregates_and_its_adapter_serves_the_user(work, tmp_path) -> None:
    lines: list[str] = []
    report = run_scenario(day(
        {"kind": "train", "user": "bea", "dataset": "mirror", "rows": 100, "start": 0, "epochs": 30},
        {"kind": "infer", "dataset": "mirror", "rows": 440, "start": 100, "adapters": "personal-bea", "tenant": "bea"},
        {"kind": "infer", "dataset": "mirror", "rows": 440, "start": 100, "adapters": "__base__"},
        {"kind": "train", "user": "bea", "dataset": "mirror", "rows": 100, "epochs": 30, "mislabelled": True},
    ), profile="mcu-qspi", out_dir=tmp_path / "out", base_dir=work, progress=lines.append)
    entry, careless = report["on_device_training"]
    assert entry["step"] == 0 and entry["user"] == "bea" and entry["samples"] == 100 and entry["confirmed"]
    assert entry["accuracy_after"] >= entry["accuracy_before"] + 0.10
    assert entry["peak_ram_bytes"] == entry["ram"]["total"] <= 64 * 1024
    assert 0 < entry["simulated_seconds"] < 60
    assert report["steps"][0]["result"]["package_digest"] == entry["package_digest"]
    assert report["final"]["adapters"]["personal-bea"]["current"] == entry["package_digest"]
    by = {(a["adapter"], a["dataset"]): a["accuracy"] for a in report["accuracy"]}
    assert by[("personal-bea@1.0.0", "mirror")] >= by[("__base__", "mirror")] + 0.15
    assert any("step  0 train     personal-bea v1 from 100 local samples of mirror" in line and "confirmed" in line
               for line in lines)
    # the mislabelled retraining (labels shuffled) is measured against her version and reverted
    assert careless["replaced"] == "personal-bea" and not careless["confirmed"] and careless["sequence"] == 2
    assert report["final"]["adapters"]["personal-bea"]["current"] == entry["package_digest"]
    assert not report["final"]["trial"]
    assert any("step  3 train     personal-bea v2" in line and "reverted by the confirm gate" in line for line in lines)


def test_train_refusals_are_expected_errors_that_write_nothing(work, tmp_path) -> None:
    report = run(work, tmp_path,
                 {"kind": "train", "user": "bea", "dataset": "mirror", "rows": 100, "budget": 16384,
                  "expect_error": "TrainingMemoryError"},
                 {"kind": "train", "user": "bea", "dataset": "mirror", "rows": 100, "start": 500,
                  "expect_error": "TrainingConfigError"},
                 {"kind": "train", "user": "bea", "dataset": "mirror", "rows": 20, "rank": 9,
                  "expect_error": "TrainingConfigError"})
    assert [s["outcome"] for s in report["steps"]] == ["expected error"] * 3
    assert all(s["mutating_ops"] == 0 for s in report["steps"])
    assert report["on_device_training"] == []
    assert "budget of 16384" in report["steps"][0]["error"]


@pytest.mark.parametrize("field,value", [("rows", 5), ("rows", 2000), ("budget", 0), ("epochs", 0)])
def test_train_fields_are_checked_before_the_run(work, tmp_path, field, value) -> None:
    step = {"kind": "train", "user": "bea", "dataset": "mirror", field: value}
    with pytest.raises(ScenarioFormatError, match=field):
        run(work, tmp_path, step)
