"""The simulated device with encrypted packages: encrypted at rest (the adapter store's flash
holds no run of the plaintext payload), the same slot bytes and outputs as the plaintext
package, refusals before any flash operation, and the decryption's CPU time on the timeline."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tinyswap.envelope import CiphertextError, DecryptWork, KeyUnwrapError, NotARecipientError, seal_package
from tinyswap.firmware_sim.crypto_cost import CRYPTO_COSTS, decrypt_seconds
from tinyswap.firmware_sim.device import Device
from tinyswap.package import PackageDigestError, assemble_package, parse_package, serialise_metadata

from tests.adapter_cases import KEY
from tests.tinyswap.firmware_sim.device_cases import RIGS, bundle_for, inputs, packages_for
from tests.tinyswap.test_envelope import leaked, plaintext_windows

DEVICE = X25519PrivateKey.generate()
OTHER = X25519PrivateKey.generate()


def seal(data: bytes, key: X25519PrivateKey = DEVICE) -> bytes:
    return seal_package(data, KEY, [key.public_key()])


def booted(rig: str, **kw) -> Device:
    r = RIGS[rig]
    d = r.device(bundle_for(r.alignment), 0xFF, 1, **kw)
    d.provision()
    d.boot()
    return d


def everything(d: Device) -> tuple:
    """What a refused install must leave as it was: every flash part's bytes, the committed
    state (slot table, registry, counters), the store's listing and the executed model bytes."""
    return (d.flash_images(), d.state(), sorted(d.store.list()), d.model_bytes_now(), d.manager.slot_table())


@pytest.mark.parametrize("rig", ["qspi+sd", "nor4k", "ram-nor4k"])
def test_encrypted_at_rest_and_the_same_outputs_as_plaintext(rig: str) -> None:
    p = packages_for(RIGS[rig].alignment)
    sealed = seal(p["A1"])
    enc, plain = booted(rig, device_keys=[DEVICE]), booted(rig)
    digest = enc.update(sealed, permanent=True)
    plain.update(p["A1"], permanent=True)
    for d in (enc, plain):
        d.activate("A", permanent=True)
    x = inputs(2)
    assert enc.model_bytes_now() == plain.model_bytes_now()  # the same slot bytes
    np.testing.assert_array_equal(enc.infer(x)[0], plain.infer(x)[0])
    # At rest: the store holds the encrypted file, byte for byte, and no run of the plaintext.
    assert enc.store.read(digest) == sealed and digest == parse_package(sealed).content_digest
    windows = plaintext_windows(bytes(parse_package(p["A1"]).payload))
    assert len(windows) > 100
    assert leaked(windows, plain.partitions["store"].image_bytes())  # the check sees a plaintext store ...
    assert not leaked(windows, enc.partitions["store"].image_bytes())  # ... and nothing in the encrypted one
    assert not leaked(windows, enc.partitions["metadata"].image_bytes())
    # After a power cycle the device decrypts the stored package again and serves the same outputs.
    enc.power_cut()
    enc.power_on()
    enc.boot()
    np.testing.assert_array_equal(enc.infer(x)[0], plain.infer(x)[0])
    assert not leaked(windows, enc.partitions["store"].image_bytes())


def test_refused_encrypted_installs_touch_no_flash() -> None:
    p = packages_for(RIGS["nor4k"].alignment)
    d = booted("nor4k", device_keys=[DEVICE])
    d.update(seal(p["A1"]), permanent=True)
    d.activate("A", permanent=True)
    good = seal(p["B1"])
    pkg = parse_package(good)
    entry = dict(pkg.metadata["encryption"]["recipients"][0])
    entry["wrapped_key"] = entry["wrapped_key"][:-2] + ("00" if entry["wrapped_key"][-2:] != "00" else "01")

    def resigned(meta_recipients=None, payload=None) -> bytes:
        meta = dict(pkg.metadata)
        if meta_recipients is not None:
            meta["encryption"] = {**meta["encryption"], "recipients": meta_recipients}
        return assemble_package(2, serialise_metadata(meta), bytes(pkg.payload) if payload is None else payload, KEY)

    in_transit = bytearray(good)
    in_transit[-150] ^= 1
    cases = [(seal(p["B1"], OTHER), NotARecipientError), (resigned(meta_recipients=[entry]), KeyUnwrapError),
             (resigned(payload=bytes(pkg.payload[:-1]) + bytes([pkg.payload[-1] ^ 1])), CiphertextError),
             (bytes(in_transit), PackageDigestError)]
    for data, error in cases:
        before = everything(d)
        with pytest.raises(error):
            d.install(data)
        with pytest.raises(error):
            d.update(data)
        assert everything(d) == before, error.__name__
    # A device without a device key refuses it the same way.
    keyless = booted("nor4k")
    before = everything(keyless)
    with pytest.raises(NotARecipientError, match="no device key"):
        keyless.install(good)
    assert everything(keyless) == before


