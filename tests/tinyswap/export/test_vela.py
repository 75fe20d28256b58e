"""Arm's Vela (ethos-u-vela, the `npu` extra) compiles an exported bundle for Ethos-U55-128.

Not installed in CI (skipped there); run by hand with the extra installed. Measured
2026-11-22 with Vela 5.2.0 on models/examples/cnn (2 slots, LoRA + bottleneck): 24 of 24
operators on the NPU; models/examples/mlp: 55 of 55.
"""

from __future__ import annotations

import shutil
import sys
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("ethosu.vela")

from tinyswap.cli import main  # noqa: E402
from tinyswap.reader import read_model  # noqa: E402

from tests.conftest import REPO  # noqa: E402


def test_vela_compiles_a_bundle_and_maps_every_op_to_the_npu(tmp_path: Path) -> None:
    bundle = tmp_path / "cnn"
    assert main(["export", str(REPO / "models/examples/cnn.json"), "--plan", str(REPO / "models/examples/cnn.plan.json"),
                 "-o", str(bundle)]) == 0
    # The console script sits beside this interpreter (the venv's bin/), whether or not the
    # venv is activated.
    vela = shutil.which("vela", path=str(Path(sys.executable).parent)) or shutil.which("vela")
    assert vela, "the vela command comes with ethos-u-vela"
    done = subprocess.run([vela, str(bundle / "model.tflite"), "--accelerator-config", "ethos-u55-128",
                           "--output-dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "CPU operators = 0" in done.stdout
    compiled = read_model((tmp_path / "out" / "model_vela.tflite").read_bytes())
    names = {t.name for t in compiled.main.tensors}
    # The gates survive as graph inputs; the slot tensors do not: Vela re-encodes every weight.
    assert {"gate_0", "gate_1"} <= names
    assert not any(n.startswith("slot") for n in names)
