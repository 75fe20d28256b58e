"""`tinyswap firmware` and `tinyswap fw apply` as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tinyswap.cli import main
from tinyswap.export.firmware import STATIC_FILES, layout_sources, static_source
from tinyswap.export.fw_host import compiler
from tinyswap.image import RamImage
from tinyswap.package import parse_package
from tinyswap.slotmap import SlotMap
from tinyswap.swap.slot_bytes import SlotBytes

from tests.adapter_cases import KEY, package
from tests.tinyswap.firmware_sim.device_cases import bundle_for

B = bundle_for(4096)
SMAP = SlotMap.from_json(B.smap)


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "model.tflite").write_bytes(B.data)
    SMAP.save(out / "slotmap.json")
    (tmp_path / "signer.pub.pem").write_bytes(KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return out


def test_firmware_writes_the_static_sources_and_the_bundles_layout(bundle, tmp_path, capsys):
    assert main(["firmware", "-o", str(tmp_path / "fw")]) == 0
    assert sorted(p.name for p in (tmp_path / "fw").iterdir()) == sorted(STATIC_FILES)
    assert main(["firmware", "-o", str(tmp_path / "fw2"), "--bundle", str(bundle)]) == 0
    header, source = layout_sources(SMAP)
    assert (tmp_path / "fw2" / "tinyswap_layout.h").read_text() == header
    assert (tmp_path / "fw2" / "tinyswap_layout.c").read_text() == source
    assert (tmp_path / "fw2" / "tinyswap_fw.c").read_text() == static_source("tinyswap_fw.c")
    assert capsys.readouterr().out.count("wrote") == 6


def test_firmware_refuses_a_folder_that_is_no_bundle(tmp_path, capsys):
    assert main(["firmware", "-o", str(tmp_path / "fw"), "--bundle", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinyswap: error:") and err.count("\n") == 1 and "slotmap.json" in err


@pytest.mark.skipif(compiler() is None, reason="no C compiler (gcc or cc): `fw apply` cannot build the device code")
@pytest.mark.parametrize("slot", [0, 1])
def test_fw_apply_writes_the_python_swap_managers_image(bundle, tmp_path, capsys, slot):
    pkg = tmp_path / "A1.tsap"
    pkg.write_bytes(package(B.smap, 11, "A", 1))
    out = tmp_path / "out.tflite"
    assert main(["fw", "apply", str(bundle), str(pkg), "--key", str(tmp_path / "signer.pub.pem"), "--slot", str(slot),
                 "--image", str(bundle / "model.tflite"), "-o", str(out)]) == 0
    image = RamImage(B.data)
    SlotBytes(image, SMAP).write(slot, parse_package(pkg.read_bytes()))
    assert out.read_bytes() == bytes(image.buffer) != B.data
    # Into the other slot of that image: the first adapter stays, as in the Python image.
    pkg2 = tmp_path / "B1.tsap"
    pkg2.write_bytes(package(B.smap, 21, "B", 1))
    out2 = tmp_path / "out2.tflite"
    assert main(["fw", "apply", str(bundle), str(pkg2), "--key", str(tmp_path / "signer.pub.pem"), "--slot",
                 str(1 - slot), "--image", str(out), "-o", str(out2)]) == 0
    SlotBytes(image, SMAP).write(1 - slot, parse_package(pkg2.read_bytes()))
    assert out2.read_bytes() == bytes(image.buffer)


@pytest.mark.skipif(compiler() is None, reason="no C compiler (gcc or cc): `fw apply` cannot build the device code")
@pytest.mark.parametrize("breakage,status", [
    (lambda p: p[:-1], "TSFW_E_FORMAT"),
    (lambda p: p[:-64] + bytes(64), "TSFW_E_SIGNATURE"),
    (lambda p: package(bundle_for(8192).smap, 11, "A", 1), "TSFW_E_WRONG_BASE"),
])
def test_fw_apply_refuses_with_the_status_name_and_writes_nothing(bundle, tmp_path, capsys, breakage, status):
    pkg = tmp_path / "bad.tsap"
    pkg.write_bytes(breakage(package(B.smap, 11, "A", 1)))
    out = tmp_path / "out.tflite"
    assert main(["fw", "apply", str(bundle), str(pkg), "--key", str(tmp_path / "signer.pub.pem"), "--slot", "0",
                 "--image", str(bundle / "model.tflite"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinyswap: error:") and err.count("\n") == 1 and status in err
    assert not out.exists()


def test_fw_apply_refuses_a_slot_the_bundle_does_not_have(bundle, tmp_path, capsys):
    pkg = tmp_path / "A1.tsap"
    pkg.write_bytes(package(B.smap, 11, "A", 1))
    assert main(["fw", "apply", str(bundle), str(pkg), "--key", str(tmp_path / "signer.pub.pem"), "--slot", "7",
                 "--image", str(bundle / "model.tflite"), "-o", str(tmp_path / "o")]) == 2
    assert "--slot 7" in capsys.readouterr().err


@pytest.mark.skipif(compiler() is None, reason="no C compiler (gcc or cc): `fw apply` cannot build the device code")
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_fw_apply_equals_the_swap_manager_for_every_digits_package(model, tmp_path, capsys):
    """Both digits bundles, every adapter package, both slots: the image `tinyswap fw apply`
    writes through the bundle's C code is the Python swap manager's, byte for byte."""
    from tinyswap.commands.digits import prepare
    from tinyswap.swap import SwapManager

    d = prepare(tmp_path / model, model)
    smap = SlotMap.from_json(d.slotmap)
    key = d.built.keys.public_key_path
    assert d.packages, "no digits adapters"
    for domain, path in d.package_paths.items():
        manager = SwapManager(bytearray(d.model_bytes), smap, d.keyring)
        manager.load_adapter(path.read_bytes())  # a fresh manager writes its first free slot
        expected = {0: bytes(manager.image.buffer)}
        image = RamImage(d.model_bytes)
        SlotBytes(image, smap).write(1, parse_package(path.read_bytes()))
        expected[1] = bytes(image.buffer)
        for slot in (0, 1):
            out = tmp_path / f"{model}-{domain}-{slot}.tflite"
            assert main(["fw", "apply", str(d.bundle_dir), str(path), "--key", str(key), "--slot", str(slot),
                         "--image", str(d.bundle_dir / "model.tflite"), "-o", str(out)]) == 0, capsys.readouterr().err
            assert out.read_bytes() == expected[slot], f"{model} {domain} slot {slot}"
