"""PEM key files: the one place that reads and writes them.

tinyswap uses two kinds of key, both from `cryptography`: Ed25519 for signatures (package
signers, TUF roles, a device's attestation identity) and X25519 for key agreement (a device's
or device group's key that encrypted packages are wrapped for). Every command that takes a key
path reads it here, so each one refuses the same things the same way, as one `InputFileError`
naming the file and what it was expected to be: a missing file, a directory, a FIFO or a
device node (refused after `fstat`, before anything is read), a file over 64 KiB (a PEM key
is a few hundred bytes), text that is not PEM, and a key of the other algorithm or the other
half of the pair. Private keys are written with mode 0600 from the moment they exist.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Union

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from tinyswap.errors import InputFileError
from tinyswap.files import MAX_KEY_FILE_BYTES, PathLike, read_bytes

PrivateKey = Union[Ed25519PrivateKey, X25519PrivateKey]
PublicKey = Union[Ed25519PublicKey, X25519PublicKey]


class KeyAlgorithm(Enum):
    """The two algorithms tinyswap keys use, with their `cryptography` classes."""

    ED25519 = "Ed25519"
    X25519 = "X25519"

    @property
    def private_type(self) -> type:
        return Ed25519PrivateKey if self is KeyAlgorithm.ED25519 else X25519PrivateKey

    @property
    def public_type(self) -> type:
        return Ed25519PublicKey if self is KeyAlgorithm.ED25519 else X25519PublicKey


def _describe(key: object) -> str:
    for algorithm in KeyAlgorithm:
        if isinstance(key, algorithm.private_type):
            return f"an {algorithm.value} private key"
        if isinstance(key, algorithm.public_type):
            return f"an {algorithm.value} public key"
    return f"a {type(key).__name__.lstrip('_')}"


def _pem(path: PathLike, what: str) -> bytes:
    return read_bytes(path, what, max_bytes=MAX_KEY_FILE_BYTES)


def load_private_key(path: PathLike, algorithm: KeyAlgorithm, what: str = "private key") -> PrivateKey:
    """An unencrypted PKCS#8 PEM private key of `algorithm`, or one `InputFileError`."""
    data = _pem(path, what)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        problem = "a public key, expected the private one" if b"PUBLIC KEY" in data else \
            f"not an unencrypted PEM private key ({' '.join(str(exc).split())})"
        raise InputFileError(path, problem, what) from None
    if not isinstance(key, algorithm.private_type):
        raise InputFileError(path, f"{_describe(key)}, expected an {algorithm.value} private key", what)
    return key


def load_public_key(path: PathLike, algorithm: KeyAlgorithm, what: str = "public key") -> PublicKey:
    """A PEM SubjectPublicKeyInfo public key of `algorithm`, or one `InputFileError`."""
    data = _pem(path, what)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        problem = "a private key, expected the public one" if b"PRIVATE KEY" in data else \
            f"not a PEM public key ({' '.join(str(exc).split())})"
        raise InputFileError(path, problem, what) from None
    if not isinstance(key, algorithm.public_type):
        raise InputFileError(path, f"{_describe(key)}, expected an {algorithm.value} public key", what)
    return key


def load_either_key(path: PathLike, algorithm: KeyAlgorithm, what: str = "key") -> PrivateKey | PublicKey:
    """A private or a public key of `algorithm` (a key being revoked may be known only by its
    public half): decided by the PEM label, then loaded as above."""
    if b"PRIVATE KEY" in _pem(path, what):
        return load_private_key(path, algorithm, what)
    return load_public_key(path, algorithm, what)


def private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def write_key_pair(key: PrivateKey, private_path: PathLike, public_path: PathLike) -> tuple[Path, Path]:
    """`key` as a PKCS#8 PEM file created with mode 0600 (never readable by others, not even
    briefly) and its public half beside it; parent folders are created."""
    private, public = Path(private_path), Path(public_path)
    private.parent.mkdir(parents=True, exist_ok=True)
    public.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem(key))
    os.chmod(private, 0o600)  # an existing file keeps its mode through O_TRUNC
    public.write_bytes(public_pem(key.public_key()))
    return private, public


__all__ = ["KeyAlgorithm", "PrivateKey", "PublicKey", "load_either_key", "load_private_key", "load_public_key",
           "private_pem", "public_pem", "write_key_pair"]
