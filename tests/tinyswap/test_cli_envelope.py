"""The command line for encrypted packages, as a user runs it: `keygen --device`, `pack
--encrypt-for` (twice: two recipients, both decrypt), and `verify` (what a package is; every
refusal one `tinyswap: error: ...` line and exit status 2)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tinyswap import cli
from tinyswap.envelope import device_key_id, load_device_private_key, load_device_public_key, open_package
from tinyswap.export.pack import load_private_key
from tinyswap.package import key_id, parse_package
from tinyswap.resources import models_dir

DIGITS = models_dir() / "digits"
ADAPTER = DIGITS / "adapters" / "cnn" / "rot90"


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A digits CNN bundle, a signing key, two device key pairs and the packages, made through
    the command line."""
    root = tmp_path_factory.mktemp("cli_envelope")
    f = {"bundle": root / "bundle", "other_bundle": root / "mlp_bundle", "keys": root / "keys",
         "dev1": root / "dev1", "dev2": root / "dev2", "dev3": root / "dev3",
         "plain": root / "plain.tsap", "sealed": root / "sealed.tsap"}
    assert cli.main(["export", str(DIGITS / "cnn.json"), "--plan", str(DIGITS / "cnn.plan.json"),
                     "-o", str(f["bundle"])]) == 0
    assert cli.main(["export", str(DIGITS / "mlp.json"), "--plan", str(DIGITS / "mlp.plan.json"),
                     "-o", str(f["other_bundle"])]) == 0
    assert cli.main(["keygen", "-o", str(f["keys"])]) == 0
    for dev in ("dev1", "dev2", "dev3"):
        assert cli.main(["keygen", "--device", "-o", str(f[dev])]) == 0
    common = [str(ADAPTER), "--bundle", str(f["bundle"]), "--key", str(f["keys"] / "signing_key.pem")]
    assert cli.main(["pack", *common, "-o", str(f["plain"])]) == 0
    assert cli.main(["pack", *common, "--encrypt-for", str(f["dev1"] / "device.pub.pem"),
                     "--encrypt-for", str(f["dev2"] / "device.pub.pem"), "-o", str(f["sealed"])]) == 0
    return f


def test_keygen_device_writes_an_x25519_pair_and_plain_keygen_is_unchanged(made, tmp_path, capsys) -> None:
    status, out, _ = run(capsys, "keygen", "--device", "-o", tmp_path / "dev")
    assert status == 0 and "device.key.pem" in out and "device.pub.pem" in out
    private, public = tmp_path / "dev" / "device.key.pem", tmp_path / "dev" / "device.pub.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert isinstance(load_device_private_key(private), X25519PrivateKey)
    assert device_key_id(load_device_private_key(private)) == device_key_id(load_device_public_key(public))
    # Without --device: the Ed25519 signing pair, as before.
    assert isinstance(load_private_key(made["keys"] / "signing_key.pem"), Ed25519PrivateKey)
    assert sorted(p.name for p in made["keys"].iterdir()) == ["signing_key.pem", "signing_key.pub.pem"]


def test_pack_encrypt_for_two_recipients_both_decrypt_to_the_plaintext_payload(made) -> None:
    sealed, plain = parse_package(made["sealed"].read_bytes()), parse_package(made["plain"].read_bytes())
    assert made["sealed"].read_bytes()[4:6] == b"\x02\x00" and sealed.encryption is not None
    ids = {device_key_id(load_device_public_key(made[d] / "device.pub.pem")) for d in ("dev1", "dev2")}
    assert {r.key_id for r in sealed.encryption.recipients} == ids
    for dev in ("dev1", "dev2"):
        opened = open_package(sealed, [load_device_private_key(made[dev] / "device.key.pem")])
        assert bytes(opened.payload) == bytes(plain.payload)  # packing is deterministic; only the envelope differs


def test_verify_prints_what_the_package_is(made, capsys) -> None:
    signer = made["keys"] / "signing_key.pub.pem"
    status, out, err = run(capsys, "verify", made["sealed"], "--key", signer, "--bundle", made["bundle"],
                           "--device-key", made["dev2"] / "device.key.pem")
    assert status == 0 and err == ""
    pkg = parse_package(made["sealed"].read_bytes())
    signer_id = key_id(load_private_key(made["keys"] / "signing_key.pem").public_key()).hex()
    lines = dict(line.split(None, 1) for line in out.splitlines() if line and not line.startswith(" "))
    assert lines["name"] == "cnn-rot90" and lines["version"] == "1.0.0" and lines["sequence"] == "1"
    assert lines["kind"] == "lora" and "task=digits" in lines["tags"] and "domain=rot90" in lines["tags"]
    assert lines["signer"].startswith(signer_id) and lines["base"] == pkg.metadata["base_digest"]
    assert lines["digest"] == pkg.content_digest
    assert lines["tensors"].startswith(f"{len(pkg.tensors)}, ") and "conv2/A" in lines["tensors"]
    assert lines["encrypted"].startswith("A256GCM") and "2 recipient(s)" in lines["encrypted"]
    for r in pkg.encryption.recipients:
        assert r.key_id.hex() in out
    assert "base binding ok, slot layout ok" in lines["bundle"]
    assert lines["decrypts"].startswith("yes") and device_key_id(
        load_device_private_key(made["dev2"] / "device.key.pem")).hex() in lines["decrypts"]
    # A plaintext package says so.
    status, out, _ = run(capsys, "verify", made["plain"], "--key", signer)
    assert status == 0 and "encrypted no (plaintext payload)" in out


@pytest.mark.parametrize("case", ["not-a-recipient", "tampered", "wrong-signer", "device-key-as-signer",
                                  "other-bundle", "signing-key-as-device-key", "missing"])
def test_verify_refusals_are_one_line_and_exit_2(case, made, tmp_path, capsys) -> None:
    signer = made["keys"] / "signing_key.pub.pem"
    package = made["sealed"]
    extra: list[object] = []
    expected = ""
    if case == "not-a-recipient":
        extra, expected = ["--device-key", made["dev3"] / "device.key.pem"], "not encrypted for this device"
    elif case == "tampered":
        data = bytearray(package.read_bytes())
        data[len(data) // 2] ^= 1
        package = tmp_path / "tampered.tsap"
        package.write_bytes(bytes(data))
        expected = "digest mismatch"
    elif case == "wrong-signer":
        assert cli.main(["keygen", "-o", str(tmp_path / "k")]) == 0
        capsys.readouterr()
        signer, expected = tmp_path / "k" / "signing_key.pub.pem", "untrusted key"
    elif case == "device-key-as-signer":
        signer, expected = made["dev1"] / "device.pub.pem", "an X25519 public key, expected an Ed25519 public key"
    elif case == "other-bundle":
        extra, expected = ["--bundle", made["other_bundle"]], "is for base"
    elif case == "signing-key-as-device-key":
        extra, expected = ["--device-key", made["keys"] / "signing_key.pem"], "an Ed25519 private key, expected an X25519 private key"
    elif case == "missing":
        package, expected = tmp_path / "nope.tsap", "nope.tsap"
    status, out, err = run(capsys, "verify", package, "--key", signer, *extra)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("tinyswap: error: ") and expected in err, err
    assert "Traceback" not in err and out == ""  # a refused package prints no half report
