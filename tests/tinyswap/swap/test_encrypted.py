"""The swap manager with encrypted packages: the same slot bytes and outputs as the plaintext
package, decryption only after every other check, every decryption refusal typed and changing
nothing, and the store / restore paths decrypting the encrypted bytes again."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tinyswap.cache import PackageCache
from tinyswap.envelope import (
    CiphertextError,
    DeviceKeys,
    KeyUnwrapError,
    NotARecipientError,
    open_package,
    seal_package,
)
from tinyswap.package import (
    PackageDigestError,
    RollbackError,
    UnknownKeyError,
    WrongBaseModelError,
    assemble_package,
    parse_package,
    serialise_metadata,
)

from tests.adapter_cases import KEY, package
from tests.tinyswap.swap.swap_cases import inputs, manager, state_of

DEVICE = X25519PrivateKey.generate()
OTHER = X25519PrivateKey.generate()


def seal(data: bytes, *recipients: X25519PrivateKey) -> bytes:
    return seal_package(data, KEY, [k.public_key() for k in recipients or (DEVICE,)])


def resigned(data: bytes, *, payload: bytes | None = None, recipients: list | None = None) -> bytes:
    """Tampered, then validly signed again by the trusted key."""
    p = parse_package(data)
    meta = dict(p.metadata)
    if recipients is not None:
        meta["encryption"] = {**meta["encryption"], "recipients": recipients}
    return assemble_package(2, serialise_metadata(meta), bytes(p.payload) if payload is None else payload, KEY)


def test_encrypted_and_plaintext_packages_write_the_same_bytes_and_give_the_same_outputs(bundle, packages) -> None:
    a2 = package(bundle.smap, 21, "A", sequence=2)
    plain, enc = manager(bundle), manager(bundle, device_keys=[DEVICE])
    plain.load_adapter(packages["A"])
    sealed = seal(packages["A"])
    assert enc.load_adapter(sealed) == parse_package(sealed).content_digest  # identity: the encrypted file
    x = inputs()
    for m in (plain, enc):
        m.set_adapter("A")
    assert bytes(enc.image.buffer) == bytes(plain.image.buffer)
    np.testing.assert_array_equal(enc.infer(x)[0], plain.infer(x)[0])
    # A hot swap to an encrypted new version: again the plaintext package's bytes.
    plain.hotswap_adapter("A", a2)
    enc.hotswap_adapter("A", seal(a2))
    assert bytes(enc.image.buffer) == bytes(plain.image.buffer)
    np.testing.assert_array_equal(enc.infer(x)[0], plain.infer(x)[0])
    assert enc.slot_table()[0].content_sha256 == plain.slot_table()[0].content_sha256


def test_decryption_refusals_are_typed_and_change_nothing(bundle, packages) -> None:
    m = manager(bundle, device_keys=[DEVICE])
    m.load_adapter(seal(packages["A"]))
    m.set_adapter("A")
    b = seal(packages["B"])
    p = parse_package(b)
    entry = dict(p.metadata["encryption"]["recipients"][0])
    wrapped = bytearray(bytes.fromhex(entry["wrapped_key"]))
    wrapped[0] ^= 1
    flipped_in_transit = bytearray(b)
    flipped_in_transit[len(b) - 200] ^= 1
    a2 = package(bundle.smap, 21, "A", sequence=2)
    cases = [
        ("not a recipient", seal(packages["B"], OTHER), NotARecipientError),
        ("wrapped key, re-signed", resigned(b, recipients=[{**entry, "wrapped_key": bytes(wrapped).hex()}]),
         KeyUnwrapError),
        ("ciphertext, re-signed", resigned(b, payload=bytes([p.payload[0] ^ 0x80]) + bytes(p.payload[1:])),
         CiphertextError),
        ("ciphertext, not re-signed", bytes(flipped_in_transit), PackageDigestError),
    ]
    for what, data, error in cases:
        before = state_of(m)
        with pytest.raises(error):
            m.load_adapter(data)
        assert state_of(m) == before, what
    # The same refusals on a hot swap of the live adapter.
    bad_a2 = parse_package(seal(a2))
    for data, error in [(seal(a2, OTHER), NotARecipientError),
                        (resigned(seal(a2), payload=bytes(bad_a2.payload[:-1]) + b"\0"), CiphertextError)]:
        before = state_of(m)
        with pytest.raises(error):
            m.hotswap_adapter("A", data)
        assert state_of(m) == before
    # A manager without a device key refuses every encrypted package, and nothing changes.
    keyless = manager(bundle)
    before = state_of(keyless)
    with pytest.raises(NotARecipientError, match="no device key"):
        keyless.load_adapter(b)
    assert state_of(keyless) == before


def test_decryption_comes_only_after_signature_base_layout_and_sequence(bundle, packages) -> None:
    work = []
    m = manager(bundle, device_keys=DeviceKeys([DEVICE], on_work=work.append))
    m.load_adapter(seal(package(bundle.smap, 21, "A", sequence=2)))
    assert len(work) == 1 and work[0].ok
    other_base = dict(bundle.smap, base_digest="0" * 64)
    untrusted = seal_package(packages["B"], Ed25519PrivateKey.generate(), [DEVICE.public_key()])
    for data, error in [(untrusted, UnknownKeyError),
                        (seal(package(other_base, 3, "B")), WrongBaseModelError),
                        (seal(package(bundle.smap, 22, "A", sequence=1)), RollbackError)]:
        with pytest.raises(error):
            if error is RollbackError:
                m.hotswap_adapter("A", data)
            else:
                m.load_adapter(data)
    assert len(work) == 1  # none of them was decrypted


def test_the_store_keeps_ciphertext_and_every_reload_decrypts_it(bundle, packages) -> None:
    sealed = {n: seal(packages[n]) for n in "ABC"}
    store = {parse_package(d).content_digest: d for d in sealed.values()}
    work = []
    size = max(parse_package(d).ram_bytes for d in sealed.values())
    m = manager(bundle, device_keys=DeviceKeys([DEVICE], on_work=work.append), cache=PackageCache(2 * size),
                fetch=store.__getitem__)
    for name, data in sealed.items():
        m.load_adapter(data)
        m.infer(inputs(1), adapters=name)
    # The cache charges a decrypted package for its file and its plaintext.
    cached = [m.cache.get(d) for d in store if d in m.cache]
    assert all(p.decrypted and p.ram_bytes == len(p.raw) + len(p.payload) for p in cached)
    decrypted = len(work)
    x = inputs(2)
    reference = manager(bundle)
    for name in "ABC":
        reference.load_adapter(packages[name])
        np.testing.assert_array_equal(m.infer(x, adapters=name)[0], reference.infer(x, adapters=name)[0])
    assert len(work) > decrypted  # evicted from the cache: fetched from the store, verified, decrypted
    # Restore on a fresh manager: the device key opens them again; without it they are missing.
    state = m.export_state()
    fresh = manager(bundle, device_keys=[DEVICE])
    fresh.image.buffer[:] = m.image.buffer
    assert fresh.restore_state(state, store) == {"disabled_slots": [], "missing": [], "dropped": []}
    keyless = manager(bundle)
    keyless.image.buffer[:] = m.image.buffer
    report = keyless.restore_state(state, store)
    assert sorted(report["missing"]) == sorted(store) and sorted(report["dropped"]) == ["A", "B", "C"]
    assert open_package(parse_package(sealed["A"]), [DEVICE]).decrypted
