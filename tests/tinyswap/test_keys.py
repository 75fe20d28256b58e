"""PEM key files: every reader refuses the same things as one `InputFileError` naming the file."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tinyswap.errors import InputFileError
from tinyswap.keys import KeyAlgorithm, load_either_key, load_private_key, load_public_key, write_key_pair

ED, X = KeyAlgorithm.ED25519, KeyAlgorithm.X25519


def test_a_written_pair_reads_back_and_the_secret_is_private(tmp_path) -> None:
    key = Ed25519PrivateKey.generate()
    private, public = write_key_pair(key, tmp_path / "k" / "a.pem", tmp_path / "k" / "a.pub.pem")
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    loaded = load_private_key(private, ED)
    assert isinstance(loaded, Ed25519PrivateKey) and loaded.public_key() == key.public_key()
    assert load_public_key(public, ED) == key.public_key()
    assert isinstance(load_either_key(private, ED), Ed25519PrivateKey)
    assert isinstance(load_either_key(public, ED), Ed25519PublicKey)
    os.chmod(private, 0o644)  # rewriting an existing, readable file makes it private again
    write_key_pair(key, private, public)
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600


def test_wrong_keys_and_wrong_files_are_one_error_naming_the_file(tmp_path) -> None:
    ed_private, ed_public = write_key_pair(Ed25519PrivateKey.generate(), tmp_path / "ed.pem", tmp_path / "ed.pub")
    x_private, x_public = write_key_pair(X25519PrivateKey.generate(), tmp_path / "x.pem", tmp_path / "x.pub")
    (tmp_path / "text.pem").write_text("hello")
    with open(tmp_path / "big.pem", "wb") as f:
        f.truncate(1 << 30)
    cases = [
        (lambda: load_private_key(x_private, ED, "signing key"), "an X25519 private key, expected an Ed25519 private key"),
        (lambda: load_public_key(x_public, ED, "signing public key"), "an X25519 public key, expected an Ed25519 public"),
        (lambda: load_public_key(ed_public, X, "device public key"), "an Ed25519 public key, expected an X25519 public"),
        (lambda: load_private_key(ed_public, ED, "signing key"), "a public key, expected the private one"),
        (lambda: load_public_key(ed_private, ED, "signing public key"), "a private key, expected the public one"),
        (lambda: load_private_key(tmp_path / "text.pem", ED, "signing key"), "not an unencrypted PEM private key"),
        (lambda: load_public_key(tmp_path / "text.pem", ED, "signing public key"), "not a PEM public key"),
        (lambda: load_public_key(tmp_path / "big.pem", ED, "key"), "over the 65536-byte limit"),
        (lambda: load_public_key(tmp_path, ED, "key"), "is a directory"),
        (lambda: load_public_key(tmp_path / "none.pem", ED, "key"), "no such file"),
    ]
    if os.path.exists("/dev/zero"):
        cases.append((lambda: load_private_key("/dev/zero", ED, "key"), "not a regular file"))
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")  # must not wait for a writer
        cases.append((lambda: load_either_key(tmp_path / "fifo", ED, "key"), "not a regular file"))
    for load, problem in cases:
        with pytest.raises(InputFileError) as err:
            load()
        assert problem in str(err.value) and "\n" not in str(err.value), str(err.value)
