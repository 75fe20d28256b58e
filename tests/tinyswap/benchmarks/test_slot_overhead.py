"""`tinyswap bench --slots`: MACs and invoke times of slot-free, always-run and conditional
branches, the rows checked against the cost report and against what the configurations mean."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tinyswap.benchmarks import slot_overhead
from tinyswap.cli import main
from tinyswap.export.compiler import compile_model
from tinyswap.export.slot_plan import SlotPlan, SlotTarget
from tinyswap.export.spec import load_spec
from tinyswap.model_cost import model_cost

from tests.conftest import REPO

DIGITS = REPO / "models" / "digits"


def _head_case() -> slot_overhead.Case:
    spec, cal = load_spec(DIGITS / "cnn.json"), np.load(DIGITS / "cnn.calibration.npy")
    plan = SlotPlan((SlotTarget("fc", "lora", 8),), num_slots=2)
    return slot_overhead.Case("head", compile_model(spec, None, cal).data, plan, lambda p: compile_model(spec, p, cal))


def test_rows_follow_the_configurations(tmp_path) -> None:
    case = _head_case()
    report = slot_overhead.run(tmp_path, repeats=2, progress=lambda line: None, cases=[case], arena=False)
    rows = report.rows
    assert [(r.configuration, r.active) for r in rows] == [("slot-free", None), ("always", 2), ("conditional", 0),
                                                            ("conditional", 1), ("conditional", 2)]
    free = model_cost(case.free).macs_per_row
    always = model_cost(case.build(dataclasses.replace(case.plan, branches="always")).data).macs_per_row
    per_slot = (always - free) // 2
    assert per_slot == 256 * 8 + 8 * 10  # A: fan-in 256 x rank 8, B: rank 8 x 10 outputs
    assert [r.macs for r in rows] == [free, always, free, free + per_slot, always]
    assert rows[3].macs_over_free == pytest.approx(per_slot / free) and rows[3].macs_over_free <= 0.10
    assert all(r.tinyswap_ms > 0 and r.tflm_ms > 0 and r.tflm_arena is None for r in rows)
    saved = json.loads((tmp_path / "bench_slots.json").read_text())
    assert saved["rows"][3]["macs"] == free + per_slot
    assert "| head | conditional | 1 of 2 |" in (tmp_path / "bench_slots.md").read_text()


def test_the_flag_reaches_the_benchmark(tmp_path, monkeypatch, capsys) -> None:
    calls = []
    monkeypatch.setattr(slot_overhead, "run", lambda out, repeats: calls.append((out, repeats))
                        or slot_overhead.SlotOverheadReport("2026-01-01", "test machine", []))
    assert main(["bench", "--slots", "--repeats", "3", "--out", str(tmp_path)]) == 0
    assert calls == [(tmp_path, 3)] and "Measured 2026-01-01 on test machine" in capsys.readouterr().out


def test_a_rank_8_head_on_the_mobilenet_style_model_adds_its_lora_and_nothing_else() -> None:
    (case,) = [c for c in slot_overhead.default_cases() if c.name == "MobileNet-style (converted, rank-8 head)"]
    free = model_cost(case.free).macs_per_row
    always = model_cost(case.build(dataclasses.replace(case.plan, branches="always")).data).macs_per_row
    per_slot = (always - free) // 2
    assert per_slot == 32 * 8 + 8 * 10  # A: the classifier's 32 inputs x rank 8, B: rank 8 x 10 classes
    assert per_slot / free <= 0.10
