"""A simulated device attests what it committed: its token verifies with its key and nonce and
names its slots, state and last report; another device's token, an old token and a device
without an identity are refused."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyswap.attestation import BadNonceError, NonceMismatchError, WrongDeviceError, instance_id, verify_token
from tinyswap.export.pack import keygen, load_private_key
from tinyswap.firmware_sim.device import Device
from tinyswap.firmware_sim.errors import DeviceStateError

from tests.tinyswap.firmware_sim.device_cases import KEYRING, bundle_for, digest_of, packages_for

B = bundle_for(4096)
P = packages_for(4096)
N1, N2 = b"\x01" * 32, b"\x02" * 64


def attested_device(key: Ed25519PrivateKey) -> Device:
    d = Device("mcu-qspi", B.data, B.smap, KEYRING)
    d.enable_report_log(16)
    d.provision_identity(key)
    d.provision()
    d.boot()
    d.update(P["A1"], permanent=True)
    d.activate("A", permanent=True)
    return d


def test_the_token_names_what_the_device_committed(tmp_path):
    private, public = keygen(tmp_path)  # `tinyswap keygen -o DIR`: the device identity key pair
    key = load_private_key(private)
    d = attested_device(key)
    claims = verify_token(d.attest(N1), key.public_key(), N1, expect_slots={0: digest_of(P["A1"]), 1: None})
    assert claims.instance_id == instance_id(key.public_key()) and claims.base_digest == B.smap["base_digest"]
    assert (claims.slots[0].adapter, claims.slots[0].version) == ("A", "1.1")
    assert claims.slots[0].content_sha256 == d.manager.content_digest(0)
    assert not claims.trial and claims.record_sequence == d.metadata.current.sequence
    assert claims.log_sequence == d.report_log()[-1].sequence
    d.update(P["A2"])  # on trial: the token says so
    claims = verify_token(d.attest(N2), key.public_key(), N2)
    assert claims.trial and digest_of(P["A2"]) in {s.digest for s in claims.slots}
    assert claims.log_sequence == d.report_log()[-1].sequence


def test_another_devices_token_and_an_old_token_are_refused():
    k1, k2 = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    d1 = attested_device(k1)
    old = d1.attest(N1)
    with pytest.raises(WrongDeviceError):
        verify_token(attested_device(k2).attest(N1), k1.public_key(), N1)
    d1.update(P["A2"], permanent=True)
    with pytest.raises(NonceMismatchError):  # the verifier's new nonce: the old token is stale
        verify_token(old, k1.public_key(), N2)


def test_a_device_without_identity_or_with_a_bad_nonce_refuses_to_attest():
    d = Device("mcu-qspi", B.data, B.smap, KEYRING)
    d.provision()
    d.boot()
    with pytest.raises(DeviceStateError, match="identity"):
        d.attest(N1)
    with pytest.raises(DeviceStateError):
        d.provision_identity("not a key")
    d.provision_identity(Ed25519PrivateKey.generate())
    with pytest.raises(BadNonceError):
        d.attest(b"\x00" * 16)
    assert verify_token(d.attest(N1), d.identity_public_key, N1).log_sequence is None  # no report log
