"""Signed adapter packages: the format, the bounded parser and the verifier.

A package carries one adapter, already quantized to a bundle's slot scales, bound to that
bundle's base model. Layout (little-endian):

    offset  size  field
    0       4     magic b"TSAP"
    4       2     format version: 1 (plaintext) or 2 (encrypted payload, see below)
    6       4     metadata length M (JSON, UTF-8)
    10      M     metadata
    10+M    8     payload length P
    18+M    P     payload: the slot tensors' bytes, concatenated in metadata order
    18+M+P  32    SHA-256 of bytes [0, 18+M+P)
    50+M+P  32    signer key id: SHA-256 of the raw Ed25519 public key
    82+M+P  64    Ed25519 signature of bytes [0, 82+M+P)

Nothing may follow. Format version 2 is the same layout with an encrypted payload: the metadata
carries an `encryption` object (content algorithm, nonce, plaintext length, up to
`MAX_RECIPIENTS` recipients with their wrapped content keys; fields, cryptography and why in
`tinyswap.envelope`), the payload is the AES-256-GCM ciphertext of the plaintext payload
followed by its 16-byte tag (P = plaintext length + 16), and the tensor table tiles the
*plaintext* length. The digest and the signature cover the ciphertext and the wrapped keys. A
version-1 package never has an `encryption` field and a version-2 one always has it, so a
reader that knows only version 1 refuses an encrypted package by its version instead of
writing ciphertext into a slot. Parsing a version-2 package does not decrypt it: its tensor
bytes are unavailable (`SealedPackageError`) until `tinyswap.envelope.open_package` has
verified the AEAD tag with a device key.

The metadata's shape is checked completely before anything reads it (every
field the swap manager uses has its JSON type; `tags` is absent or an object of string ->
string), and the tensors tile the payload exactly, in order. Verification (SUIT, RFC 9124
style): structure and bounds, digest, a
trusted key and its signature, the base-model digest, the slot layout and shapes, and a
sequence number above the last one accepted for the adapter's name (anti-rollback). Each
failure is its own `PackageError` subclass and changes nothing.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
import struct
from functools import cached_property
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tinyswap.errors import TinySwapError
from tinyswap.errors import InputFileError
from tinyswap.files import parse_json_bounded

MAGIC = b"TSAP"
FORMAT_VERSION = 1
ENCRYPTED_FORMAT_VERSION = 2
MAX_METADATA_BYTES = 1 << 20
MAX_PAYLOAD_BYTES = 64 << 20
_HEAD = struct.Struct("<4sHI")
_LEN64 = struct.Struct("<Q")
DIGEST_BYTES, KEY_ID_BYTES, SIGNATURE_BYTES = 32, 32, 64
_TRAILER = DIGEST_BYTES + KEY_ID_BYTES + SIGNATURE_BYTES
#: The largest well-formed package: what a file reader may read before parsing refuses the rest.
MAX_PACKAGE_BYTES = 4 + 2 + 4 + MAX_METADATA_BYTES + 8 + MAX_PAYLOAD_BYTES + _TRAILER
#: Encrypted payloads (format version 2): bounds of the `encryption` metadata object.
MAX_RECIPIENTS = 64  # a device group's worth; bounds the parser's work before the signature is checked
AEAD_TAG_BYTES = 16  # AES-GCM's full-length tag; the ciphertext is the plaintext length + 16
AEAD_NONCE_BYTES = 12  # AES-GCM's 96-bit nonce (NIST SP 800-38D's recommended length)
X25519_KEY_BYTES = 32
WRAPPED_KEY_BYTES = 40  # a 32-byte content key under AES key wrap (RFC 3394): n + 8 bytes


class PackageError(TinySwapError):
    """An adapter package was refused; nothing was changed."""


class PackageFormatError(PackageError):
    """Malformed, truncated or oversized package, or bytes after its end."""


class PackageDigestError(PackageError):
    """The SHA-256 digest does not match the package contents (corruption)."""


class UnknownKeyError(PackageError):
    """The package is signed by a key the keyring does not trust."""


class SignatureError(PackageError):
    """The signature does not verify with the named key."""


class KeyScopeError(UnknownKeyError):
    """The signing key is trusted, but only for another tenant's packages."""


