"""Ethos-U runs no IF: the NPU back end refuses a slot plan with conditional branches, before it
compiles or writes anything, naming the plan field to change."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyswap.cli import main
from tinyswap.export.compiler import compile_model
from tinyswap.export.npu.bundle import build_npu_bundle
from tinyswap.export.npu.errors import ConditionalBranchesError, NpuError
from tinyswap.export.slot_plan import SlotPlan
from tinyswap.export.spec import load_spec

from tests.conftest import REPO

DIGITS = REPO / "models" / "digits"


def _conditional_plan_file(tmp_path):
    raw = json.loads((DIGITS / "cnn.plan.json").read_text())
    raw["branches"] = "conditional"
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(raw))
    return path


def test_build_refuses_a_conditional_model(tmp_path):
    plan = SlotPlan.load(_conditional_plan_file(tmp_path))
    compiled = compile_model(load_spec(DIGITS / "cnn.json"), plan, np.load(DIGITS / "cnn.calibration.npy"))
    with pytest.raises(ConditionalBranchesError, match="branches") as caught:
        build_npu_bundle(compiled, "ethos-u55-128")
    assert isinstance(caught.value, NpuError)


def test_the_export_command_refuses_before_writing(tmp_path, capsys):
    out = tmp_path / "bundle"
    status = main(["export", str(DIGITS / "cnn.json"), "--plan", str(_conditional_plan_file(tmp_path)), "-o", str(out),
                   "--npu", "ethos-u55-128"])
    assert status != 0 and not out.exists()
    assert "conditional" in capsys.readouterr().err
