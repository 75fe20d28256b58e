"""`tinyswap.export.build.build_bundle`: compile -> arena probe -> bundle files -> key pair, the
one path every bundle maker takes (export command, digits example, scenarios, evaluation,
benchmarks)."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization

from tinyswap.cli import main
from tinyswap.errors import TinySwapError
from tinyswap.export.build import build_bundle
from tinyswap.export.errors import ExportError, SpecError
from tinyswap.export.pack import pack
from tinyswap.export.slot_plan import SlotPlan
from tinyswap.export.spec import load_spec
from tinyswap.interpreter import Interpreter
from tinyswap.package import Keyring
from tinyswap.swap import SwapManager

from tests.adapter_cases import random_adapter
from tests.conftest import REPO

EXAMPLES = REPO / "models" / "examples"
BUNDLE_FILES = ["model.tflite", "slotmap.json", "model_data.h", "model_data.cc", "manifest.json"]


@pytest.fixture(scope="module")
def mlp():
    return (load_spec(EXAMPLES / "mlp.json"), SlotPlan.load(EXAMPLES / "mlp.plan.json"),
            np.load(EXAMPLES / "mlp.calibration.npy"))


def test_without_a_directory_nothing_is_written_and_the_result_equals_a_written_bundle(mlp, tmp_path) -> None:
    spec, plan, cal = mlp
    memory = build_bundle(spec, plan, cal)
    assert memory.files is None and memory.bundle_dir is None and memory.keys is None
    assert list(tmp_path.iterdir()) == []
    written = build_bundle(spec, plan, cal, tmp_path / "bundle")
    assert written.files is not None and written.bundle_dir == tmp_path / "bundle"
    assert [p.name for p in written.files.all()] == BUNDLE_FILES
    # Beside them, the device install code and the bundle's slot layout (tinyswap.export.firmware).
    firmware = ["tinyswap_fw.h", "tinyswap_fw.c", "tinyswap_layout.h", "tinyswap_layout.c"]
    assert sorted(p.name for p in (tmp_path / "bundle").iterdir()) == sorted(BUNDLE_FILES + firmware)
    assert memory.data == written.data == (tmp_path / "bundle" / "model.tflite").read_bytes()
    on_disk = json.loads((tmp_path / "bundle" / "slotmap.json").read_text())
    assert memory.slotmap == written.slotmap == on_disk
    assert memory.slotmap["num_slots"] == plan.num_slots


def test_the_arena_and_input_quantization_are_the_reference_interpreters(mlp, tmp_path) -> None:
    spec, plan, cal = mlp
    built = build_bundle(spec, plan, cal, tmp_path)
    probe = Interpreter(model_content=built.data)
    probe.allocate_tensors()
    assert built.arena_bytes == probe.arena_bytes > 0
    arena = json.loads((tmp_path / "manifest.json").read_text())["arena"]
    assert arena["tinyswap_plan_bytes"] == built.arena_bytes  # the plan, labelled as such
    assert arena["tflm_bytes"] == built.tflm_arena.tflm_bytes > arena["tflm_smallest_bytes"] > built.arena_bytes
    assert (built.input_scale, built.input_zero_point) == probe.get_input_details()[0]["quantization"]


def test_keys_come_from_keygen_and_sign_packages_the_bundle_accepts(mlp, tmp_path) -> None:
    spec, plan, cal = mlp
    built = build_bundle(spec, plan, cal, tmp_path / "bundle", keys_dir=tmp_path / "keys")
    assert built.keys is not None
    assert built.keys.private_key_path == tmp_path / "keys" / "signing_key.pem"
    assert built.keys.public_key_path == tmp_path / "keys" / "signing_key.pub.pem"
    assert stat.S_IMODE(built.keys.private_key_path.stat().st_mode) == 0o600
    private = built.keys.private_key()
    public = serialization.load_pem_public_key(built.keys.public_key_path.read_bytes())
    raw = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert public.public_bytes(*raw) == private.public_key().public_bytes(*raw)
    data, _ = pack(random_adapter(built.slotmap, 0), built.slotmap, private)
    manager = SwapManager(bytearray(built.data), built.slotmap, Keyring([public]))
    manager.load_adapter(data)  # signature, base digest and slot layout all verified


def test_two_builds_make_two_key_pairs(mlp, tmp_path) -> None:
    spec, plan, cal = mlp
    a = build_bundle(spec, plan, cal, keys_dir=tmp_path / "a")
    b = build_bundle(spec, plan, cal, keys_dir=tmp_path / "b")
    assert a.keys and b.keys and a.keys.public_key_path.read_bytes() != b.keys.public_key_path.read_bytes()
    assert a.data == b.data  # compiling is deterministic; only the keys are fresh


def test_without_a_plan_the_bundle_has_no_slots(mlp) -> None:
    spec, _, cal = mlp
    built = build_bundle(spec, None, cal)
    assert built.slotmap["num_slots"] == 0 and built.slotmap["slots"] == []
    assert len(built.data) < len(build_bundle(spec, mlp[1], cal).data)


def test_a_refusal_is_an_export_error_and_writes_nothing(mlp, tmp_path) -> None:
    spec, plan, cal = mlp
    with pytest.raises(SpecError, match="calibration data") as info:
        build_bundle(spec, plan, cal[:, :3], tmp_path / "bundle", keys_dir=tmp_path / "keys")
    assert isinstance(info.value, ExportError) and isinstance(info.value, TinySwapError)
    assert not (tmp_path / "bundle").exists() and not (tmp_path / "keys").exists()


def test_the_export_command_writes_exactly_what_build_bundle_writes(mlp, tmp_path, capsys) -> None:
    spec, plan, cal = mlp
    assert main(["export", str(EXAMPLES / "mlp.json"), "--plan", str(EXAMPLES / "mlp.plan.json"),
                 "-o", str(tmp_path / "cli")]) == 0
    wrote = [line for line in capsys.readouterr().out.splitlines() if line.startswith("wrote")]
    assert [line.split()[1] for line in wrote] == [str(tmp_path / "cli" / name) for name in BUNDLE_FILES]
    build_bundle(spec, plan, cal, tmp_path / "direct")
    for name in BUNDLE_FILES:
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "direct" / name).read_bytes(), name