class WrongBaseModelError(PackageError):
    """The package is bound to a different base model."""


class SlotLayoutError(PackageError):
    """The package's tensors do not fit the bundle's slot layout (layers, roles, shapes, scales)."""


class UnknownLayerError(SlotLayoutError):
    """The package carries tensors for a layer (or role) the slot plan does not have."""


class MissingSlotTensorsError(SlotLayoutError):
    """The package lacks some of the slot's tensors (the packer zero-fills untargeted layers)."""


class SlotShapeError(SlotLayoutError):
    """A tensor's shape or dtype differs from the slot's (e.g. a rank above the slot's)."""


class RollbackError(PackageError):
    """The package's sequence number is not above the last accepted for its name."""


class SealedPackageError(PackageError):
    """The package's payload is encrypted and was not decrypted: its tensor bytes are unavailable."""


class ContentAlgorithm(str, enum.Enum):
    """How the payload is encrypted (a `str` enum: the metadata holds its value)."""

    A256GCM = "A256GCM"  # AES-256-GCM, 96-bit nonce, 128-bit tag


class KeyWrapAlgorithm(str, enum.Enum):
    """How each recipient's copy of the content key is wrapped (see `tinyswap.envelope`)."""

    X25519_HKDF_A256KW = "ECDH-ES+X25519+HKDF-SHA256+A256KW"


@dataclass(frozen=True)
class Recipient:
    """One device (or device group) a package is encrypted for."""

    key_id: bytes  # SHA-256 of the recipient's raw X25519 public key
    ephemeral_key: bytes  # the sender's one-use X25519 public key for this recipient (raw, 32 bytes)
    wrapped_key: bytes  # the content key under this recipient's key-encryption key (40 bytes)


@dataclass(frozen=True)
class Encryption:
    """The `encryption` metadata object of a version-2 package, checked and typed."""

    algorithm: ContentAlgorithm
    key_wrap: KeyWrapAlgorithm
    nonce: bytes
    plaintext_length: int
    recipients: tuple[Recipient, ...]

    def recipient(self, kid: bytes) -> Recipient | None:
        return next((r for r in self.recipients if r.key_id == kid), None)


@dataclass(frozen=True)
class PackageTensor:
    layer: str
    role: str
    shape: tuple[int, ...]
    dtype: str
    offset: int  # within the payload
    length: int


@dataclass(frozen=True)
class AdapterPackage:
    """A parsed (not yet verified) package. `raw` is the whole file."""

    metadata: dict[str, Any]
    tensors: tuple[PackageTensor, ...]
    payload: memoryview = field(repr=False)
    digest: bytes
    key_id: bytes
    signature: bytes
    raw: bytes = field(repr=False)
    # Format version 2: the checked `encryption` object. `payload` is then the ciphertext and
    # its tag until `tinyswap.envelope.open_package` returns a copy whose `payload` is the
    # plaintext (`decrypted`); `raw`, `digest` and `content_digest` stay the encrypted file's.
    encryption: Encryption | None = None
    decrypted: bool = False

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def sequence(self) -> int:
        return int(self.metadata["sequence"])

    @cached_property
    def content_digest(self) -> str:
        """Identity of the adapter: the SHA-256 over metadata and payload, hex (computed once:
        the swap path asks for it many times)."""
        return self.digest.hex()

    @property
    def sealed(self) -> bool:
        """Encrypted and not decrypted: the payload is ciphertext, no tensor bytes to give."""
        return self.encryption is not None and not self.decrypted

    @property
    def metadata_bytes(self) -> bytes:
        """The metadata exactly as the file holds it (UTF-8 JSON)."""
        meta_len = _HEAD.unpack_from(self.raw, 0)[2]
        return self.raw[_HEAD.size : _HEAD.size + meta_len]

    @property
    def ram_bytes(self) -> int:
        """What holding this package costs RAM: the file, plus the plaintext once decrypted."""
        return len(self.raw) + (len(self.payload) if self.decrypted else 0)

    def tensor_bytes(self, t: PackageTensor) -> memoryview:
        if self.sealed:
            raise SealedPackageError(f"package {self.name!r} is encrypted and was not decrypted: its tensor bytes "
                                     "are available only after a device key opened it (tinyswap.envelope)")
        return self.payload[t.offset : t.offset + t.length]

    @cached_property
    def tensor_views(self) -> dict[tuple[str, str], memoryview]:
        """(layer, role) -> that tensor's bytes, views into `payload`. Built once and owned by
        the package, so it lives exactly as long as the package does (in the RAM cache or a
        caller's hands) and adds no bytes of its own."""
        return {(t.layer, t.role): self.tensor_bytes(t) for t in self.tensors}


