"""`tinyswap verify`: check an adapter package offline and say what it is. Imported lazily by the CLI.

What a device would check, minus its own state: structure and digest, the signer's key and
signature, with `--bundle` the base-model binding and the slot layout, with `--device-key`
that an encrypted package decrypts for that key (AES-GCM tag included). Anti-rollback needs a
device's counters, so it is not checked here. Every refusal is a `TinySwapError`, which the
command line prints as one `tinyswap: error: ...` line and exit status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tinyswap.envelope import device_key_id, load_device_private_key, open_package
from tinyswap.keys import KeyAlgorithm, load_public_key
from tinyswap.files import read_bytes, read_json
from tinyswap.package import AdapterPackage, Keyring, check_slot_layout, parse_package, verify_signature
from tinyswap.package import WrongBaseModelError
from tinyswap.slotmap import SlotMap


def load_signer_public_key(path: str | Path) -> Ed25519PublicKey:
    """A signer's Ed25519 public key (`tinyswap keygen`'s signing_key.pub.pem)."""
    key = load_public_key(path, KeyAlgorithm.ED25519, "signing public key")
    assert isinstance(key, Ed25519PublicKey)
    return key


def _tensors(pkg: AdapterPackage) -> str:
    shown = ", ".join(f"{t.layer}/{t.role} {list(t.shape)} {t.dtype}" for t in pkg.tensors[:16])
    more = f", ... ({len(pkg.tensors) - 16} more)" if len(pkg.tensors) > 16 else ""
    return shown + more


def run(args: argparse.Namespace) -> int:
    """Every check first, then the report: a refused package prints nothing but its error."""
    data = read_bytes(args.package, "adapter package")
    pkg = parse_package(data)  # bounds and digest
    verify_signature(pkg, Keyring([load_signer_public_key(args.key)]))
    meta = pkg.metadata
    enc = pkg.encryption
    tags = meta.get("tags") or {}
    plain_bytes = len(pkg.payload) if enc is None else enc.plaintext_length
    lines = [
        f"package   {args.package} ({len(data)} bytes, format version {1 if enc is None else 2})",
        f"name      {pkg.name}",
        f"version   {meta['version']}",
        f"sequence  {pkg.sequence}",
        f"kind      {meta['kind']}",
        "tags      " + (", ".join(f"{k}={v}" for k, v in sorted(tags.items()) if v is not None) or "(none)"),
        f"digest    {pkg.content_digest}",
        f"signer    {pkg.key_id.hex()} (signature verifies)",
        f"base      {meta['base_digest']}",
        f"tensors   {len(pkg.tensors)}, {plain_bytes} bytes: {_tensors(pkg)}",
    ]
    if enc is None:
        lines.append("encrypted no (plaintext payload)")
    else:
        lines.append(f"encrypted {enc.algorithm.value}, keys wrapped with {enc.key_wrap.value}, "
                     f"for {len(enc.recipients)} recipient(s):")
        lines += [f"            {r.key_id.hex()}" for r in enc.recipients]
    if args.bundle:
        bundle = Path(args.bundle)
        smap = SlotMap.from_json(read_json(bundle / "slotmap.json", "slot map"))
        if meta["base_digest"] != smap.base_digest:
            raise WrongBaseModelError(f"package {pkg.name!r} is for base {meta['base_digest'][:16]}..., the bundle "
                                      f"{bundle} is {smap.base_digest[:16]}...")
        check_slot_layout(pkg, smap.layout_dicts())
        lines.append(f"bundle    {bundle}: base binding ok, slot layout ok ({smap.num_slots} slots)")
    if args.device_key:
        key = load_device_private_key(args.device_key)
        if enc is None:
            lines.append(f"decrypts  nothing to decrypt (device key {device_key_id(key).hex()[:16]}... not needed)")
        else:
            opened = open_package(pkg, [key])
            lines.append(f"decrypts  yes, with device key {device_key_id(key).hex()} ({len(opened.payload)} "
                         "plaintext bytes, AES-GCM tag verified)")
    elif enc is not None:
        lines.append("decrypts  not checked (pass --device-key PRIV.pem)")
    print("\n".join(lines))
    return 0


__all__ = ["load_signer_public_key", "run"]
