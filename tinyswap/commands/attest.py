"""`tinyswap attest verify TOKEN --device-key DEVICE.pub.pem --nonce HEX [--expect-slot N=DIGEST ...]`:
check a device's attestation token (format: `tinyswap/attestation.py`) and print its claims.

Every refusal is an `AttestationError` (or an `InputFileError` for an unreadable file), so the
command line prints one `tinyswap: error: ...` line and exits 2.
"""

from __future__ import annotations

import json
import re
from typing import Mapping, Sequence

from tinyswap.attestation import (
    AttestationError,
    Claims,
    load_device_key,
    parse_nonce_hex,
    read_token,
    verify_token,
)

EMPTY = ("empty", "-")


class ExpectationError(AttestationError, ValueError):
    """An --expect-slot argument is not N=DIGEST (a 64-digit hex digest, or `empty`)."""


def parse_expectations(items: Sequence[str]) -> dict[int, str | None]:
    out: dict[int, str | None] = {}
    for item in items:
        m = re.fullmatch(r"(\d{1,4})=([0-9a-fA-F]{64}|empty|-)", item.strip())
        if m is None:
            raise ExpectationError(f"--expect-slot {item!r}: expected N=DIGEST (64 hex digits) or N=empty")
        slot = int(m.group(1))
        if slot in out:
            raise ExpectationError(f"--expect-slot names slot {slot} twice")
        out[slot] = None if m.group(2) in EMPTY else m.group(2).lower()
    return out


def describe(claims: Claims) -> list[str]:
    state = "trial (a reboot reverts it unless confirmed)" if claims.trial else "confirmed"
    lines = [f"device      {claims.instance_id}",
             f"profile     {claims.profile} (class {claims.device_class})",
             f"base model  {claims.base_digest}",
             f"state       {state}, metadata record {claims.record_sequence}",
             "report log  " + ("none" if claims.log_sequence is None else f"last entry {claims.log_sequence}")]
    for s in claims.slots:
        if s.digest is None:
            lines.append(f"slot {s.slot:<6} empty")
        else:
            lines.append(f"slot {s.slot:<6} {s.adapter} {s.version}  package {s.digest}  content {s.content_sha256}")
    return lines


def verify(token_path: str, device_key_path: str, nonce_hex: str, expect: Sequence[str] = (), *,
           as_json: bool = False) -> Mapping[str, object]:
    """Verify and print; returns the claims as JSON-able data."""
    expectations = parse_expectations(expect)
    nonce = parse_nonce_hex(nonce_hex)
    key = load_device_key(device_key_path)
    claims = verify_token(read_token(token_path), key, nonce, expect_slots=expectations)
    if as_json:
        print(json.dumps(claims.to_json(), indent=2))
    else:
        print("token verified: signed by the device key, answers the nonce"
              + (f", {len(expectations)} slot expectation(s) hold" if expectations else ""))
        for line in describe(claims):
            print(f"  {line}")
    return claims.to_json()


__all__ = ["ExpectationError", "describe", "parse_expectations", "verify"]