_HEX = re.compile(r"[0-9a-f]*")
#: `encryption` object fields and their JSON types; binary fields are lowercase hex of a fixed length.
_ENCRYPTION_FIELDS = {"algorithm": str, "key_wrap": str, "nonce": str, "plaintext_length": int, "recipients": list}
_RECIPIENT_FIELDS = {"key_id": KEY_ID_BYTES, "ephemeral_key": X25519_KEY_BYTES, "wrapped_key": WRAPPED_KEY_BYTES}

#: Sequence numbers are unsigned 64-bit counters on a device (a C `uint64_t`, the record's
#: anti-rollback field); kept below 2**63 so every language's signed 64-bit integer holds them.
MAX_SEQUENCE = 2**63 - 1
_REQUIRED = {"name": str, "version": str, "sequence": int, "base_digest": str, "kind": str, "tensors": list}
#: Tensor table entry fields and their JSON types (`shape` is a list of ints).
_TENSOR_FIELDS = {"layer": str, "role": str, "shape": list, "dtype": str, "offset": int, "length": int}


def _is(value: Any, kind: type) -> bool:
    """`isinstance`, except that a JSON boolean is never an int."""
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def check_metadata(metadata: Any) -> None:
    """The metadata's shape, completely, before anything reads it: the required fields and
    their types, and `tags` (absent, null or an object of string -> string; a null value means
    the tag is not set). Raises `PackageFormatError` naming the package and the field."""
    if not isinstance(metadata, dict):
        raise PackageFormatError("metadata must be a JSON object")
    for key, kind in _REQUIRED.items():
        if not _is(metadata.get(key), kind):
            raise PackageFormatError(f"metadata field {key!r} must be a {kind.__name__}, got {metadata.get(key)!r}")
    name = metadata["name"]
    if not 0 <= metadata["sequence"] <= MAX_SEQUENCE:
        raise PackageFormatError(f"package {name!r}: sequence {metadata['sequence']} is outside 0..{MAX_SEQUENCE}")
    tags = metadata.get("tags")
    if tags is not None:
        if not isinstance(tags, dict):
            raise PackageFormatError(f"package {name!r}: metadata field 'tags' must be an object of string -> "
                                     f"string, got {type(tags).__name__} {tags!r}")
        for tag, value in tags.items():
            if value is not None and not isinstance(value, str):
                raise PackageFormatError(f"package {name!r}: tag {tag!r} must be a string, "
                                         f"got {type(value).__name__} {value!r}")


_INT_TYPE = {int}
_ITEMSIZE = {"int8": 1, "int32": 4}  # the tensor dtypes a slot holds


