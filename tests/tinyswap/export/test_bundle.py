"""`tinyswap export` writes a complete bundle; `tinyswap inspect` shows its slots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyswap import Interpreter
from tinyswap.cli import main
from tinyswap.oracles import run_tflm

from tests.conftest import REPO

EXAMPLES = REPO / "models" / "examples"


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_export_writes_a_bundle_that_runs(name: str, tmp_path, capsys) -> None:
    out = tmp_path / name
    assert main(["export", str(EXAMPLES / f"{name}.json"), "--plan", str(EXAMPLES / f"{name}.plan.json"),
                 "-o", str(out)]) == 0
    files = {p.name for p in out.iterdir()}
    assert files == {"model.tflite", "slotmap.json", "model_data.h", "model_data.cc", "manifest.json",
                     "tinyswap_fw.h", "tinyswap_fw.c", "tinyswap_layout.h", "tinyswap_layout.c"}
    model = (out / "model.tflite").read_bytes()
    smap = json.loads((out / "slotmap.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert smap["model_bytes"] == len(model) == manifest["model_bytes"]
    assert manifest["flash"]["slots"] == sum(s["length"] for s in smap["slots"])
    # TFLite Micro's arena beside our activation plan; the header's define is the manifest's figure.
    arena = manifest["arena"]
    assert arena["tflm_bytes"] >= arena["tflm_smallest_bytes"] > arena["tinyswap_plan_bytes"] > 0
    # The C array holds exactly the model bytes, aligned as TFLite Micro needs.
    source = (out / "model_data.cc").read_text()
    assert f"alignas({max(16, smap['alignment'])})" in source
    body = source[source.index("{") + 1 : source.index("};")]
    assert bytes(int(v, 16) for v in body.replace("\n", "").split(",") if v.strip()) == model
    header = (out / "model_data.h").read_text()
    for slot in smap["slots"]:
        assert f"#define TINYSWAP_SLOT{slot['slot']}_OFFSET {slot['offset']}u" in header
    assert f"#define TINYSWAP_ARENA_BYTES {arena['tflm_bytes']}u" in header
    # It runs, and TFLM agrees, with every gate at 0.
    interp = Interpreter(model_content=model)
    inputs = [np.zeros(d["shape"], np.int8) for d in interp.get_input_details()]
    for gate in smap["gates"]:
        inputs[gate["input_index"]][:] = gate["zero_point"]
    np.testing.assert_array_equal(interp.run(*inputs)[0], run_tflm(model, inputs)[0])

    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    shown = capsys.readouterr().out
    assert f"slots     {smap['num_slots']}" in shown and "lora" in shown


def test_export_without_calibration_is_a_clear_error(tmp_path, capsys) -> None:
    spec = tmp_path / "m.json"
    spec.write_text((EXAMPLES / "mlp.json").read_text())
    (tmp_path / "m.npz").write_bytes((EXAMPLES / "mlp.npz").read_bytes())
    assert main(["export", str(spec), "-o", str(tmp_path / "out")]) == 2
    assert "calibration" in capsys.readouterr().err
