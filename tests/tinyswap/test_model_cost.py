"""The cost report: base MACs equal the slot-free model's, each slot adds its own branch.

The independent derivations: the same spec compiled without slots (its MACs are the base's),
and with two slots (base + two slots' branches) beside three; hand-counted MACs of the digits MLP.
"""

from __future__ import annotations

import json

import numpy as np

from tinyswap.cli import main
from tinyswap.export.bundle import slot_map
from tinyswap.export.compiler import compile_model
from tinyswap.export.slot_plan import SlotPlan
from tinyswap.export.spec import load_spec
from tinyswap.model_cost import model_cost, slot_cost_report

from tests.conftest import REPO

DIGITS = REPO / "models" / "digits"


def _compiled(model: str, num_slots: int | None):
    spec = load_spec(DIGITS / f"{model}.json")
    calibration = np.load(DIGITS / f"{model}.calibration.npy")
    plan = None
    if num_slots is not None:
        raw = json.loads((DIGITS / f"{model}.plan.json").read_text())
        raw["num_slots"] = num_slots
        plan = SlotPlan.from_json(raw)
    return compile_model(spec, plan, calibration)


def test_base_and_per_slot_macs_match_models_compiled_with_fewer_slots() -> None:
    for model in ("mlp", "cnn"):
        free = _compiled(model, None)
        two = _compiled(model, 2)  # plans need S >= 2: three slots, checked against two and none
        three = _compiled(model, 3)
        report = slot_cost_report(three.data, slot_map(three))
        assert report.base_macs == model_cost(free.data).macs_per_row
        assert report.macs_with_slots[2] == model_cost(two.data).macs_per_row
        assert report.total_macs == report.macs_with_slots[3] == model_cost(three.data).macs_per_row
        assert report.slot_macs[0] == report.slot_macs[1] == report.slot_macs[2] > 0
        assert report.flash_base_bytes + report.flash_slot_bytes == len(three.data)
        assert report.slot_payload_bytes <= report.flash_slot_bytes


def test_the_digits_mlp_base_macs_by_hand() -> None:
    # 64 -> 64 -> 32 -> 10 fully connected: one MAC per weight.
    assert slot_cost_report(_compiled("mlp", None).data, None).base_macs == 64 * 64 + 64 * 32 + 32 * 10


def test_the_manifest_and_inspect_report_the_cost(tmp_path, capsys) -> None:
    out = tmp_path / "bundle"
    assert main(["export", str(DIGITS / "mlp.json"), "--plan", str(DIGITS / "mlp.plan.json"), "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    two = _compiled("mlp", 2)
    assert manifest["cost"] == slot_cost_report(two.data, slot_map(two)).to_json()
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cost"] == manifest["cost"]
    latency = info["latency_ms"]["mcu-qspi"]
    assert 0 < latency["base"] < latency["compiled"]
