"""Signed adapter packages: the format, the bounded parser and the verifier.

A package carries one adapter, already quantized to a bundle's slot scales, bound to that
bundle's base model. Layout (little-endian):

    offset  size  field
    0       4     magic b"TSAP"
    4       2     format version (1)
    6       4     metadata length M (JSON, UTF-8)
    10      M     metadata
    10+M    8     payload length P
    18+M    P     payload: the slot tensors' bytes, concatenated in metadata order
    18+M+P  32    SHA-256 of bytes [0, 18+M+P)
    50+M+P  32    signer key id: SHA-256 of the raw Ed25519 public key
    82+M+P  64    Ed25519 signature of bytes [0, 82+M+P)

Nothing may follow. The metadata's shape is checked completely before anything reads it (every
field the swap manager uses has its JSON type; `tags` is absent or an object of string ->
string), and the tensors tile the payload exactly, in order. Verification (SUIT, RFC 9124
style): structure and bounds, digest, a
trusted key and its signature, the base-model digest, the slot layout and shapes, and a
sequence number above the last one accepted for the adapter's name (anti-rollback). Each
failure is its own `PackageError` subclass and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
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
MAX_METADATA_BYTES = 1 << 20
MAX_PAYLOAD_BYTES = 64 << 20
_HEAD = struct.Struct("<4sHI")
_LEN64 = struct.Struct("<Q")
DIGEST_BYTES, KEY_ID_BYTES, SIGNATURE_BYTES = 32, 32, 64
_TRAILER = DIGEST_BYTES + KEY_ID_BYTES + SIGNATURE_BYTES


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

    def tensor_bytes(self, t: PackageTensor) -> memoryview:
        return self.payload[t.offset : t.offset + t.length]

    @cached_property
    def tensor_views(self) -> dict[tuple[str, str], memoryview]:
        """(layer, role) -> that tensor's bytes, views into `payload`. Built once and owned by
        the package, so it lives exactly as long as the package does (in the RAM cache or a
        caller's hands) and adds no bytes of its own."""
        return {(t.layer, t.role): self.tensor_bytes(t) for t in self.tensors}


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
    tags = metadata.get("tags")
    if tags is not None:
        if not isinstance(tags, dict):
            raise PackageFormatError(f"package {name!r}: metadata field 'tags' must be an object of string -> "
                                     f"string, got {type(tags).__name__} {tags!r}")
        for tag, value in tags.items():
            if value is not None and not isinstance(value, str):
                raise PackageFormatError(f"package {name!r}: tag {tag!r} must be a string, "
                                         f"got {type(value).__name__} {value!r}")


def parse_package(data: bytes | bytearray | memoryview) -> AdapterPackage:
    """Check every bound and the digest; raise `PackageFormatError` / `PackageDigestError`."""
    raw = bytes(data)
    if len(raw) < _HEAD.size + _LEN64.size + _TRAILER:
        raise PackageFormatError(f"{len(raw)} bytes is too short for an adapter package")
    magic, version, meta_len = _HEAD.unpack_from(raw, 0)
    if magic != MAGIC:
        raise PackageFormatError(f"magic is {magic!r}, expected {MAGIC!r}: not a tinyswap adapter package")
    if version != FORMAT_VERSION:
        raise PackageFormatError(f"format version {version} is not supported (this reader knows {FORMAT_VERSION})")
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
    if hashlib.sha256(raw[:body_end]).digest() != digest:
        raise PackageDigestError("SHA-256 digest mismatch: the package is corrupt")
    try:
        # Bounded (depth, integer digits): the metadata is parsed before its signature is checked.
        metadata = parse_json_bounded(raw[_HEAD.size : _HEAD.size + meta_len].decode("utf-8"), "package metadata")
    except (UnicodeDecodeError, json.JSONDecodeError, InputFileError) as exc:
        raise PackageFormatError(f"metadata is not UTF-8 JSON: {exc}") from None
    check_metadata(metadata)
    tensors = []
    end_of_previous = 0
    for i, t in enumerate(metadata["tensors"]):
        if not isinstance(t, dict):
            raise PackageFormatError(f"tensor {i}: malformed entry (an object expected, got {type(t).__name__})")
        for key, kind in _TENSOR_FIELDS.items():
            if not _is(t.get(key), kind):
                raise PackageFormatError(f"tensor {i}: field {key!r} must be a {kind.__name__}, got {t.get(key)!r}")
        if not all(_is(d, int) for d in t["shape"]):
            raise PackageFormatError(f"tensor {i} ({t['layer']}/{t['role']}): shape {t['shape']!r} "
                                     "is not a list of ints")
        pt = PackageTensor(t["layer"], t["role"], tuple(t["shape"]), t["dtype"], t["offset"], t["length"])
        if pt.dtype not in ("int8", "int32"):
            raise PackageFormatError(f"tensor {i} ({pt.layer}/{pt.role}): dtype {pt.dtype!r} is not int8 or int32")
        itemsize = np.dtype(pt.dtype).itemsize
        if any(d < 0 for d in pt.shape) or pt.length != itemsize * int(np.prod(pt.shape, dtype=object)):
            raise PackageFormatError(f"tensor {i} ({pt.layer}/{pt.role}): {pt.length} bytes do not hold shape {pt.shape}")
        if pt.offset < 0 or pt.offset + pt.length > payload_len:
            raise PackageFormatError(f"tensor {i} ({pt.layer}/{pt.role}): bytes [{pt.offset}, {pt.offset + pt.length}) "
                                     f"run past the {payload_len}-byte payload")
        if pt.offset != end_of_previous:  # concatenated in metadata order: no gap, no overlap
            raise PackageFormatError(f"tensor {i} ({pt.layer}/{pt.role}): starts at payload offset {pt.offset}, "
                                     f"expected {end_of_previous} (tensors are concatenated in order)")
        end_of_previous = pt.offset + pt.length
        tensors.append(pt)
    if end_of_previous != payload_len:
        raise PackageFormatError(f"package {metadata['name']!r}: payload length {payload_len} is not the sum of its "
                                 f"tensors' lengths ({end_of_previous})")
    return AdapterPackage(
        metadata=metadata, tensors=tuple(tensors), payload=memoryview(raw)[pos:body_end], digest=digest,
        key_id=raw[body_end + DIGEST_BYTES : body_end + DIGEST_BYTES + KEY_ID_BYTES],
        signature=raw[end - SIGNATURE_BYTES : end], raw=raw,
    )


def key_id(public_key: Ed25519PublicKey) -> bytes:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()


class Keyring:
    """Trusted Ed25519 public keys, by key id."""

    def __init__(self, keys: list[Ed25519PublicKey] | None = None) -> None:
        self._keys: dict[bytes, Ed25519PublicKey] = {}
        for k in keys or []:
            self.add(k)

    def add(self, public_key: Ed25519PublicKey) -> bytes:
        kid = key_id(public_key)
        self._keys[kid] = public_key
        return kid

    def get(self, kid: bytes) -> Ed25519PublicKey | None:
        return self._keys.get(bytes(kid))


def check_slot_layout(package: AdapterPackage, slot_tensors: list[Mapping[str, Any]]) -> None:
    """The package must name exactly the slot's tensors, with the same shapes and dtypes."""
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


def verify_package(package: AdapterPackage, keyring: Keyring, base_digest: str,
                   slot_tensors: list[Mapping[str, Any]], last_sequence: Mapping[str, int]) -> None:
    """Signature, base binding, slot layout and anti-rollback, in that order (the digest was
    checked by `parse_package`). Raises a `PackageError` subclass; changes nothing."""
    check_metadata(package.metadata)  # parse_package checked it; a hand-built AdapterPackage may not be
    public_key = keyring.get(package.key_id)
    if public_key is None:
        raise UnknownKeyError(f"package {package.name!r} is signed by untrusted key {package.key_id.hex()[:16]}...")
    try:
        public_key.verify(package.signature, package.raw[: len(package.raw) - SIGNATURE_BYTES])
    except InvalidSignature:
        raise SignatureError(f"package {package.name!r}: the Ed25519 signature does not verify") from None
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
    meta = json.dumps({**metadata, "tensors": entries}, sort_keys=True, separators=(",", ":")).encode()
    body = _HEAD.pack(MAGIC, FORMAT_VERSION, len(meta)) + meta + _LEN64.pack(len(payload)) + bytes(payload)
    signed = body + hashlib.sha256(body).digest() + key_id(private_key.public_key())
    return signed + private_key.sign(signed)
