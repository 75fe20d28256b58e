"""`tinyswap attest verify`: a device's token verifies and its claims are printed; another
device's key, an old nonce, a tampered token, an unmet --expect-slot and malformed arguments
each print one `tinyswap: error:` line and exit 2."""

from __future__ import annotations

import json

import pytest

from tinyswap.cli import main
from tinyswap.export.pack import keygen, load_private_key
from tinyswap.firmware_sim.device import Device

from tests.tinyswap.firmware_sim.device_cases import KEYRING, bundle_for, digest_of, packages_for

B = bundle_for(4096)
P = packages_for(4096)
NONCE = "5a" * 32


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    """A device with its identity from `tinyswap keygen`, A v1.1 in slot 0, and its token."""
    d = tmp_path_factory.mktemp("attest")
    private, public = keygen(d / "device")
    _, other = keygen(d / "other")
    dev = Device("mcu-qspi", B.data, B.smap, KEYRING)
    dev.enable_report_log(8)
    dev.provision_identity(load_private_key(private))
    dev.provision()
    dev.boot()
    dev.update(P["A1"], permanent=True)
    token = d / "token.bin"
    token.write_bytes(dev.attest(bytes.fromhex(NONCE)))
    return token, public, other


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["attest", "verify", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, text: str, *argv: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and err.startswith("tinyswap: error: ") and err.count("\n") == 1, err
    assert text in err and "Traceback" not in err, err


def test_a_token_verifies_and_its_claims_are_printed(signed, capsys):
    token, public, _ = signed
    a1 = digest_of(P["A1"])
    code, out, err = run(capsys, token, "--device-key", public, "--nonce", NONCE, "--expect-slot", f"0={a1}",
                         "--expect-slot", "1=empty")
    assert code == 0 and err == ""
    assert out.startswith("token verified") and "2 slot expectation(s) hold" in out
    assert f"A 1.1  package {a1}" in out and "confirmed, metadata record" in out and "slot 1      empty" in out
    code, out, _ = run(capsys, token, "--device-key", public, "--nonce", NONCE, "--json")
    assert code == 0 and json.loads(out)["slots"][0]["digest"] == a1


def test_refusals_are_one_line_and_exit_2(signed, capsys, tmp_path):
    token, public, other = signed
    refused(capsys, "the token is from device", token, "--device-key", other, "--nonce", NONCE)
    refused(capsys, "old token replayed", token, "--device-key", public, "--nonce", "00" * 32)
    refused(capsys, "slot 0 holds", token, "--device-key", public, "--nonce", NONCE,
            "--expect-slot", f"0={digest_of(P['A2'])}")
    tampered = tmp_path / "tampered.bin"
    data = bytearray(token.read_bytes())
    data[-1] ^= 1
    tampered.write_bytes(bytes(data))
    refused(capsys, "signature does not verify", tampered, "--device-key", public, "--nonce", NONCE)
    refused(capsys, "32, 48 or 64 bytes", token, "--device-key", public, "--nonce", "00" * 8)
    refused(capsys, "expected N=DIGEST", token, "--device-key", public, "--nonce", NONCE, "--expect-slot", "0=abc")
    refused(capsys, "not an attestation token", public, "--device-key", public, "--nonce", NONCE)
    refused(capsys, "not a PEM public key", token, "--device-key", token, "--nonce", NONCE)
    refused(capsys, "is a directory", tmp_path, "--device-key", public, "--nonce", NONCE)