def _tensor_entry(i: int, t: Any) -> PackageTensor:
    """Tensor table entry `i`, every field's JSON type checked (bounds are the caller's)."""
    get = t.get if type(t) is dict else None
    if get is not None:
        layer, role, shape, dtype, offset, length = (get("layer"), get("role"), get("shape"), get("dtype"),
                                                     get("offset"), get("length"))
        # The common case in one expression: the JSON decoder makes exact builtin types (and a
        # bool's type is not int), so `type(...) is` implies `_is`; anything else takes the
        # field-by-field check below, which names the first bad field.
        if (type(layer) is str and type(role) is str and type(dtype) is str and type(offset) is int
                and type(length) is int and type(shape) is list and set(map(type, shape)) <= _INT_TYPE):
            return PackageTensor(layer, role, tuple(shape), dtype, offset, length)
    if not isinstance(t, dict):
        raise PackageFormatError(f"tensor {i}: malformed entry (an object expected, got {type(t).__name__})")
    for key, kind in _TENSOR_FIELDS.items():
        if not _is(t.get(key), kind):
            raise PackageFormatError(f"tensor {i}: field {key!r} must be a {kind.__name__}, got {t.get(key)!r}")
    if not all(_is(d, int) for d in t["shape"]):
        raise PackageFormatError(f"tensor {i} ({t['layer']}/{t['role']}): shape {t['shape']!r} "
                                 "is not a list of ints")
    return PackageTensor(t["layer"], t["role"], tuple(t["shape"]), t["dtype"], t["offset"], t["length"])


def _hex_field(value: Any, size: int, where: str) -> bytes:
    """Exactly `size` bytes as lowercase hex (one spelling per value: no case or padding games)."""
    if not isinstance(value, str) or len(value) != 2 * size or not _HEX.fullmatch(value):
        shown = value if isinstance(value, str) and len(value) <= 2 * size + 8 else type(value).__name__
        raise PackageFormatError(f"{where} must be {size} bytes as lowercase hex, got {shown!r}")
    return bytes.fromhex(value)


