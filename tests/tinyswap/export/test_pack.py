"""`tinyswap keygen` and `tinyswap pack` from an adapter directory to a verifiable package."""

from __future__ import annotations

import json

import numpy as np
from cryptography.hazmat.primitives import serialization

from tinyswap.cli import main
from tinyswap.package import Keyring, parse_package, verify_package

from tests.conftest import REPO

EXAMPLES = REPO / "models" / "examples"


def test_keygen_pack_verify(tmp_path, capsys) -> None:
    bundle = tmp_path / "bundle"
    assert main(["export", str(EXAMPLES / "mlp.json"), "--plan", str(EXAMPLES / "mlp.plan.json"), "-o", str(bundle)]) == 0
    assert main(["keygen", "-o", str(tmp_path / "keys")]) == 0
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    rng = np.random.default_rng(0)
    (adapter / "adapter.json").write_text(json.dumps({
        "name": "demo", "version": "0.1.0", "sequence": 1, "kind": "lora",
        "targets": {"fc2": {"rank": 4, "alpha": 8}}}))
    np.savez(adapter / "adapter.npz", **{"fc2/A": rng.standard_normal((4, 128)) / 11, "fc2/B": rng.standard_normal((64, 4)) * 0.05})
    out = tmp_path / "demo.tsap"
    assert main(["pack", str(adapter), "--bundle", str(bundle), "--key", str(tmp_path / "keys" / "signing_key.pem"),
                 "-o", str(out)]) == 0
    assert "delta error" in capsys.readouterr().out
    public = serialization.load_pem_public_key((tmp_path / "keys" / "signing_key.pub.pem").read_bytes())
    smap = json.loads((bundle / "slotmap.json").read_text())
    verify_package(parse_package(out.read_bytes()), Keyring([public]), smap["base_digest"], smap["slots"][0]["tensors"], {})


def test_pack_errors_are_reported_not_raised(tmp_path, capsys) -> None:
    assert main(["pack", str(tmp_path / "missing"), "--bundle", str(tmp_path), "--key", "k.pem", "-o", "x"]) == 2
    assert "error" in capsys.readouterr().err


def _demo_adapter(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    rng = np.random.default_rng(1)
    (adapter / "adapter.json").write_text(json.dumps({
        "name": "demo", "version": "0.1.0", "sequence": 1, "kind": "lora", "targets": {"fc2": {"rank": 4, "alpha": 8}}}))
    np.savez(adapter / "adapter.npz", **{"fc2/A": rng.standard_normal((4, 128)) / 11, "fc2/B": rng.standard_normal((64, 4)) * 0.05})
    bundle = tmp_path / "bundle"
    assert main(["export", str(EXAMPLES / "mlp.json"), "--plan", str(EXAMPLES / "mlp.plan.json"), "-o", str(bundle)]) == 0
    assert main(["keygen", "-o", str(tmp_path / "keys")]) == 0
    return adapter, bundle, tmp_path / "keys" / "signing_key.pem"


def test_pack_refuses_a_fifo_or_directory_key_and_a_directory_output_in_one_line(tmp_path, capsys) -> None:
    import os
    import threading

    adapter, bundle, key = _demo_adapter(tmp_path)
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    capsys.readouterr()
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(main(
        ["pack", str(adapter), "--bundle", str(bundle), "--key", str(fifo), "-o", str(tmp_path / "x.tsap")])), daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():  # unblock the reader before failing, so the test run does not hang
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(5)
        pytest.fail("tinyswap pack waited on a FIFO signing key")
    err = capsys.readouterr().err
    assert result == [2] and err == f"tinyswap: error: cannot read signing key {fifo}: not a regular file (a device, FIFO or socket)\n"
    assert main(["pack", str(adapter), "--bundle", str(bundle), "--key", str(tmp_path / "keys"), "-o", "x"]) == 2
    assert capsys.readouterr().err == f"tinyswap: error: cannot read signing key {tmp_path / 'keys'}: is a directory, expected a file\n"
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["pack", str(adapter), "--bundle", str(bundle), "--key", str(key), "-o", str(out_dir)]) == 2
    err = capsys.readouterr().err
    assert err == f"tinyswap: error: {out_dir}: Is a directory\n"
    assert list(out_dir.iterdir()) == []
