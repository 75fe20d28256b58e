"""Adapter packages: round trip and each rejection its own typed error (the fuzzing sweep is
`tests/sweeps/test_fuzz_package.py`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyswap.export.bundle import slot_map
from tinyswap.export.compiler import compile_model
from tinyswap.export.pack import FloatLora, PackError, pack
from tinyswap.export.slot_plan import SlotPlan
from tinyswap.export.spec import load_spec
from tinyswap.package import (
    Keyring,
    PackageDigestError,
    PackageFormatError,
    RollbackError,
    SignatureError,
    SlotLayoutError,
    UnknownKeyError,
    WrongBaseModelError,
    parse_package,
    verify_package,
)

from tests.conftest import REPO

EXAMPLES = REPO / "models" / "examples"


@pytest.fixture(scope="module")
def bundle():
    spec = load_spec(EXAMPLES / "mlp.json")
    plan = SlotPlan.from_json(json.loads((EXAMPLES / "mlp.plan.json").read_text()))
    compiled = compile_model(spec, plan, np.load(EXAMPLES / "mlp.calibration.npy"))
    return compiled, slot_map(compiled).to_json()


def adapter(layers=("fc1", "fc2"), rank=4, sequence=3, seed=0, name="kws-de") -> FloatLora:
    rng = np.random.default_rng(seed)
    fan = {"fc1": (64, 128), "fc2": (128, 64), "fc3": (64, 10)}
    targets = {}
    for layer in layers:
        k, out = fan[layer]
        targets[layer] = (rng.standard_normal((rank, k)) / np.sqrt(k), rng.standard_normal((out, rank)) * 0.05, 2.0)
    return FloatLora(name, "1.0.0", sequence, {"task": "kws", "tenant": "acme"}, targets)


KEY = Ed25519PrivateKey.generate()


def test_round_trip_and_the_slot_bytes_it_carries(bundle) -> None:
    compiled, smap = bundle
    data, report = pack(adapter(), smap, KEY)
    pkg = parse_package(data)
    verify_package(pkg, Keyring([KEY.public_key()]), smap["base_digest"], smap["slots"][0]["tensors"], {})
    assert pkg.name == "kws-de" and pkg.sequence == 3 and pkg.metadata["tags"]["tenant"] == "acme"
    assert set(report.layers) == {"fc1", "fc2"}
    # fc3 is not targeted: its slot tensors travel as zeros (inert), never as garbage.
    fc3 = [t for t in pkg.tensors if t.layer == "fc3"]
    assert fc3 and all(not any(pkg.tensor_bytes(t)) for t in fc3)
    assert any(any(pkg.tensor_bytes(t)) for t in pkg.tensors if t.layer == "fc1")


def verify(data: bytes, smap: dict, keyring: Keyring | None = None, last: dict | None = None) -> None:
    verify_package(parse_package(data), keyring or Keyring([KEY.public_key()]), smap["base_digest"],
                   smap["slots"][0]["tensors"], last or {})


def test_each_rejection_is_its_own_error(bundle) -> None:
    _, smap = bundle
    good, _ = pack(adapter(), smap, KEY)
    verify(good, smap)
    corrupt = bytearray(good)
    corrupt[len(good) // 2] ^= 0x10
    with pytest.raises(PackageDigestError):
        verify(bytes(corrupt), smap)
    with pytest.raises(PackageFormatError, match="truncated"):
        verify(good[:-10], smap)
    with pytest.raises(PackageFormatError, match="unexpected bytes"):
        verify(good + b"\0", smap)
    with pytest.raises(UnknownKeyError):
        verify(good, smap, Keyring([Ed25519PrivateKey.generate().public_key()]))
    forged = bytearray(good)
    forged[-1] ^= 1
    with pytest.raises(SignatureError):
        verify(bytes(forged), smap)
    other_base = dict(smap, base_digest="0" * 64)
    other, _ = pack(adapter(), other_base, KEY)
    with pytest.raises(WrongBaseModelError):
        verify(other, smap)
    with pytest.raises(RollbackError):
        verify(good, smap, last={"kws-de": 3})
    verify(good, smap, last={"kws-de": 2, "other": 99})
    with pytest.raises(SlotLayoutError):
        verify_package(parse_package(good), Keyring([KEY.public_key()]), smap["base_digest"],
                       smap["slots"][0]["tensors"][:-1], {})
    with pytest.raises(PackageFormatError, match="magic"):
        verify(b"XXXX" + good[4:], smap)


def test_packing_refuses_unknown_layers_and_reduces_over_rank(bundle) -> None:
    _, smap = bundle
    bad = adapter()
    bad.targets["fc9"] = bad.targets["fc1"]
    with pytest.raises(PackError, match="fc9"):
        pack(bad, smap, KEY)
    data, report = pack(adapter(("fc3",), rank=12), smap, KEY)  # fc3's slot rank is 4
    r = report.layers["fc3"]
    assert (r["rank_in"], r["rank_slot"]) == (12, 4) and 0 < r["svd_relative_error"] < 1
    verify(data, smap)


def _resigned(data: bytes, key=KEY, tensors=None, payload_extra: bytes = b"", **changes) -> bytes:
    """The same tensors under changed metadata, validly signed again (a trusted signer's mistake)."""
    import hashlib
    import struct

    p = parse_package(data)
    meta = {k: v for k, v in p.metadata.items()}
    meta.update(changes)
    if tensors is not None:
        meta["tensors"] = tensors
    raw_meta = json.dumps(meta).encode()
    payload = bytes(p.payload) + payload_extra
    body = b"TSAP" + struct.pack("<HI", 1, len(raw_meta)) + raw_meta + struct.pack("<Q", len(payload)) + payload
    from tinyswap.package import key_id

    signed = body + hashlib.sha256(body).digest() + key_id(key.public_key())
    return signed + key.sign(signed)


@pytest.mark.parametrize("tags, field", [
    (["tenant", "acme"], "'tags' must be an object"), ("acme", "'tags' must be an object"),
    (7, "'tags' must be an object"), (True, "'tags' must be an object"),
    ({"tenant": 3}, "tag 'tenant' must be a string"), ({"tenant": ["acme"]}, "tag 'tenant' must be a string"),
    ({"task": {"a": "b"}}, "tag 'task' must be a string"), ({"user": False}, "tag 'user' must be a string"),
])
def test_a_signed_package_with_malformed_tags_is_a_format_error_naming_the_field(bundle, tags, field) -> None:
    _, smap = bundle
    good, _ = pack(adapter(), smap, KEY)
    with pytest.raises(PackageFormatError, match=f"package 'kws-de': .*{field}"):
        verify(_resigned(good, tags=tags), smap)
    verify(_resigned(good, tags={"task": "kws", "user": None}), smap)  # null: the tag is not set
    verify(_resigned(good, tags=None), smap)


def test_metadata_field_types_and_the_tensor_table_are_checked_completely(bundle) -> None:
    _, smap = bundle
    good, _ = pack(adapter(), smap, KEY)
    entries = parse_package(good).metadata["tensors"]
    cases = {
        "'version' must be a str": _resigned(good, version=2),
        "'kind' must be a str": _resigned(good, kind=["lora"]),
        "'sequence' must be a int": _resigned(good, sequence="3"),
        "sequence 9223372036854775808 is outside 0..9223372036854775807": _resigned(good, sequence=2**63),
        "sequence -1 is outside": _resigned(good, sequence=-1),
        "'layer' must be a str": _resigned(good, tensors=[{**entries[0], "layer": 1}, *entries[1:]]),
        "'offset' must be a int": _resigned(good, tensors=[{**entries[0], "offset": 0.0}, *entries[1:]]),
        "is not a list of ints": _resigned(good, tensors=[{**entries[0], "shape": [True, 1]}, *entries[1:]]),
        "an object expected": _resigned(good, tensors=[list(entries[0].values()), *entries[1:]]),
        "payload length .* is not the sum of its tensors' lengths": _resigned(good, payload_extra=b"\0" * 8),
        "expected 0 \\(tensors are concatenated in order\\)": _resigned(good, tensors=entries[::-1]),
    }
    for message, data in cases.items():
        with pytest.raises(PackageFormatError, match=message):
            parse_package(data)
    # A hand-built package the parser never saw is checked again by the verifier.
    from dataclasses import replace

    pkg = parse_package(good)
    with pytest.raises(PackageFormatError, match="'tags' must be an object"):
        verify_package(replace(pkg, metadata={**pkg.metadata, "tags": ["x"]}), Keyring([KEY.public_key()]),
                       smap["base_digest"], smap["slots"][0]["tensors"], {})


def _signed_with_raw_metadata(data: bytes, extra_json: str, key=KEY) -> bytes:
    """`data`'s package with `extra_json` spliced into its metadata text as field "x", validly
    signed: hostile JSON that only a trusted signer (or a stolen key) could send."""
    import hashlib
    import struct

    from tinyswap.package import key_id

    p = parse_package(data)
    raw_meta = (json.dumps(p.metadata)[:-1] + ', "x": ' + extra_json + "}").encode()
    payload = bytes(p.payload)
    body = b"TSAP" + struct.pack("<HI", 1, len(raw_meta)) + raw_meta + struct.pack("<Q", len(payload)) + payload
    signed = body + hashlib.sha256(body).digest() + key_id(key.public_key())
    return signed + key.sign(signed)


@pytest.mark.parametrize("extra, problem", [
    ("[" * 5000 + "]" * 5000, "nested 5001 levels deep"),
    ("1" * 5000, "integer of 5000 digits"),
])
def test_hostile_metadata_json_is_a_format_error_before_the_signature_check(bundle, extra, problem) -> None:
    # Parsing happens before the signature check: deep nesting must not reach Python's recursion
    # limit (RecursionError) and a huge integer must not reach int() (ValueError), even signed.
    _, smap = bundle
    good, _ = pack(adapter(), smap, KEY)
    with pytest.raises(PackageFormatError, match=problem):
        parse_package(_signed_with_raw_metadata(good, extra))


def test_a_tenant_scoped_key_verifies_only_its_tenants_packages(bundle) -> None:
    """A device's own training key is trusted for its user's packages only: the same signature
    verifies for the scoped tenant and is refused for another tenant or an untagged package."""
    from tinyswap.package import KeyScopeError

    _, smap = bundle
    acme, _ = pack(adapter(), smap, KEY)  # tagged tenant "acme"
    other = adapter()
    other.tags = {"task": "kws"}  # no tenant
    untagged, _ = pack(other, smap, KEY)
    scoped = Keyring()
    scoped.add(KEY.public_key(), tenant="acme")
    verify(acme, smap, scoped)
    with pytest.raises(KeyScopeError, match="trusted only for tenant 'acme'"):
        verify(untagged, smap, scoped)
    scoped.add(KEY.public_key(), tenant="bob")
    with pytest.raises(KeyScopeError, match="tagged for tenant 'acme'"):
        verify(acme, smap, scoped)
    scoped.add(KEY.public_key())  # re-added unscoped: trusted for every package again
    verify(acme, smap, scoped)
    verify(untagged, smap, scoped)
    assert issubclass(KeyScopeError, UnknownKeyError)


def test_the_slot_layout_is_checked_in_any_order_and_names_what_differs(bundle) -> None:
    """The in-order comparison is only a shortcut: a package listing the slot's tensors in
    another order is still accepted, and a differing shape or dtype is named either way."""
    from tinyswap.package import SlotShapeError, UnknownLayerError, check_slot_layout

    _, smap = bundle
    pkg = parse_package(pack(adapter(), smap, KEY)[0])
    layout = smap["slots"][0]["tensors"]
    check_slot_layout(pkg, layout)
    check_slot_layout(pkg, layout[::-1])
    wide = [{**layout[0], "shape": [layout[0]["shape"][0] + 1, *layout[0]["shape"][1:]]}, *layout[1:]]
    with pytest.raises(SlotShapeError, match=f"{layout[0]['layer']}/{layout[0]['role']}"):
        check_slot_layout(pkg, wide)
    with pytest.raises(SlotShapeError, match="int32"):
        check_slot_layout(pkg, [*layout[:-1], {**layout[-1], "dtype": "int32"}])
    with pytest.raises(UnknownLayerError):
        check_slot_layout(pkg, [{**layout[0], "layer": "elsewhere"}, *layout[1:]])