def parse_encryption(value: Any, name: str) -> Encryption:
    """The `encryption` object of a version-2 package, every field's type and length checked
    before use; raises `PackageFormatError` naming the package and the field."""
    where = f"package {name!r}: encryption"
    if not isinstance(value, dict):
        raise PackageFormatError(f"{where} must be an object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(_ENCRYPTION_FIELDS))
    if unknown:
        raise PackageFormatError(f"{where} has unknown fields {unknown}")
    for key, kind in _ENCRYPTION_FIELDS.items():
        if not _is(value.get(key), kind):
            shown = value.get(key) if not isinstance(value.get(key), (list, dict)) else type(value.get(key)).__name__
            raise PackageFormatError(f"{where} field {key!r} must be a {kind.__name__}, got {shown!r}")
    try:
        algorithm = ContentAlgorithm(value["algorithm"])
    except ValueError:
        raise PackageFormatError(f"{where} algorithm {value['algorithm'][:40]!r} is not supported "
                                 f"(this reader knows {[a.value for a in ContentAlgorithm]})") from None
    try:
        key_wrap = KeyWrapAlgorithm(value["key_wrap"])
    except ValueError:
        raise PackageFormatError(f"{where} key_wrap {value['key_wrap'][:60]!r} is not supported "
                                 f"(this reader knows {[a.value for a in KeyWrapAlgorithm]})") from None
    nonce = _hex_field(value["nonce"], AEAD_NONCE_BYTES, f"{where} nonce")
    if not 0 <= value["plaintext_length"] <= MAX_PAYLOAD_BYTES - AEAD_TAG_BYTES:
        raise PackageFormatError(f"{where} plaintext_length {value['plaintext_length']} is out of range")
    entries = value["recipients"]
    if not 1 <= len(entries) <= MAX_RECIPIENTS:
        raise PackageFormatError(f"{where} lists {len(entries)} recipients; 1 to {MAX_RECIPIENTS} are allowed")
    recipients = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise PackageFormatError(f"{where} recipient {i} must be an object, got {type(entry).__name__}")
        if set(entry) != set(_RECIPIENT_FIELDS):
            raise PackageFormatError(f"{where} recipient {i} has fields {sorted(entry)[:8]}, expected "
                                     f"{sorted(_RECIPIENT_FIELDS)}")
        fields = {k: _hex_field(entry[k], size, f"{where} recipient {i} {k}") for k, size in _RECIPIENT_FIELDS.items()}
        recipients.append(Recipient(**fields))
    if len({r.key_id for r in recipients}) != len(recipients):
        raise PackageFormatError(f"{where} names a recipient key twice")
    return Encryption(algorithm, key_wrap, nonce, value["plaintext_length"], tuple(recipients))


def parse_package(data: bytes | bytearray | memoryview) -> AdapterPackage:
    """Check every bound and the digest; raise `PackageFormatError` / `PackageDigestError`."""
    raw = bytes(data)
    if len(raw) < _HEAD.size + _LEN64.size + _TRAILER:
        raise PackageFormatError(f"{len(raw)} bytes is too short for an adapter package")
    magic, version, meta_len = _HEAD.unpack_from(raw, 0)
    if magic != MAGIC:
        raise PackageFormatError(f"magic is {magic!r}, expected {MAGIC!r}: not a tinyswap adapter package")
    if version not in (FORMAT_VERSION, ENCRYPTED_FORMAT_VERSION):
        raise PackageFormatError(f"format version {version} is not supported (this reader knows "
                                 f"{FORMAT_VERSION} and {ENCRYPTED_FORMAT_VERSION})")
    if meta_len > MAX_METADATA_BYTES or _HEAD.size + meta_len + _LEN64.size > len(raw):
        raise PackageFormatError(f"metadata length {meta_len} runs past the {len(raw)}-byte package")
    pos = _HEAD.size + meta_len
    (payload_len,) = _LEN64.unpack_from(raw, pos)
    pos += _LEN64.size
    if payload_len > MAX_PAYLOAD_BYTES:
        raise PackageFormatError(f"payload length {payload_len} exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
    end = pos + payload_len + _TRAILER
    if end > len(raw):
        raise PackageFormatError(f"package is truncated: needs {end} bytes, has {len(raw)}")
    if end < len(raw):
        raise PackageFormatError(f"{len(raw) - end} unexpected bytes after the package's end")
    body_end = pos + payload_len
    digest = raw[body_end : body_end + DIGEST_BYTES]
    if hashlib.sha256(memoryview(raw)[:body_end]).digest() != digest:
        raise PackageDigestError("SHA-256 digest mismatch: the package is corrupt")
    try:
        # Bounded (depth, integer digits): the metadata is parsed before its signature is checked.
        metadata = parse_json_bounded(raw[_HEAD.size : _HEAD.size + meta_len].decode("utf-8"), "package metadata")
    except (UnicodeDecodeError, json.JSONDecodeError, InputFileError) as exc:
        raise PackageFormatError(f"metadata is not UTF-8 JSON: {exc}") from None
    check_metadata(metadata)
    encryption = None
    plaintext_len = payload_len
    if version == ENCRYPTED_FORMAT_VERSION:
        encryption = parse_encryption(metadata.get("encryption"), metadata["name"])
        plaintext_len = encryption.plaintext_length
        if payload_len != plaintext_len + AEAD_TAG_BYTES:
            raise PackageFormatError(f"package {metadata['name']!r}: encrypted payload is {payload_len} bytes, expected "
                                     f"the {plaintext_len}-byte plaintext plus the {AEAD_TAG_BYTES}-byte tag")
    elif "encryption" in metadata:
        raise PackageFormatError(f"package {metadata['name']!r}: an 'encryption' object needs format version "
                                 f"{ENCRYPTED_FORMAT_VERSION}, this package says {version}")
    tensors = []
    end_of_previous = 0
    for i, t in enumerate(metadata["tensors"]):
        pt = _tensor_entry(i, t)
        itemsize = _ITEMSIZE.get(pt.dtype)
        if itemsize is None:
            raise PackageFormatError(f"tensor {i} ({pt.layer}/{pt.role}): dtype {pt.dtype!r} is not int8 or int32")
        # math.prod on Python ints: exact for any shape (no overflow), and no NumPy call per tensor.
        if (pt.shape and min(pt.shape) < 0) or pt.length != itemsize * math.prod(pt.shape):
            raise PackageFormatError(f"tensor {i} ({pt.layer}/{pt.role}): {pt.length} bytes do not hold shape {pt.shape}")
        if pt.offset < 0 or pt.offset + pt.length > plaintext_len:
            raise PackageFormatError(f"tensor {i} ({pt.layer}/{pt.role}): bytes [{pt.offset}, {pt.offset + pt.length}) "
                                     f"run past the {plaintext_len}-byte payload")
        if pt.offset != end_of_previous:  # concatenated in metadata order: no gap, no overlap
            raise PackageFormatError(f"tensor {i} ({pt.layer}/{pt.role}): starts at payload offset {pt.offset}, "
                                     f"expected {end_of_previous} (tensors are concatenated in order)")
        end_of_previous = pt.offset + pt.length
        tensors.append(pt)
    if end_of_previous != plaintext_len:
        raise PackageFormatError(f"package {metadata['name']!r}: payload length {plaintext_len} is not the sum of its "
                                 f"tensors' lengths ({end_of_previous})")
    return AdapterPackage(
        metadata=metadata, tensors=tuple(tensors), payload=memoryview(raw)[pos:body_end], digest=digest,
        key_id=raw[body_end + DIGEST_BYTES : body_end + DIGEST_BYTES + KEY_ID_BYTES],
        signature=raw[end - SIGNATURE_BYTES : end], raw=raw, encryption=encryption,
    )


def key_id(public_key: Ed25519PublicKey) -> bytes:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()


class Keyring:
    """Trusted Ed25519 public keys, by key id.

    A key added with `tenant=` is trusted only for packages tagged with that tenant (a
    device's own training key signs only its own user's adapters: a leaked device key cannot
    sign an adapter for anyone else)."""

    def __init__(self, keys: list[Ed25519PublicKey] | None = None) -> None:
        self._keys: dict[bytes, Ed25519PublicKey] = {}
        self._tenants: dict[bytes, str] = {}
        for k in keys or []:
            self.add(k)

    def add(self, public_key: Ed25519PublicKey, *, tenant: str | None = None) -> bytes:
        kid = key_id(public_key)
        self._keys[kid] = public_key
        if tenant is None:
            self._tenants.pop(kid, None)
        else:
            self._tenants[kid] = tenant
        return kid

    def get(self, kid: bytes) -> Ed25519PublicKey | None:
        return self._keys.get(bytes(kid))

    def tenant_of(self, kid: bytes) -> str | None:
        """The only tenant whose packages this key may sign (None: any)."""
        return self._tenants.get(bytes(kid))


def check_slot_layout(package: AdapterPackage, slot_tensors: list[Mapping[str, Any]]) -> None:
    """The package must name exactly the slot's tensors, with the same shapes and dtypes."""
    # The packer writes them in slot order: then one pairwise comparison settles it (the checks
    # below accept any order, and name what differs).
    if len(package.tensors) == len(slot_tensors) and all(
            t.layer == e["layer"] and t.role == e["role"] and t.dtype == e["dtype"] and t.shape == tuple(e["shape"])
            for t, e in zip(package.tensors, slot_tensors)):
        return
    expected = {(t["layer"], t["role"]): t for t in slot_tensors}
    got = {(t.layer, t.role): t for t in package.tensors}
    if len(got) != len(package.tensors):
        raise SlotLayoutError(f"package {package.name!r} names a slot tensor twice")
    unknown = sorted(set(got) - set(expected))
    if unknown:
        raise UnknownLayerError(f"the package has tensors the slot plan does not: {unknown}")
    missing = sorted(set(expected) - set(got))
    if missing:
        raise MissingSlotTensorsError(f"the package lacks slot tensors {missing} (the packer zero-fills them)")
    for key, t in got.items():
        e = expected[key]
        if tuple(e["shape"]) != t.shape or e["dtype"] != t.dtype:
            raise SlotShapeError(f"{key[0]}/{key[1]}: package has {t.shape} {t.dtype}, slot has {tuple(e['shape'])} {e['dtype']}")


def verify_signature(package: AdapterPackage, keyring: Keyring) -> None:
    """A trusted key and its Ed25519 signature over everything before the signature (for an
    encrypted package: the ciphertext and the wrapped keys too)."""
    public_key = keyring.get(package.key_id)
    if public_key is None:
        raise UnknownKeyError(f"package {package.name!r} is signed by untrusted key {package.key_id.hex()[:16]}...")
    try:
        public_key.verify(package.signature, package.raw[: len(package.raw) - SIGNATURE_BYTES])
    except InvalidSignature:
        raise SignatureError(f"package {package.name!r}: the Ed25519 signature does not verify") from None
    scope = keyring.tenant_of(package.key_id)
    tenant = (package.metadata.get("tags") or {}).get("tenant")
    if scope is not None and tenant != scope:
        raise KeyScopeError(f"package {package.name!r} is tagged for tenant {tenant!r}, but its key "
                            f"{package.key_id.hex()[:16]}... is trusted only for tenant {scope!r}")


def verify_package(package: AdapterPackage, keyring: Keyring, base_digest: str,
                   slot_tensors: list[Mapping[str, Any]], last_sequence: Mapping[str, int]) -> None:
    """Signature, base binding, slot layout and anti-rollback, in that order (the digest was
    checked by `parse_package`). Raises a `PackageError` subclass; changes nothing."""
    check_metadata(package.metadata)  # parse_package checked it; a hand-built AdapterPackage may not be
    verify_signature(package, keyring)
    if package.metadata["base_digest"] != base_digest:
        raise WrongBaseModelError(f"package {package.name!r} is for base {package.metadata['base_digest'][:16]}..., "
                                  f"this model is {base_digest[:16]}...")
    check_slot_layout(package, slot_tensors)
    previous = last_sequence.get(package.name)
    if previous is not None and package.sequence <= previous:
        raise RollbackError(f"package {package.name!r} has sequence {package.sequence}, "
                            f"not above the accepted {previous}")


def build_package(metadata: dict[str, Any], tensors: list[tuple[str, str, np.ndarray]],
                  private_key: Ed25519PrivateKey) -> bytes:
    """Serialise and sign. `tensors` is (layer, role, array) in slot order."""
    payload = bytearray()
    entries = []
    for layer, role, array in tensors:
        array = np.ascontiguousarray(array)
        data = array.astype(array.dtype.newbyteorder("<")).tobytes()
        entries.append({"layer": layer, "role": role, "shape": list(array.shape), "dtype": array.dtype.name,
                        "offset": len(payload), "length": len(data)})
        payload += data
    meta = serialise_metadata({**metadata, "tensors": entries})
    return assemble_package(FORMAT_VERSION, meta, bytes(payload), private_key)


def serialise_metadata(metadata: Mapping[str, Any]) -> bytes:
    """The metadata as the packer writes it: sorted keys, no whitespace, ASCII JSON."""
    return json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode()


def header(version: int, metadata: bytes) -> bytes:
    """Bytes [0, 10+M): magic, format version, metadata length, metadata (what the envelope's
    AEAD authenticates as associated data)."""
    return _HEAD.pack(MAGIC, version, len(metadata)) + metadata


def assemble_package(version: int, metadata: bytes, payload: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """Lay out, digest and sign a package from its serialised metadata and payload."""
    body = header(version, metadata) + _LEN64.pack(len(payload)) + payload
    signed = body + hashlib.sha256(body).digest() + key_id(private_key.public_key())
    return signed + private_key.sign(signed)
