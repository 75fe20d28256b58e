"""`export_model` and `tinyswap export`: one call per source, `--target PROFILE`, and the
packer's `--max-error` threshold.

Keras and PyTorch sources are tested in `test_keras_import.py` and `test_torch_import.py`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyswap.cli import main
from tinyswap.export.build import build_bundle
from tinyswap.export.errors import ModelSourceError
from tinyswap.export.front_door import export_model
from tinyswap.export.slot_plan import SlotPlan
from tinyswap.export.spec import load_spec
from tinyswap.files import read_npy

from tests.adapter_cases import EXAMPLES

SPEC, PLAN, CALIBRATION = EXAMPLES / "mlp.json", EXAMPLES / "mlp.plan.json", EXAMPLES / "mlp.calibration.npy"


def test_a_spec_object_and_a_spec_path_give_the_bundle_build_bundle_gives() -> None:
    plan = SlotPlan.load(PLAN)
    expected = build_bundle(load_spec(SPEC), plan, read_npy(CALIBRATION)).data
    assert export_model(load_spec(SPEC), plan, calibration=read_npy(CALIBRATION)).data == expected
    assert export_model(SPEC, PLAN).data == expected  # calibration: <spec>.calibration.npy beside it


def test_slot_alignment_raises_the_plans_alignment_to_a_sector() -> None:
    built = export_model(SPEC, PLAN, slot_alignment=4096)
    assert SlotPlan.load(PLAN).alignment == 16
    assert built.slotmap["alignment"] == 4096
    assert all(s["offset"] % 4096 == 0 for s in built.slotmap["slots"])


@pytest.mark.parametrize("source,words", [
    (42, "cannot export a int"),
    (b"TFL3 not really", "needs a slot plan"),
])
def test_sources_it_cannot_take_are_refused_with_what_to_give(source, words) -> None:
    with pytest.raises(ModelSourceError, match=words):
        export_model(source, None)


def test_a_spec_without_calibration_names_the_missing_file(tmp_path) -> None:
    spec = tmp_path / "mlp.json"
    spec.write_text(SPEC.read_text())
    (tmp_path / "mlp.npz").write_bytes((EXAMPLES / "mlp.npz").read_bytes())
    with pytest.raises(ModelSourceError, match=r"pass --calibration.*mlp\.calibration\.npy does not exist"):
        export_model(spec, PLAN)


def test_export_target_aligns_slots_to_the_profiles_sectors_and_the_device_boots_it(tmp_path, capsys) -> None:
    """The plan's 16-byte alignment fails the default simulated profile (4 KB QSPI NOR sectors);
    `--target mcu-qspi` gives a bundle that device boots and runs."""
    from tinyswap.firmware_sim.device import Device
    from tinyswap.firmware_sim.errors import SlotAlignmentError
    from tinyswap.package import Keyring

    from tests.adapter_cases import KEY

    for name, extra in (("plain", []), ("target", ["--target", "mcu-qspi"])):
        assert main(["export", str(SPEC), "--plan", str(PLAN), "-o", str(tmp_path / name), *extra]) == 0
    assert "slot alignment 4096 B (mcu-qspi sectors)" in capsys.readouterr().out

    def device(name: str) -> Device:
        data = (tmp_path / name / "model.tflite").read_bytes()
        smap = json.loads((tmp_path / name / "slotmap.json").read_text())
        d = Device("mcu-qspi", data, smap, Keyring([KEY.public_key()]))
        d.provision()
        return d

    with pytest.raises(SlotAlignmentError, match="4096-byte sectors"):
        device("plain").boot()
    d = device("target")
    d.boot()
    assert d.booted


def test_export_refuses_an_unknown_target(tmp_path, capsys) -> None:
    assert main(["export", str(SPEC), "--plan", str(PLAN), "--target", "mcu-nope", "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "unknown device profile 'mcu-nope'" in err and "mcu-qspi" in err
    assert not (tmp_path / "b").exists()


@pytest.fixture
def rank8_for_rank4(tmp_path):
    """The example bundle (fc3 has rank-4 slots) and a rank-8 adapter for fc3."""
    assert main(["export", str(SPEC), "--plan", str(PLAN), "-o", str(tmp_path / "bundle")]) == 0
    assert main(["keygen", "-o", str(tmp_path / "keys")]) == 0
    smap = json.loads((tmp_path / "bundle" / "slotmap.json").read_text())
    shapes = {t["role"]: t["shape"] for t in smap["slots"][0]["tensors"] if t["layer"] == "fc3"}
    assert shapes["A"][0] == 4
    rng = np.random.default_rng(0)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter.json").write_text(json.dumps({"name": "r8", "version": "1", "sequence": 1, "kind": "lora",
                                                      "targets": {"fc3": {"rank": 8, "alpha": 8}}}))
    fan_in, out = shapes["A"][1], shapes["B"][0]
    np.savez(adapter / "adapter.npz", **{"fc3/A": rng.standard_normal((8, fan_in)) / np.sqrt(fan_in),
                                         "fc3/B": rng.standard_normal((out, 8)) * 0.05})
    return tmp_path


def pack_args(root, *extra: str) -> list[str]:
    return ["pack", str(root / "adapter"), "--bundle", str(root / "bundle"), "--key",
            str(root / "keys" / "signing_key.pem"), "-o", str(root / "r8.tsap"), *extra]


def test_rank_reduction_prints_a_warning_line(rank8_for_rank4, capsys) -> None:
    assert main(pack_args(rank8_for_rank4)) == 0
    out = capsys.readouterr().out
    warning = [line for line in out.splitlines() if line.startswith("warning")]
    assert len(warning) == 1 and "fc3: rank 8 reduced to the slot's 4" in warning[0]
    error = float(warning[0].split("delta error ")[1].split("%")[0])
    assert error > 1.0  # a random rank-8 delta loses much of itself at rank 4
    assert (rank8_for_rank4 / "r8.tsap").exists()


def test_max_error_refuses_and_writes_nothing(rank8_for_rank4, capsys) -> None:
    assert main(pack_args(rank8_for_rank4, "--max-error", "0.01")) == 1
    captured = capsys.readouterr()
    assert "fc3" in captured.out and "delta error" in captured.out  # the report is printed
    assert "delta error above --max-error 1.00% on fc3" in captured.err
    assert not (rank8_for_rank4 / "r8.tsap").exists()
    assert main(pack_args(rank8_for_rank4, "--max-error", "0.99")) == 0
    assert (rank8_for_rank4 / "r8.tsap").exists()


def test_an_int8_tflite_exports_with_injected_slots_in_one_command(tmp_path) -> None:
    """The converter-made DS-CNN through `tinyswap export MODEL.tflite`: the bundle is what
    `inject_slots` makes, named after the file, and all gates off give the original outputs."""
    from tinyswap import Interpreter
    from tinyswap.export.inject import inject_slots

    from tests.conftest import REPO

    source = REPO / "models" / "converted" / "ds_cnn.tflite"
    plan = {"targets": [{"layer": "#2", "kind": "lora", "max_rank": 2, "delta_ratio": 0.5}], "num_slots": 2,
            "alignment": 16, "headroom": False}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    out = tmp_path / "bundle"
    assert main(["export", str(source), "--plan", str(tmp_path / "plan.json"), "-o", str(out)]) == 0
    data = (out / "model.tflite").read_bytes()
    assert data == inject_slots(source.read_bytes(), SlotPlan.from_json(plan)).data
    assert json.loads((out / "manifest.json").read_text())["model"] == "ds_cnn"
    rng = np.random.default_rng(0)
    slotmap = json.loads((out / "slotmap.json").read_text())
    image = bytearray(data)
    for slot in slotmap["slots"]:  # whatever the slots hold (int8 tensors only: biases stay in range)
        for t in slot["tensors"]:
            if t["dtype"] == "int8":
                image[t["offset"]:t["offset"] + t["length"]] = rng.integers(-128, 128, t["length"], np.int8).tobytes()
    x = rng.integers(-128, 128, (3, *Interpreter(model_path=source).get_input_details()[0]["shape"][1:]), np.int8)
    off = [np.full((3, 1), g["zero_point"], np.int8) for g in slotmap["gates"]]  # gate weight 0
    np.testing.assert_array_equal(Interpreter(model_content=image).run(x, *off)[0],
                                  Interpreter(model_path=source).run(x)[0])
    on = [np.full((3, 1), 127, np.int8) for _ in slotmap["gates"]]
    assert not np.array_equal(Interpreter(model_content=image).run(x, *on)[0], Interpreter(model_path=source).run(x)[0])
