"""Device attestation tokens (PSA-attestation style): what a device says it runs, signed by a
key only that device holds, bound to a verifier's fresh nonce.

Why: a signed adapter package proves who built an adapter; it does not prove what a device in
the field is running now. A verifier sends a nonce, the device answers with a token signed by
its identity key (Ed25519; on a real MCU the key sits in the secure element and is used
through PSA Crypto `psa_sign_message`, never read out), and the verifier checks it against
the device's public key it recorded at manufacture. The nonce makes an old token useless (a
replay is refused), and the claims name the base model, every slot's committed content and
the confirmed state, so a tampered or stale device cannot pass for an updated one.

This module is shared by the host (the `tinyswap attest verify` command) and the device side
(the simulator builds tokens with `encode_token`): it depends only on `cryptography` for the
signature and on tinyswap's bounded JSON parser; it never implements a primitive itself.

Token (big-endian lengths), at most `MAX_TOKEN_BYTES`:

    offset  size  field
    0       4     magic b"TSAT"
    4       2     token format version (1)
    6       4     claims length L (at most MAX_CLAIMS_BYTES)
    10      L     claims: canonical JSON (UTF-8, keys sorted, no whitespace)
    10+L    64    Ed25519 signature by the device identity key over bytes [0, 10+L)

Nothing follows the signature. Claims, every field required, no other field allowed:

    nonce            hex of the verifier's nonce: 32, 48 or 64 bytes (PSA's challenge sizes)
    instance_id      hex SHA-256 of the device identity key's raw 32-byte public key (the
                     PSA instance id without its type byte): names the device
    profile          the device profile (e.g. "mcu-qspi") and device_class: its class string
    device_class
    base_digest      hex SHA-256 the slot map names for the base model (slot ranges zeroed)
    slots            one object per slot, in slot order:
                       slot            the slot index
                       content_sha256  hex SHA-256 of the slot's committed bytes, or null (empty)
                       digest          the package digest whose bytes the slot holds, or null
                       adapter         the adapter name, or null
                       version         the adapter's version string, or null
    state            {"trial": true|false, "record_sequence": N}: whether the committed state
                     still runs on trial (a reboot would revert it), and the metadata record
                     sequence it is committed as
    log_sequence     the sequence of the device report log's last entry, or null (no log)

Verification order (`verify_token`), each failure its own `AttestationError` subclass: the
size and structure (`MalformedTokenError`), the instance id against the expected device key
(`WrongDeviceError`: a token from another device is named as such), the signature
(`TokenSignatureError`: any altered byte, including altered claims), the nonce
(`NonceMismatchError`: an old token replayed), then the verifier's expectations
(`ClaimMismatchError`).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tinyswap.errors import InputFileError, TinySwapError
from tinyswap.files import parse_json_bounded, read_bytes
from tinyswap.keys import KeyAlgorithm, load_public_key

MAGIC = b"TSAT"
TOKEN_VERSION = 1
_HEADER = struct.Struct(">4sHI")
SIGNATURE_BYTES = 64
NONCE_SIZES = (32, 48, 64)  # PSA initial attestation: PSA_INITIAL_ATTEST_CHALLENGE_SIZE_32/48/64
MAX_CLAIMS_BYTES = 16 << 10  # a 16-slot device's claims are about 5 KB
MAX_TOKEN_BYTES = _HEADER.size + MAX_CLAIMS_BYTES + SIGNATURE_BYTES
MAX_SLOTS = 64
MAX_TEXT = 128  # adapter names, versions, profile and class strings in claims

_HEX64 = re.compile(r"[0-9a-f]{64}")
CLAIM_FIELDS = ("base_digest", "device_class", "instance_id", "log_sequence", "nonce", "profile", "slots", "state")
SLOT_FIELDS = ("adapter", "content_sha256", "digest", "slot", "version")
STATE_FIELDS = ("record_sequence", "trial")


class AttestationError(TinySwapError):
    """Base class of attestation refusals (token building and verification)."""


class MalformedTokenError(AttestationError):
    """The token is too large, truncated, of another format, or its claims do not have the documented form."""


class BadNonceError(AttestationError, ValueError):
    """A nonce is not 32, 48 or 64 bytes (or not hex where hex is expected)."""


class WrongDeviceError(AttestationError):
    """The token names another device (its instance id is not the expected device key's)."""


class TokenSignatureError(AttestationError):
    """The token's Ed25519 signature does not verify under the device key: it was altered or forged."""


class NonceMismatchError(AttestationError):
    """The token answers another nonce: an old token replayed, or an answer to someone else."""


class ClaimMismatchError(AttestationError):
    """The token verifies, but a claim differs from what the verifier expects (e.g. a slot's digest)."""


# ------------------------------------------------------------------ claims

@dataclass(frozen=True)
class SlotClaim:
    slot: int
    content_sha256: str | None
    digest: str | None
    adapter: str | None
    version: str | None

    def to_json(self) -> dict[str, Any]:
        return {"slot": self.slot, "content_sha256": self.content_sha256, "digest": self.digest,
                "adapter": self.adapter, "version": self.version}


@dataclass(frozen=True)
class Claims:
    """What a token says (see the module docstring for each field)."""

    nonce: bytes
    instance_id: str
    profile: str
    device_class: str
    base_digest: str
    slots: tuple[SlotClaim, ...]
    trial: bool
    record_sequence: int
    log_sequence: int | None

    def to_json(self) -> dict[str, Any]:
        return {"nonce": self.nonce.hex(), "instance_id": self.instance_id, "profile": self.profile,
                "device_class": self.device_class, "base_digest": self.base_digest,
                "slots": [s.to_json() for s in self.slots],
                "state": {"trial": self.trial, "record_sequence": self.record_sequence},
                "log_sequence": self.log_sequence}


def instance_id(public_key: Ed25519PublicKey) -> str:
    """The device's instance id: hex SHA-256 of its raw identity public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def check_nonce(nonce: bytes) -> bytes:
    if not isinstance(nonce, (bytes, bytearray)) or len(nonce) not in NONCE_SIZES:
        size = len(nonce) if isinstance(nonce, (bytes, bytearray)) else type(nonce).__name__
        raise BadNonceError(f"an attestation nonce is 32, 48 or 64 bytes, got {size}")
    return bytes(nonce)


def parse_nonce_hex(text: str) -> bytes:
    """A nonce given as hex (the command line's form)."""
    try:
        nonce = bytes.fromhex(text)
    except ValueError:
        raise BadNonceError(f"the nonce must be hex (64, 96 or 128 hex digits), got {text[:40]!r}") from None
    return check_nonce(nonce)


# ------------------------------------------------------------------ building (device side)

def encode_token(claims: Claims, key: Ed25519PrivateKey) -> bytes:
    """The signed token for `claims` (the device side; `key` is its identity key)."""
    check_nonce(claims.nonce)
    if claims.instance_id != instance_id(key.public_key()):
        raise WrongDeviceError("the claims name another instance id than the signing key's")
    body = json.dumps(claims.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    if len(body) > MAX_CLAIMS_BYTES:
        raise MalformedTokenError(f"the claims are {len(body)} bytes, over the {MAX_CLAIMS_BYTES}-byte limit")
    head = _HEADER.pack(MAGIC, TOKEN_VERSION, len(body)) + body
    return head + key.sign(head)


# ------------------------------------------------------------------ parsing and verification (host side)

@dataclass(frozen=True)
class Token:
    """A structurally valid token (not yet verified): its claims, signed bytes and signature."""

    claims: Claims
    signed: bytes
    signature: bytes


def parse_token(data: bytes) -> Token:
    """Structure only, bounded: size limits before anything is read, then the claims' form."""
    data = bytes(data)
    if len(data) > MAX_TOKEN_BYTES:
        raise MalformedTokenError(f"the token is {len(data)} bytes, over the {MAX_TOKEN_BYTES}-byte limit")
    if len(data) < _HEADER.size + SIGNATURE_BYTES:
        raise MalformedTokenError(f"the token is {len(data)} bytes, shorter than its header and signature")
    magic, version, length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MalformedTokenError(f"not an attestation token (magic {magic!r}, expected {MAGIC!r})")
    if version != TOKEN_VERSION:
        raise MalformedTokenError(f"token format version {version}, this verifier reads {TOKEN_VERSION}")
    if length > MAX_CLAIMS_BYTES:
        raise MalformedTokenError(f"the claims length {length} is over the {MAX_CLAIMS_BYTES}-byte limit")
    if len(data) != _HEADER.size + length + SIGNATURE_BYTES:
        raise MalformedTokenError(f"the token is {len(data)} bytes; its header says "
                                  f"{_HEADER.size + length + SIGNATURE_BYTES}")
    end = _HEADER.size + length
    try:
        raw = parse_json_bounded(data[_HEADER.size:end], "attestation claims", max_depth=4)
    except InputFileError as exc:
        raise MalformedTokenError(f"the claims are not JSON: {exc.problem}") from None
    return Token(_claims_from_json(raw), data[:end], data[end:])


def _fail(problem: str) -> MalformedTokenError:
    return MalformedTokenError(f"the claims are malformed: {problem}")


def _object(raw: Any, fields: Sequence[str], where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _fail(f"{where} is not an object")
    if sorted(raw) != sorted(fields):
        raise _fail(f"{where} has fields {sorted(raw)}, expected {sorted(fields)}")
    return raw


def _hex64(value: Any, where: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise _fail(f"{where} is not a 64-digit lowercase hex digest")
    return value


def _text(value: Any, where: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise _fail(f"{where} is not a string of at most {MAX_TEXT} characters")
    return value


def _count(value: Any, where: str, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value >= 1 << 63:
        raise _fail(f"{where} is not a non-negative 64-bit integer")
    return value


def _claims_from_json(raw: Any) -> Claims:
    obj = _object(raw, CLAIM_FIELDS, "the claims")
    nonce_hex = obj["nonce"]
    if not isinstance(nonce_hex, str) or not re.fullmatch(r"[0-9a-f]*", nonce_hex) \
            or len(nonce_hex) // 2 not in NONCE_SIZES or len(nonce_hex) % 2:
        raise _fail("nonce is not 32, 48 or 64 bytes of lowercase hex")
    slots_raw = obj["slots"]
    if not isinstance(slots_raw, list) or len(slots_raw) > MAX_SLOTS:
        raise _fail(f"slots is not a list of at most {MAX_SLOTS} slots")
    slots = []
    for i, s in enumerate(slots_raw):
        so = _object(s, SLOT_FIELDS, f"slots[{i}]")
        if so["slot"] != i or isinstance(so["slot"], bool):
            raise _fail(f"slots[{i}].slot is {so['slot']!r}, expected {i} (slots in order)")
        slots.append(SlotClaim(i, _hex64(so["content_sha256"], f"slots[{i}].content_sha256", optional=True),
                               _hex64(so["digest"], f"slots[{i}].digest", optional=True),
                               _text(so["adapter"], f"slots[{i}].adapter", optional=True),
                               _text(so["version"], f"slots[{i}].version", optional=True)))
    state = _object(obj["state"], STATE_FIELDS, "state")
    if not isinstance(state["trial"], bool):
        raise _fail("state.trial is not true or false")
    return Claims(bytes.fromhex(nonce_hex), str(_hex64(obj["instance_id"], "instance_id")),
                  str(_text(obj["profile"], "profile")), str(_text(obj["device_class"], "device_class")),
                  str(_hex64(obj["base_digest"], "base_digest")), tuple(slots), state["trial"],
                  int(_count(state["record_sequence"], "state.record_sequence") or 0),
                  _count(obj["log_sequence"], "log_sequence", optional=True))


def verify_token(data: bytes, device_key: Ed25519PublicKey, nonce: bytes, *,
                 expect_slots: Mapping[int, str | None] | None = None) -> Claims:
    """The token's claims, once it is well formed, from `device_key`'s device, signed by it,
    and an answer to `nonce`; `expect_slots` {slot: digest or None (empty)} must all hold (a
    digest matches the slot's package digest or its content digest)."""
    nonce = check_nonce(nonce)
    token = parse_token(data)
    claims = token.claims
    expected_id = instance_id(device_key)
    if claims.instance_id != expected_id:
        raise WrongDeviceError(f"the token is from device {claims.instance_id[:16]}..., expected "
                               f"{expected_id[:16]}... (the given device key's instance id)")
    try:
        device_key.verify(token.signature, token.signed)
    except InvalidSignature:
        raise TokenSignatureError("the token's Ed25519 signature does not verify under the device key "
                                  "(the token was altered or forged)") from None
    if claims.nonce != nonce:
        raise NonceMismatchError(f"the token answers nonce {claims.nonce.hex()[:16]}..., not "
                                 f"{nonce.hex()[:16]}... (an old token replayed?)")
    for slot, want in sorted((expect_slots or {}).items()):
        if not 0 <= slot < len(claims.slots):
            raise ClaimMismatchError(f"expected slot {slot}, the device has {len(claims.slots)} slots")
        got = claims.slots[slot]
        if want is None:
            if got.content_sha256 is not None or got.digest is not None:
                raise ClaimMismatchError(f"slot {slot} is expected empty, it holds {got.adapter!r} "
                                         f"{got.version!r} ({str(got.digest)[:16]}...)")
        elif want not in (got.digest, got.content_sha256):
            raise ClaimMismatchError(f"slot {slot} holds {str(got.digest)[:16]}... (content "
                                     f"{str(got.content_sha256)[:16]}...), expected {want[:16]}...")
    return claims


# ------------------------------------------------------------------ files (host side)

def read_token(path: str | Path) -> bytes:
    data = read_bytes(path, "attestation token", max_bytes=MAX_TOKEN_BYTES)
    if not data:
        raise MalformedTokenError(f"attestation token {path}: empty file")
    return data


def load_device_key(path: str | Path) -> Ed25519PublicKey:
    """A device's Ed25519 identity public key from a PEM file (`tinyswap keygen`'s .pub.pem)."""
    key = load_public_key(path, KeyAlgorithm.ED25519, "device key")
    assert isinstance(key, Ed25519PublicKey)
    return key


__all__ = ["AttestationError", "BadNonceError", "Claims", "ClaimMismatchError", "MAX_TOKEN_BYTES",
           "MalformedTokenError", "NONCE_SIZES", "NonceMismatchError", "SlotClaim", "Token", "TokenSignatureError",
           "WrongDeviceError", "check_nonce", "encode_token", "instance_id", "load_device_key", "parse_nonce_hex",
           "parse_token", "read_token", "verify_token"]
