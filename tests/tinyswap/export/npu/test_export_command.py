"""`tinyswap export --npu CONFIG`: the bundle files, and the refusals (no Vela, unknown config)."""

from __future__ import annotations

import hashlib
import json

import pytest

from tinyswap.cli import main
from tinyswap.export.npu import vela as vela_module
from tinyswap.export.npu.errors import NpuConfigError, VelaNotInstalledError

from tests.conftest import REPO

SPEC = REPO / "models" / "digits" / "cnn.json"
PLAN = REPO / "models" / "digits" / "cnn.plan.json"


def _export(out, config: str) -> int:
    return main(["export", str(SPEC), "--plan", str(PLAN), "-o", str(out), "--npu", config])


def test_missing_vela_is_a_typed_error_naming_the_extra_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(vela_module, "vela_version", lambda: None)
    with pytest.raises(VelaNotInstalledError, match=r"tinyswap\[npu\]"):
        from tinyswap.export.npu.vela import require_vela

        require_vela()
    assert _export(tmp_path / "b", "ethos-u55-128") != 0
    assert not (tmp_path / "b").exists()


def test_unknown_configuration_is_refused_before_anything_is_written(tmp_path):
    pytest.importorskip("ethosu.vela")
    from tinyswap.export.npu.config import NpuConfig

    with pytest.raises(NpuConfigError, match="ethos-u55-128, ethos-u55-256, ethos-u65-256, ethos-u85-256"):
        NpuConfig.parse("ethos-u55-64")
    assert _export(tmp_path / "b", "ethos-u55-64") != 0
    assert not (tmp_path / "b").exists()


def test_export_writes_the_npu_bundle_with_its_twin_and_segments(tmp_path, capsys):
    pytest.importorskip("ethosu.vela")
    out = tmp_path / "b"
    assert _export(out, "ethos-u55-128") == 0
    said = capsys.readouterr().out
    assert "ethos-u operators" in said and "NPU/CPU transitions" in said
    npu = json.loads((out / "npu.json").read_text())
    model = (out / "model.tflite").read_bytes()
    assert npu["config"] == "ethos-u55-128" and npu["model_sha256"] == hashlib.sha256(model).hexdigest()
    assert npu["twin_sha256"] == hashlib.sha256((out / "twin.tflite").read_bytes()).hexdigest()
    for seg in npu["segments"]:
        given = (out / "npu" / f"segment{seg['index']}.tflite").read_bytes()
        returned = (out / "npu" / f"segment{seg['index']}_vela.tflite").read_bytes()
        assert hashlib.sha256(given).hexdigest() == seg["segment_sha256"]
        assert hashlib.sha256(returned).hexdigest() == seg["vela_sha256"]
    for span in npu["vela_spans"]:
        assert hashlib.sha256(model[span["offset"] : span["offset"] + span["length"]]).hexdigest() == span["sha256"]
    smap = json.loads((out / "slotmap.json").read_text())
    assert smap["model_bytes"] == len(model) and smap["num_slots"] == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["arena"]["measured"] is False and "ethos-u" in manifest["arena"]["method"].lower()
