"""Encrypted adapter packages: sealing for the packer, opening for the device.

A signed package (`tinyswap.package`) proves who made an adapter; an encrypted one also keeps
its weights confidential in transit and at rest, as MCUboot's encrypted images and SUIT's
firmware encryption (draft-ietf-suit-firmware-encryption) do. The payload is encrypted once
under a fresh content key; the content key is wrapped once per recipient (a device, or a
device group sharing one key pair), so one package serves a fleet.

Format version 2 (`tinyswap.package` documents the byte layout, which is version 1's): the
payload is `AES-256-GCM(content key, nonce, plaintext payload, aad)` = ciphertext || 16-byte
tag, and the metadata carries one more object, all binary fields lowercase hex:

    "encryption": {
      "algorithm":        "A256GCM"                     content encryption (ContentAlgorithm)
      "key_wrap":         "ECDH-ES+X25519+HKDF-SHA256+A256KW"   per-recipient wrap (KeyWrapAlgorithm)
      "nonce":            12 bytes, random              the AES-GCM nonce of the payload
      "plaintext_length": int                           what the tensor table tiles; payload = this + 16
      "recipients": [                                   1 to MAX_RECIPIENTS (64), distinct key ids
        {"key_id":        32 bytes   SHA-256 of the recipient's raw X25519 public key
         "ephemeral_key": 32 bytes   a one-use X25519 public key made for this recipient
         "wrapped_key":   40 bytes   the content key, AES key wrap (RFC 3394) under the KEK}
      ]
    }

Per recipient (the structure of COSE's ECDH-ES+A256KW, RFC 9053, not its encoding):

    shared = X25519(ephemeral private, recipient public)            (= X25519(device private, ephemeral public))
    KEK    = HKDF-SHA256(shared, salt = none, length 32,
                         info = KDF_INFO || ephemeral public || recipient public)
    wrapped_key = AES-256-KW(KEK, content key)

The HKDF info names the scheme and binds both public keys, so a KEK is never reused across
recipients or packages. AES key wrap carries its own integrity check (a wrong device key or a
changed wrapped key fails as `KeyUnwrapError`, before the payload is touched) and needs no nonce.

Associated data of the payload AEAD: the package's bytes [0, 10+M), i.e. magic, format
version, metadata length and the whole metadata as the file holds it, `encryption` object
included. Why these bytes: they are stable (everything in them exists before the payload is
encrypted: nonce, wrapped keys, plaintext length, tensor table, name, version, sequence, base
digest, tags), exact (no re-serialisation on the device, hence no canonical-JSON question), and
they are what gives the plaintext its meaning: the tensor table that cuts it into slot tensors,
the base model it is for, the tenant it belongs to. So ciphertext cannot be moved under another
header (another name, sequence, tenant or tensor table) even by someone who holds a trusted
signing key but not the content key: the tag fails (`CiphertextError`). The digest and the
Ed25519 signature still come first and cover everything; adding a recipient means sealing
again with a fresh content key and nonce (the header changes, and a GCM key and nonce are
never used twice).

Order on the device (`SwapManager.verify`): parse (bounds, digest), trusted key, signature,
base binding, slot layout, anti-rollback, and only then `open_package`; its plaintext lives in
RAM only (the returned `AdapterPackage`'s `payload`), the store keeps the encrypted file, and
the package's identity (`content_digest`) stays the digest of the encrypted file. Refusals are
`DecryptionError`s: `NotARecipientError` (no entry for any key of this device, or no device key
configured), `KeyUnwrapError`, `CiphertextError` (the AEAD tag fails). All primitives are the
`cryptography` package's.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, Union

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from tinyswap.errors import TinySwapError
from tinyswap.keys import KeyAlgorithm, load_private_key, load_public_key, write_key_pair
from tinyswap.package import (
    AEAD_NONCE_BYTES,
    ENCRYPTED_FORMAT_VERSION,
    MAX_RECIPIENTS,
    AdapterPackage,
    ContentAlgorithm,
    KeyWrapAlgorithm,
    PackageError,
    Recipient,
    assemble_package,
    header,
    parse_package,
    serialise_metadata,
)

#: HKDF info prefix: the scheme's name and version; both public keys follow it.
KDF_INFO = b"tinyswap-envelope-v1 X25519 HKDF-SHA256 A256KW"
CONTENT_KEY_BYTES = 32  # AES-256


class DecryptionError(PackageError):
    """An encrypted package could not be decrypted on this device; nothing was changed."""


class NotARecipientError(DecryptionError):
    """The package has no recipient entry for any of this device's keys (or none is configured)."""


class KeyUnwrapError(DecryptionError):
    """The recipient entry names this device's key but its content key does not unwrap
    (a tampered wrapped or ephemeral key, or a key pair whose public half was mislabelled)."""


class CiphertextError(DecryptionError):
    """The content key unwrapped but the payload's AES-GCM tag does not verify (tampered
    ciphertext or header)."""


