"""Attestation tokens: a token from the device verifies; another device's token, an old nonce,
altered claims, unmet expectations and malformed tokens are each refused with their own
typed error."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyswap.attestation import (
    MAX_TOKEN_BYTES,
    AttestationError,
    BadNonceError,
    ClaimMismatchError,
    Claims,
    MalformedTokenError,
    NonceMismatchError,
    SlotClaim,
    TokenSignatureError,
    WrongDeviceError,
    encode_token,
    instance_id,
    parse_nonce_hex,
    parse_token,
    verify_token,
)
from tinyswap.errors import TinySwapError

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
NONCE = bytes(range(32))
D1, D2, C1 = "11" * 32, "22" * 32, "33" * 32


def claims(key=KEY, nonce=NONCE, **kw) -> Claims:
    fields = dict(nonce=nonce, instance_id=instance_id(key.public_key()), profile="mcu-qspi",
                  device_class="mcu-qspi", base_digest="aa" * 32,
                  slots=(SlotClaim(0, C1, D1, "A", "1.1"), SlotClaim(1, None, None, None, None)),
                  trial=False, record_sequence=7, log_sequence=12)
    fields.update(kw)
    return Claims(**fields)


def token(key=KEY, **kw) -> bytes:
    return encode_token(claims(key, **kw), key)


def resign_claims(data: bytes, change, key=KEY) -> bytes:
    """The token with its claims changed, signed again by `key`."""
    body = json.loads(data[10:-64])
    change(body)
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    head = b"TSAT" + struct.pack(">HI", 1, len(raw)) + raw
    return head + key.sign(head)


def test_a_token_verifies_and_gives_its_claims():
    got = verify_token(token(), KEY.public_key(), NONCE, expect_slots={0: D1, 1: None})
    assert got == claims()
    assert got.instance_id == hashlib.sha256(KEY.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)).hexdigest()
    # a slot is matched by its package digest or its content digest
    verify_token(token(), KEY.public_key(), NONCE, expect_slots={0: C1})


@pytest.mark.parametrize("size", [32, 48, 64])
def test_every_psa_nonce_size_is_accepted(size):
    nonce = bytes([size]) * size
    assert verify_token(token(nonce=nonce), KEY.public_key(), nonce).nonce == nonce


def test_a_token_from_another_device_is_refused_as_such():
    with pytest.raises(WrongDeviceError, match="from device"):
        verify_token(token(OTHER), KEY.public_key(), NONCE)


def test_a_token_signed_by_another_key_under_this_devices_id_is_a_bad_signature():
    forged = claims()  # this device's instance id ...
    head_and_sig = encode_token(claims(OTHER), OTHER)  # ... signed by another key
    forged_token = resign_claims(head_and_sig, lambda b: b.update(instance_id=forged.instance_id), key=OTHER)
    with pytest.raises(TokenSignatureError):
        verify_token(forged_token, KEY.public_key(), NONCE)


def test_an_old_nonce_is_refused():
    old = token(nonce=b"\x01" * 32)
    with pytest.raises(NonceMismatchError, match="old token"):
        verify_token(old, KEY.public_key(), NONCE)


def test_altered_slot_digests_break_the_signature():
    good = token()
    for change in (lambda b: b["slots"][0].update(digest=D2), lambda b: b["slots"][0].update(content_sha256=D2),
                   lambda b: b["state"].update(trial=True), lambda b: b.update(log_sequence=13)):
        tampered = bytearray(resign_claims(good, change))
        tampered[-64:] = good[-64:]  # the device's signature over the original claims
        with pytest.raises(TokenSignatureError):
            verify_token(bytes(tampered), KEY.public_key(), NONCE)
    flipped = bytearray(good)
    flipped[20] ^= 1
    with pytest.raises(AttestationError):  # malformed JSON or a bad signature, never accepted
        verify_token(bytes(flipped), KEY.public_key(), NONCE)


def test_unmet_expectations_are_claim_mismatches():
    for expect in ({0: D2}, {1: D1}, {0: None}, {5: D1}):
        with pytest.raises(ClaimMismatchError):
            verify_token(token(), KEY.public_key(), NONCE, expect_slots=expect)


@pytest.mark.parametrize("nonce", [b"", b"x" * 16, b"x" * 33, b"x" * 128])
def test_nonces_of_other_sizes_are_refused(nonce):
    with pytest.raises(BadNonceError):
        verify_token(token(), KEY.public_key(), nonce)
    with pytest.raises(BadNonceError):
        encode_token(claims(nonce=nonce), KEY)


def test_nonce_hex_parsing():
    assert parse_nonce_hex("ab" * 48) == b"\xab" * 48
    for bad in ("zz" * 32, "ab" * 31, "abc"):
        with pytest.raises(BadNonceError):
            parse_nonce_hex(bad)


def test_malformed_tokens_are_refused_before_the_signature():
    good = token()
    cases = {
        "oversize": b"TSAT" + b"\0" * MAX_TOKEN_BYTES,
        "truncated": good[:-1],
        "short": good[:20],
        "magic": b"XXXX" + good[4:],
        "version": good[:4] + b"\0\x02" + good[6:],
        "length": good[:6] + struct.pack(">I", 1 << 20) + good[10:],
        "json": resign_claims(good, lambda b: b.update(nonce=[1, 2])),
        "extra field": resign_claims(good, lambda b: b.update(extra=1)),
        "missing field": resign_claims(good, lambda b: b.pop("state")),
        "slot order": resign_claims(good, lambda b: b["slots"].reverse()),
        "digest": resign_claims(good, lambda b: b["slots"][0].update(digest="AB" * 32)),
        "trial": resign_claims(good, lambda b: b["state"].update(trial=1)),
        "sequence": resign_claims(good, lambda b: b["state"].update(record_sequence=-1)),
    }
    for name, data in cases.items():
        with pytest.raises(MalformedTokenError):
            parse_token(data)
        with pytest.raises(MalformedTokenError):
            verify_token(data, KEY.public_key(), NONCE)
    deep = good[:6] + struct.pack(">I", 400) + b"[" * 400 + good[-64:]
    with pytest.raises(MalformedTokenError, match="not JSON"):
        parse_token(deep)


def test_every_refusal_is_a_tinyswap_error():
    for cls in (MalformedTokenError, BadNonceError, WrongDeviceError, TokenSignatureError, NonceMismatchError,
                ClaimMismatchError):
        assert issubclass(cls, AttestationError) and issubclass(cls, TinySwapError)


def test_the_device_cannot_sign_claims_for_another_instance():
    with pytest.raises(WrongDeviceError):
        encode_token(claims(OTHER), KEY)
