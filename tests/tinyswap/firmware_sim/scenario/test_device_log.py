"""`tinyswap sim` with a report log and an attestation identity: report.json carries the
device's own log (`device_log`), and token.bin answers the nonce after the last step."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyswap.attestation import BadNonceError, verify_token
from tinyswap.firmware_sim.scenario import ScenarioFormatError, run_scenario

from tests.tinyswap.firmware_sim.device_cases import digest_of, packages_for
from tests.tinyswap.firmware_sim.scenario.scenario_cases import scenario

NONCE = bytes(range(48))
STEPS = [
    {"kind": "update", "package": "A1", "permanent": True},
    {"kind": "activate", "adapters": "A", "permanent": True},
    {"kind": "update", "package": "A2"},
    {"kind": "reboot"},  # the trial reverts
    {"kind": "install", "package": "bad", "expect_error": "SignatureError"},
    {"kind": "update", "package": "A2"},
    {"kind": "confirm"},
]


def test_the_report_carries_the_device_log_and_the_token_verifies(work, tmp_path):
    key = Ed25519PrivateKey.generate()
    report = run_scenario(scenario(steps=STEPS, device={"report_log": 8}), profile="mcu-qspi", out_dir=tmp_path,
                          base_dir=work, identity_key=key, attest_nonce=NONCE)
    log = json.loads((tmp_path / "report.json").read_text())["device_log"]
    assert log == json.loads(json.dumps(report["device_log"]))
    assert log["max_entries"] == 8 and log["unlogged"] == 0 and len(log["entries"]) == 8 and log["dropped"] > 0
    entries = log["entries"]
    assert [(e["kind"], e["outcome"]) for e in entries][-5:] == [
        ("revert", "applied"), ("install", "refused"), ("install", "applied"), ("swap", "applied"),
        ("confirm", "applied")]
    assert entries[-4]["reason"].startswith("SignatureError: ")
    store = report["budget"]["flash"]["store"]
    assert store["packages"] == 2 and store["report_log_bytes"] > 0  # A1 and A2; the log file is no package
    claims = verify_token((tmp_path / "token.bin").read_bytes(), key.public_key(), NONCE,
                          expect_slots={0: digest_of(packages_for(4096)["A1"])})
    assert claims.log_sequence == entries[-1]["sequence"] and not claims.trial
    assert report["outputs"]["token"] == str(tmp_path / "token.bin")


def test_without_the_option_there_is_no_log_and_a_bad_nonce_is_refused_first(work, tmp_path):
    report = run_scenario(scenario(steps=STEPS[:1]), profile="mcu-qspi", out_dir=tmp_path, base_dir=work)
    assert report["device_log"] is None and report["budget"]["flash"]["store"]["report_log_bytes"] is None
    with pytest.raises(BadNonceError):
        run_scenario(scenario(steps=STEPS[:1]), profile="mcu-qspi", out_dir=tmp_path / "x", base_dir=work,
                     identity_key=Ed25519PrivateKey.generate(), attest_nonce=b"short")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ScenarioFormatError, match="report_log"):
        run_scenario(scenario(steps=STEPS[:1], device={"report_log": -1}), profile="mcu-qspi",
                     out_dir=tmp_path / "y", base_dir=work)


def test_sim_writes_a_token_that_attest_verify_accepts(work, tmp_path, capsys):
    """The demo path: `tinyswap sim --identity-key --attest-nonce`, then `tinyswap attest verify`."""
    from tinyswap.cli import main
    from tinyswap.export.pack import keygen

    private, public = keygen(tmp_path / "identity")
    path = work / "attest-scenario.json"  # beside the bundle it names (tests may add files to `work`)
    path.write_text(json.dumps(scenario(steps=STEPS[:2], device={"report_log": 4})))
    out = tmp_path / "out"
    nonce = NONCE.hex()
    assert main(["sim", str(path), "--out", str(out), "--identity-key", str(private), "--attest-nonce", nonce]) == 0
    assert "attestation token: " in capsys.readouterr().out
    a1 = digest_of(packages_for(4096)["A1"])
    assert main(["attest", "verify", str(out / "token.bin"), "--device-key", str(public), "--nonce", nonce,
                 "--expect-slot", f"0={a1}"]) == 0
    assert "token verified" in capsys.readouterr().out
    assert main(["sim", str(path), "--out", str(out), "--attest-nonce", nonce]) == 2
    assert "--attest-nonce needs --identity-key" in capsys.readouterr().err
