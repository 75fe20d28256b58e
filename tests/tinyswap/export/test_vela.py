"""Arm's Vela (ethos-u-vela, the `npu` extra) on a whole slotted bundle: why `export --npu` exists.

Compiled whole, every operator of a slotted bundle lands on the NPU and the gate inputs survive,
but the slot tensors do not: Vela re-encodes every weight into its `ethos-u` operator, so writing
an adapter changes Vela's output (a recompile and a reflash per adapter). The Ethos-U bundle that
keeps slots as plain buffers is tested in `tests/tinyswap/export/npu/`. CI installs the extra.
Measured 2026-12-02 with Vela 5.2.0 on models/examples/cnn (2 slots, LoRA + bottleneck):
24 of 24 operators on the NPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ethosu.vela")

from tinyswap.cli import main  # noqa: E402
from tinyswap.export.npu.config import NpuConfig  # noqa: E402
from tinyswap.export.npu.cost import with_dense_adapter  # noqa: E402
from tinyswap.export.npu.vela import compile_with_vela  # noqa: E402
from tinyswap.reader import read_model  # noqa: E402

from tests.conftest import REPO  # noqa: E402
from tests.npu_cases import base_only, source  # noqa: E402


def test_vela_compiles_a_bundle_and_maps_every_op_to_the_npu(tmp_path: Path) -> None:
    bundle = tmp_path / "cnn"
    assert main(["export", str(REPO / "models/examples/cnn.json"), "--plan", str(REPO / "models/examples/cnn.plan.json"),
                 "-o", str(bundle)]) == 0
    run = compile_with_vela((bundle / "model.tflite").read_bytes(), NpuConfig.U55_128, "model")
    assert run.cpu_operators == 0 and run.npu_operators == 1
    compiled = read_model(run.output)
    names = {t.name for t in compiled.main.tensors}
    # The gates survive as graph inputs; the slot tensors do not: Vela re-encodes every weight.
    assert {"gate_0", "gate_1"} <= names
    assert not any(n.startswith("slot") for n in names)


def test_an_adapter_in_a_whole_compiled_bundle_means_a_new_vela_output():
    compiled = source("examples-cnn")
    empty = compile_with_vela(compiled.data, NpuConfig.U55_128, "empty")
    adapted = compile_with_vela(with_dense_adapter(compiled), NpuConfig.U55_128, "adapted")
    assert empty.cpu_operators == adapted.cpu_operators == 0
    # The compressed weight stream grows (zero slots compress away) and so does the file.
    assert adapted.summary.encoded_weight_bytes > empty.summary.encoded_weight_bytes
    assert len(adapted.output) > len(empty.output)
    # Inactive slots are computed too: Vela counts their MACs on the NPU.
    base = compile_with_vela(base_only("examples-cnn").data, NpuConfig.U55_128, "base")
    assert adapted.summary.macs == empty.summary.macs > base.summary.macs