class SealError(TinySwapError):
    """A package cannot be sealed as asked (already encrypted, no or too many recipients)."""


@dataclass(frozen=True)
class DecryptWork:
    """The CPU work one `open_package` call did, for a device's timing model."""

    package: str
    key_agreements: int  # X25519 scalar multiplications (one per recipient entry tried)
    ciphertext_bytes: int  # bytes run through AES-GCM (0 if refused before the payload)
    ok: bool


def raw_public_bytes(public_key: X25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def device_key_id(key: X25519PublicKey | X25519PrivateKey) -> bytes:
    """SHA-256 of the raw X25519 public key: what a recipient entry's `key_id` names."""
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return hashlib.sha256(raw_public_bytes(public)).digest()


class DeviceKeys:
    """This device's X25519 private keys (its own, its device group's), by key id.

    on_work: told what each opening cost (a simulated device charges it to its timeline).
    """

    def __init__(self, keys: Iterable[X25519PrivateKey] = (), *,
                 on_work: Callable[[DecryptWork], None] | None = None) -> None:
        self._keys: dict[bytes, X25519PrivateKey] = {}
        for key in keys:
            if not isinstance(key, X25519PrivateKey):
                raise TypeError(f"a device key must be an X25519PrivateKey, got {type(key).__name__}")
            self._keys[device_key_id(key)] = key
        self.on_work = on_work

    @classmethod
    def of(cls, keys: DeviceKeys | Iterable[X25519PrivateKey] | None) -> DeviceKeys:
        if isinstance(keys, DeviceKeys):
            return keys
        return cls(keys or ())

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[tuple[bytes, X25519PrivateKey]]:
        return iter(self._keys.items())

    @property
    def key_ids(self) -> tuple[bytes, ...]:
        return tuple(self._keys)


DeviceKeySource = Union[DeviceKeys, Iterable[X25519PrivateKey], None]


# ------------------------------------------------------------------------------------ packer side

def _kek(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=KDF_INFO + ephemeral_public + recipient_public).derive(shared)


def _wrap(content_key: bytes, recipient: X25519PublicKey) -> Recipient:
    ephemeral = X25519PrivateKey.generate()  # one per recipient: no KEK is ever derived twice
    ephemeral_public = raw_public_bytes(ephemeral.public_key())
    kek = _kek(ephemeral.exchange(recipient), ephemeral_public, raw_public_bytes(recipient))
    return Recipient(device_key_id(recipient), ephemeral_public, aes_key_wrap(kek, content_key))


def seal_package(package: bytes | AdapterPackage, signing_key: Ed25519PrivateKey,
                 recipients: Sequence[X25519PublicKey]) -> bytes:
    """A plaintext (version-1) package as a version-2 package encrypted for `recipients`,
    signed with `signing_key`. The metadata, tensor table included, is kept as it is; the
    caller vouches for the plaintext package (the packer's own output)."""
    pkg = package if isinstance(package, AdapterPackage) else parse_package(package)
    if pkg.encryption is not None:
        raise SealError(f"package {pkg.name!r} is already encrypted")
    publics = list(recipients)
    if not 1 <= len(publics) <= MAX_RECIPIENTS:
        raise SealError(f"package {pkg.name!r}: {len(publics)} recipients; 1 to {MAX_RECIPIENTS} are allowed")
    for key in publics:
        if not isinstance(key, X25519PublicKey):
            raise SealError(f"package {pkg.name!r}: a recipient must be an X25519 public key, "
                            f"got {type(key).__name__}")
    ids = [device_key_id(k) for k in publics]
    if len(set(ids)) != len(ids):
        raise SealError(f"package {pkg.name!r}: a recipient key is named twice")
    content_key = AESGCM.generate_key(bit_length=8 * CONTENT_KEY_BYTES)
    nonce = os.urandom(AEAD_NONCE_BYTES)  # the content key is fresh too, so a repeat is harmless anyway
    plaintext = bytes(pkg.payload)
    entries = [_wrap(content_key, k) for k in publics]
    metadata = {k: v for k, v in pkg.metadata.items() if k != "encryption"}
    metadata["encryption"] = {
        "algorithm": ContentAlgorithm.A256GCM.value, "key_wrap": KeyWrapAlgorithm.X25519_HKDF_A256KW.value,
        "nonce": nonce.hex(), "plaintext_length": len(plaintext),
        "recipients": [{"key_id": r.key_id.hex(), "ephemeral_key": r.ephemeral_key.hex(),
                        "wrapped_key": r.wrapped_key.hex()} for r in entries],
    }
    meta = serialise_metadata(metadata)
    ciphertext = AESGCM(content_key).encrypt(nonce, plaintext, header(ENCRYPTED_FORMAT_VERSION, meta))
    return assemble_package(ENCRYPTED_FORMAT_VERSION, meta, ciphertext, signing_key)


# ------------------------------------------------------------------------------------ device side

def _unwrap(name: str, key: X25519PrivateKey, entry: Recipient) -> bytes:
    ephemeral = X25519PublicKey.from_public_bytes(entry.ephemeral_key)  # 32 bytes: checked by the parser
    try:
        shared = key.exchange(ephemeral)
    except ValueError:  # a low-order point gives the all-zero secret, which cryptography refuses
        raise KeyUnwrapError(f"package {name!r}: recipient {entry.key_id.hex()[:16]}...'s ephemeral key is a "
                             "low-order point") from None
    kek = _kek(shared, entry.ephemeral_key, raw_public_bytes(key.public_key()))
    try:
        content_key = aes_key_unwrap(kek, entry.wrapped_key)
    except InvalidUnwrap:
        raise KeyUnwrapError(f"package {name!r}: the content key wrapped for recipient "
                             f"{entry.key_id.hex()[:16]}... does not unwrap with this device's key (tampered "
                             "wrapped or ephemeral key)") from None
    if len(content_key) != CONTENT_KEY_BYTES:
        raise KeyUnwrapError(f"package {name!r}: the unwrapped content key is {len(content_key)} bytes, "
                             f"expected {CONTENT_KEY_BYTES}")
    return content_key


def open_package(package: AdapterPackage, device_keys: DeviceKeySource) -> AdapterPackage:
    """The package with its payload decrypted (RAM only), or the package itself if it is not
    encrypted or already decrypted. Call it only after the package was verified (signature,
    base binding, layout, sequence): it authenticates the payload, not the signer. Raises a
    `DecryptionError` subclass; changes nothing."""
    enc = package.encryption
    if enc is None or package.decrypted:
        return package
    keys = DeviceKeys.of(device_keys)
    name = package.name
    matches = [(key, entry) for kid, key in keys if (entry := enc.recipient(kid)) is not None]
    if not matches:
        listed = ", ".join(r.key_id.hex()[:16] for r in enc.recipients[:8])
        if not len(keys):
            raise NotARecipientError(f"package {name!r} is encrypted and this device has no device key configured "
                                     f"(it is encrypted for {listed})")
        held = ", ".join(k.hex()[:16] for k in keys.key_ids[:8])
        raise NotARecipientError(f"package {name!r} is not encrypted for this device: its recipients are "
                                 f"{listed}; this device holds {held}")
    agreements = processed = 0
    ok = False
    try:
        content_key: bytes | None = None
        failure: KeyUnwrapError | None = None
        for key, entry in matches:  # a device in two groups may hold two listed keys
            agreements += 1
            try:
                content_key = _unwrap(name, key, entry)
                break
            except KeyUnwrapError as exc:
                failure = exc
        if content_key is None:
            assert failure is not None
            raise failure
        ciphertext = bytes(package.payload)
        processed = len(ciphertext)
        try:
            plaintext = AESGCM(content_key).decrypt(enc.nonce, ciphertext,
                                                    header(ENCRYPTED_FORMAT_VERSION, package.metadata_bytes))
        except InvalidTag:
            raise CiphertextError(f"package {name!r}: the AES-GCM tag of the payload does not verify "
                                  "(ciphertext or header tampered)") from None
        ok = True
    finally:
        if keys.on_work is not None:
            keys.on_work(DecryptWork(name, agreements, processed, ok))
    return replace(package, payload=memoryview(plaintext), decrypted=True)


# ------------------------------------------------------------------------------------ key files
# Reading and writing PEM files is `tinyswap.keys`'s job; these name the device's files.

def load_device_private_key(path: str | os.PathLike[str]) -> X25519PrivateKey:
    """A device's X25519 private key (PKCS#8 PEM), or one `InputFileError`."""
    key = load_private_key(path, KeyAlgorithm.X25519, "device key")
    assert isinstance(key, X25519PrivateKey)
    return key


def load_device_public_key(path: str | os.PathLike[str]) -> X25519PublicKey:
    """A recipient's X25519 public key (SubjectPublicKeyInfo PEM), or one `InputFileError`."""
    key = load_public_key(path, KeyAlgorithm.X25519, "device public key")
    assert isinstance(key, X25519PublicKey)
    return key


def write_device_key_pair(out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """A new X25519 key pair as `device.key.pem` (private, mode 0600) and `device.pub.pem`."""
    out = Path(out_dir)
    return write_key_pair(X25519PrivateKey.generate(), out / "device.key.pem", out / "device.pub.pem")


__all__ = [
    "CONTENT_KEY_BYTES", "KDF_INFO", "CiphertextError", "DecryptWork", "DecryptionError", "DeviceKeySource",
    "DeviceKeys", "KeyUnwrapError", "NotARecipientError", "SealError", "device_key_id",
    "load_device_private_key", "load_device_public_key", "open_package", "raw_public_bytes", "seal_package",
    "write_device_key_pair",
]
