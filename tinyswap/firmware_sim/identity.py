"""The device's attestation identity: what a simulated device claims, signed by its identity key.

On a real MCU the Ed25519 identity key is generated or injected at manufacture into the secure
element (or PSA Crypto's internal trusted storage) and never leaves it; firmware asks it to
sign (`psa_sign_message`). Here the key is a `cryptography` private key the device holds in
its configuration (provisioned once, kept across reboots, never written to the simulated
flash, so no flash dump reveals it). The token format and its verification live in
`tinyswap.attestation`, shared with the host.

The claims come from what the device committed, not from what it was asked to do: the slot
table the swap manager persisted (each slot's package digest and content SHA-256), the
metadata record's sequence and trial flag, and the report log's last entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyswap.attestation import Claims, SlotClaim, check_nonce, encode_token, instance_id
from tinyswap.firmware_sim.errors import DeviceStateError

if TYPE_CHECKING:
    from tinyswap.firmware_sim.device import Device


def check_identity_key(key: object) -> Ed25519PrivateKey:
    if not isinstance(key, Ed25519PrivateKey):
        raise DeviceStateError(f"a device identity key is an Ed25519 private key, got {type(key).__name__}")
    return key


def device_claims(device: Device, key: Ed25519PrivateKey, nonce: bytes) -> Claims:
    """The claims of a booted device, answering `nonce`."""
    nonce = check_nonce(nonce)
    m = device.manager  # raises unless booted
    record = device.metadata.current
    if record is None or device.record is None:
        raise DeviceStateError("attest: the device has no committed record (provision() and boot() first)")
    slots = []
    for rec in m.slot_table():
        entry = None if rec.digest is None else m.registry.find(rec.digest)
        slots.append(SlotClaim(rec.slot, None if rec.digest is None else rec.content_sha256, rec.digest,
                               None if entry is None else entry.name[:128],
                               None if entry is None else str(entry.version)[:128]))
    log = device.report_log_state()
    last = None if log is None or log.last is None else log.last.sequence
    return Claims(nonce, instance_id(key.public_key()), device.profile.name, device.device_class,
                  device.slotmap.base_digest, tuple(slots), device.trial, record.sequence, last)


def attest(device: Device, key: Ed25519PrivateKey, nonce: bytes) -> bytes:
    return encode_token(device_claims(device, key, nonce), key)


__all__ = ["attest", "check_identity_key", "device_claims"]