def test_decryption_is_charged_on_the_timeline() -> None:
    p = packages_for(RIGS["qspi+sd"].alignment)
    d = booted("qspi+sd", device_keys=[DEVICE])
    d.install(p["B1"])  # plaintext: nothing to decrypt, no charge
    assert not [e for e in d.timeline.events if e.name == "decrypt"]
    sealed = seal(p["A1"])
    d.install(sealed)
    events = [e for e in d.timeline.events if e.name == "decrypt"]
    assert len(events) == 1
    e = events[0]
    size = len(parse_package(sealed).payload)
    assert e.cat == "crypto" and e.args == {"package": "A", "bytes": size, "key_agreements": 1, "ok": True}
    cost = CRYPTO_COSTS[d.profile.cpu.name]
    expected = (cost.key_agreement_cycles + size * cost.aes_gcm_cycles_per_byte) / d.profile.clock_hz
    assert e.dur == pytest.approx(expected) == decrypt_seconds(d.profile, DecryptWork("A", 1, size, True))
    assert 0.5e-3 < e.dur < 10e-3  # ~1.4 ms on the 480 MHz Cortex-M7: mostly the X25519
    assert d.timeline.seconds("crypto") == pytest.approx(e.dur)
    trace = d.trace()["traceEvents"]
    assert any(t["name"] == "decrypt" and t["cat"] == "crypto" and t["dur"] > 0 for t in trace)
    install = next(x for x in d.timeline.events if x.name == "install" and x.args.get("name") == "A")
    assert install.ts <= e.ts and e.ts + e.dur <= install.ts + install.dur  # inside the install span
    # The swap that follows uses the decrypted package from RAM: no second decryption.
    d.swap(parse_package(sealed).content_digest, permanent=True)
    assert len([e for e in d.timeline.events if e.name == "decrypt"]) == 1
    # A refused decryption still costs its key agreement.
    with pytest.raises(KeyUnwrapError):
        bad = parse_package(seal(p["C1"]))
        entry = dict(bad.metadata["encryption"]["recipients"][0])
        entry["ephemeral_key"] = X25519PrivateKey.generate().public_key().public_bytes_raw().hex()
        meta = {**bad.metadata, "encryption": {**bad.metadata["encryption"], "recipients": [entry]}}
        d.install(assemble_package(2, serialise_metadata(meta), bytes(bad.payload), KEY))
    last = [e for e in d.timeline.events if e.name == "decrypt"][-1]
    assert last.args["ok"] is False and last.args["key_agreements"] == 1 and last.args["bytes"] == 0


def test_every_core_has_a_crypto_cost_and_the_estimates_are_ordered() -> None:
    from tinyswap.firmware_sim.profiles import CPUS, DEVICES

    assert set(CRYPTO_COSTS) == set(CPUS)
    m4, m7, a53 = CRYPTO_COSTS["cortex-m4"], CRYPTO_COSTS["cortex-m7"], CRYPTO_COSTS["cortex-a53"]
    assert 10 <= m4.aes_gcm_cycles_per_byte <= 200  # software AES-GCM: tens of cycles per byte
    assert a53.aes_gcm_cycles_per_byte < m7.aes_gcm_cycles_per_byte < m4.aes_gcm_cycles_per_byte
    work = DecryptWork("A", 1, 64 * 1024, True)
    seconds = {name: decrypt_seconds(profile, work) for name, profile in DEVICES.items()}
    assert seconds["gateway"] < seconds["mcu-qspi"] == seconds["mcu-ram"] < 0.1
