"""Encrypted packages (`tinyswap.envelope`, format version 2): sealing, the bounded parser of the
`encryption` object, opening, and each refusal its own typed error. The swap manager's and the
device's handling are in `swap/test_encrypted.py` and `firmware_sim/test_device_encrypted.py`."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tinyswap.envelope import (
    CiphertextError,
    DecryptionError,
    DeviceKeys,
    KeyUnwrapError,
    NotARecipientError,
    SealError,
    device_key_id,
    load_device_private_key,
    load_device_public_key,
    open_package,
    seal_package,
    write_device_key_pair,
)
from tinyswap.errors import InputFileError
from tinyswap.package import (
    AEAD_TAG_BYTES,
    ENCRYPTED_FORMAT_VERSION,
    FORMAT_VERSION,
    MAX_RECIPIENTS,
    Keyring,
    PackageError,
    PackageDigestError,
    PackageFormatError,
    SealedPackageError,
    SignatureError,
    assemble_package,
    parse_package,
    serialise_metadata,
    verify_package,
)

from tests.adapter_cases import KEY, example_bundle, package

DEVICE = X25519PrivateKey.generate()
GROUP = X25519PrivateKey.generate()  # a second recipient: a device group's shared key
WINDOW = 16


@pytest.fixture(scope="module")
def smap():
    return example_bundle("mlp").smap


@pytest.fixture(scope="module")
def plain(smap) -> bytes:
    return package(smap, 5, "kws", 3, tags={"tenant": "acme"})


@pytest.fixture(scope="module")
def sealed(plain) -> bytes:
    return seal_package(plain, KEY, [DEVICE.public_key(), GROUP.public_key()])


def plaintext_windows(payload: bytes) -> set[bytes]:
    """Every 16-byte window of the payload that is not one byte repeated: a run of zeros (an
    untargeted slot tensor is zero-filled) or of one value would appear in any file by chance,
    so it proves nothing either way."""
    return {w for i in range(len(payload) - WINDOW + 1) if len(set(w := payload[i : i + WINDOW])) > 1}


def leaked(windows: set[bytes], data: bytes) -> list[bytes]:
    return [w for w in windows if w in data]


def resealed(data: bytes, *, meta_changes: dict | None = None, encryption_changes: dict | None = None,
             payload: bytes | None = None, version: int = ENCRYPTED_FORMAT_VERSION, key=KEY) -> bytes:
    """The package with changed metadata / encryption object / payload, validly signed again by
    the trusted key: what a trusted but hostile (or buggy) signer could send."""
    p = parse_package(data)
    meta = dict(p.metadata)
    meta.update(meta_changes or {})
    if encryption_changes is not None:
        meta["encryption"] = {**meta["encryption"], **encryption_changes}
    body = bytes(p.payload) if payload is None else payload
    return assemble_package(version, serialise_metadata(meta), body, key)


def verify(data: bytes, smap: dict) -> None:
    verify_package(parse_package(data), Keyring([KEY.public_key()]), smap["base_digest"],
                   smap["slots"][0]["tensors"], {})


# ------------------------------------------------------------------------------------ round trip

def test_both_recipients_open_it_to_the_plaintext_payload(plain, sealed, smap) -> None:
    p = parse_package(sealed)
    assert sealed[4:6] == ENCRYPTED_FORMAT_VERSION.to_bytes(2, "little") and plain[4:6] == b"\x01\x00"
    verify(sealed, smap)  # signature, base, layout: all before (and without) decryption
    assert p.sealed and p.encryption is not None
    assert {r.key_id for r in p.encryption.recipients} == {device_key_id(DEVICE), device_key_id(GROUP)}
    expected = bytes(parse_package(plain).payload)
    assert len(p.payload) == len(expected) + AEAD_TAG_BYTES == p.encryption.plaintext_length + AEAD_TAG_BYTES
    for key in (DEVICE, GROUP):
        opened = open_package(p, [key])
        assert bytes(opened.payload) == expected and opened.decrypted and not opened.sealed
        # Identity is the encrypted file's: the store, the registry and the state name these bytes.
        assert opened.content_digest == p.content_digest and opened.raw == sealed
        assert opened.tensor_views.keys() == parse_package(plain).tensor_views.keys()
    # The metadata is the plaintext package's, plus the encryption object.
    assert {k: v for k, v in p.metadata.items() if k != "encryption"} == parse_package(plain).metadata


def test_no_plaintext_run_of_16_bytes_is_in_the_package(plain, sealed) -> None:
    windows = plaintext_windows(bytes(parse_package(plain).payload))
    assert len(windows) > 1000  # random non-zero adapter weights: the check has something to find
    assert leaked(windows, plain)  # the check finds them in the plaintext package ...
    assert not leaked(windows, sealed)  # ... and none in the encrypted one


def test_sealed_payload_gives_no_tensor_bytes(sealed) -> None:
    p = parse_package(sealed)
    with pytest.raises(SealedPackageError, match="encrypted"):
        p.tensor_bytes(p.tensors[0])
    with pytest.raises(SealedPackageError):
        _ = p.tensor_views


def test_each_seal_uses_a_fresh_content_key_and_nonce(plain) -> None:
    a, b = (parse_package(seal_package(plain, KEY, [DEVICE.public_key()])) for _ in range(2))
    assert a.encryption.nonce != b.encryption.nonce
    assert a.encryption.recipients[0].wrapped_key != b.encryption.recipients[0].wrapped_key
    assert bytes(a.payload) != bytes(b.payload)


def test_open_reports_its_work_and_plaintext_packages_pass_through(plain, sealed) -> None:
    work = []
    keys = DeviceKeys([X25519PrivateKey.generate(), GROUP], on_work=work.append)
    open_package(parse_package(sealed), keys)
    assert [(w.key_agreements, w.ciphertext_bytes, w.ok) for w in work] == [(1, len(parse_package(sealed).payload), True)]
    p = parse_package(plain)
    assert open_package(p, keys) is p and len(work) == 1  # nothing to decrypt, no work
    opened = open_package(parse_package(sealed), [DEVICE])
    assert open_package(opened, keys) is opened and len(work) == 1  # already decrypted


# ------------------------------------------------------------------------------------ refusals

def test_a_device_that_is_no_recipient_is_refused(sealed) -> None:
    p = parse_package(sealed)
    with pytest.raises(NotARecipientError, match="not encrypted for this device"):
        open_package(p, [X25519PrivateKey.generate()])
    with pytest.raises(NotARecipientError, match="no device key configured"):
        open_package(p, None)


def test_a_tampered_wrapped_key_or_ciphertext_fails_the_digest_unless_resigned(sealed, smap) -> None:
    p = parse_package(sealed)
    entry = p.encryption.recipients[0]
    # Tampered in transit (not re-signed): the digest (or, with the digest recomputed, the signature) fails.
    i = sealed.index(entry.wrapped_key.hex().encode())
    flipped = bytearray(sealed)
    flipped[i] = ord("0") if flipped[i] != ord("0") else ord("1")
    with pytest.raises(PackageDigestError):
        parse_package(bytes(flipped))
    body_end = len(sealed) - 128
    torn = bytearray(sealed)
    torn[body_end - 1] ^= 1  # the last byte of the GCM tag
    import hashlib
    torn[body_end : body_end + 32] = hashlib.sha256(bytes(torn[:body_end])).digest()
    with pytest.raises(SignatureError):
        verify(bytes(torn), smap)


def test_resigned_tampering_is_each_its_own_decryption_error(sealed, smap) -> None:
    p = parse_package(sealed)
    enc = p.metadata["encryption"]
    mine = next(i for i, r in enumerate(p.encryption.recipients) if r.key_id == device_key_id(DEVICE))
    recipients = [dict(r) for r in enc["recipients"]]
    wrapped = bytearray(bytes.fromhex(recipients[mine]["wrapped_key"]))
    wrapped[5] ^= 0x40
    recipients[mine]["wrapped_key"] = bytes(wrapped).hex()
    cases = {
        "wrapped key": (resealed(sealed, encryption_changes={"recipients": recipients}), KeyUnwrapError),
        "ciphertext": (resealed(sealed, payload=bytes([p.payload[0] ^ 1]) + bytes(p.payload[1:])), CiphertextError),
        "tag": (resealed(sealed, payload=bytes(p.payload[:-1]) + bytes([p.payload[-1] ^ 1])), CiphertextError),
        # The header is the AEAD's associated data: the ciphertext cannot move under another tenant.
        "tenant": (resealed(sealed, meta_changes={"tags": {"tenant": "other"}}), CiphertextError),
        "nonce": (resealed(sealed, encryption_changes={"nonce": "00" * 12}), CiphertextError),
    }
    for what, (data, error) in cases.items():
        verify(data, smap)  # every check before decryption passes: a trusted key signed it
        with pytest.raises(error) as info:
            open_package(parse_package(data), [DEVICE])
        assert isinstance(info.value, DecryptionError) and "'kws'" in str(info.value), what
    # A low-order ephemeral point (all-zero shared secret) is refused, not used.
    recipients = [dict(r) for r in enc["recipients"]]
    recipients[mine]["ephemeral_key"] = "00" * 32
    with pytest.raises(KeyUnwrapError, match="low-order"):
        open_package(parse_package(resealed(sealed, encryption_changes={"recipients": recipients})), [DEVICE])


def test_the_parser_checks_every_field_of_the_encryption_object(sealed, plain) -> None:
    p = parse_package(sealed)
    enc = p.metadata["encryption"]
    first = enc["recipients"][0]
    many = [{**first, "key_id": os.urandom(32).hex()} for _ in range(MAX_RECIPIENTS + 1)]
    bad_encryption = {
        "algorithm": ({"algorithm": "A128CBC"}, "not supported"),
        "key_wrap": ({"key_wrap": 7}, "key_wrap"),
        "nonce length": ({"nonce": "00" * 11}, "nonce"),
        "nonce case": ({"nonce": enc["nonce"].upper() if enc["nonce"] != enc["nonce"].upper() else "AB" * 12}, "hex"),
        "plaintext length bool": ({"plaintext_length": True}, "plaintext_length"),
        "plaintext length": ({"plaintext_length": enc["plaintext_length"] - 1}, "plaintext"),
        "no recipients": ({"recipients": []}, "recipients"),
        "too many recipients": ({"recipients": many}, "65 recipients"),
        "duplicate recipient": ({"recipients": [first, first]}, "twice"),
        "recipient not an object": ({"recipients": ["x"]}, "recipient 0"),
        "recipient extra field": ({"recipients": [{**first, "x": 1}]}, "recipient 0"),
        "short wrapped key": ({"recipients": [{**first, "wrapped_key": "00" * 32}]}, "wrapped_key"),
        "unknown field": ({"compression": "none"}, "unknown fields"),
    }
    for what, (change, message) in bad_encryption.items():
        with pytest.raises(PackageFormatError, match=message):
            parse_package(resealed(sealed, encryption_changes=change))
    with pytest.raises(PackageFormatError, match="must be an object"):
        parse_package(resealed(sealed, meta_changes={"encryption": None}))
    with pytest.raises(PackageFormatError, match="plus the 16-byte tag"):
        parse_package(resealed(sealed, payload=bytes(p.payload) + b"\0"))
    # An encryption object needs version 2; version 2 needs an encryption object.
    with pytest.raises(PackageFormatError, match="needs format version 2"):
        parse_package(resealed(plain, meta_changes={"encryption": enc}, version=FORMAT_VERSION))
    with pytest.raises(PackageFormatError, match="encryption must be an object"):
        parse_package(resealed(plain, version=ENCRYPTED_FORMAT_VERSION))
    with pytest.raises(PackageFormatError, match="version 3"):
        parse_package(resealed(sealed, version=3))


def test_sealing_refuses_what_it_cannot_do(plain, sealed) -> None:
    with pytest.raises(SealError, match="already encrypted"):
        seal_package(sealed, KEY, [DEVICE.public_key()])
    with pytest.raises(SealError, match="0 recipients"):
        seal_package(plain, KEY, [])
    with pytest.raises(SealError, match="twice"):
        seal_package(plain, KEY, [DEVICE.public_key(), DEVICE.public_key()])
    with pytest.raises(SealError, match="X25519"):
        seal_package(plain, KEY, [Ed25519PrivateKey.generate().public_key()])


# ------------------------------------------------------------------------------------ key files

def test_device_key_files_round_trip_and_wrong_files_are_refused(tmp_path, plain) -> None:
    private, public = write_device_key_pair(tmp_path / "keys")
    assert (private.name, public.name) == ("device.key.pem", "device.pub.pem")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key, pub = load_device_private_key(private), load_device_public_key(public)
    assert device_key_id(key) == device_key_id(pub)
    assert open_package(parse_package(seal_package(plain, KEY, [pub])), [key]).decrypted
    with pytest.raises(InputFileError, match="a public key, expected the private one"):
        load_device_private_key(public)
    with pytest.raises(InputFileError, match="is a directory"):
        load_device_public_key(tmp_path)
    signing = tmp_path / "signing.pem"
    from cryptography.hazmat.primitives import serialization
    signing.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(InputFileError, match="expected an X25519 private key"):
        load_device_private_key(signing)


# ------------------------------------------------------------------------------------ fuzzing

_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=90)
                     | st.sampled_from(["A256GCM", "ECDH-ES+X25519+HKDF-SHA256+A256KW", "00" * 12, "ab" * 32,
                                        "cd" * 40]),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                   max_size=4), max_leaves=12)


@given(field=st.sampled_from(["algorithm", "key_wrap", "nonce", "plaintext_length", "recipients", "extra"]),
       value=_JSON, recipient_field=st.sampled_from(["key_id", "ephemeral_key", "wrapped_key", None]))
def test_any_encryption_object_is_refused_typed_or_opened(sealed, field, value, recipient_field) -> None:
    """A trusted signer's arbitrary `encryption` object: parsing and opening end in success or a
    `PackageError` subclass (format or decryption), never another exception."""
    enc = dict(parse_package(sealed).metadata["encryption"])
    if field == "recipients" and recipient_field is not None:
        enc["recipients"] = [{**enc["recipients"][0], recipient_field: value}] + enc["recipients"][1:]
    else:
        enc[field] = value
    data = resealed(sealed, meta_changes={"encryption": enc})
    try:
        open_package(parse_package(data), [DEVICE, GROUP])
    except PackageError:
        pass
