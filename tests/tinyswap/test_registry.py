"""The registry: adapters by content digest, queries by tags, version history per name."""

from __future__ import annotations

import pytest

from tinyswap.package import parse_package
from tinyswap.registry import Registry, RegistryError

from tests.adapter_cases import example_bundle, package


def test_history_queries_and_digest_identity() -> None:
    smap = example_bundle("mlp").smap
    v1 = parse_package(package(smap, 1, "kws", 1, tags={"task": "kws", "tenant": "acme"}))
    v2 = parse_package(package(smap, 2, "kws", 2, tags={"task": "kws", "tenant": "acme"}))
    bob = parse_package(package(smap, 3, "bob", 1, tags={"user": "bob"}))
    reg = Registry()
    for p in (v1, v2, bob):
        reg.add(p)
    assert [e.version for e in reg.history("kws")] == ["1.1", "1.2"]
    assert reg.latest("kws").digest == v2.content_digest != v1.content_digest
    assert {e.name for e in reg.query(tenant="acme")} == {"kws"}
    assert [e.name for e in reg.query(user="bob")] == ["bob"]
    assert len(reg.query(task="kws", version="1.1")) == 1
    reg.add(v1)  # the same bytes again: one entry, not a new version
    assert len(reg.history("kws")) == 2
    assert reg.get(v1.content_digest).sequence == 1
    assert reg.remove("kws") == [v1.content_digest, v2.content_digest]
    with pytest.raises(RegistryError, match="known"):
        reg.history("kws")
    with pytest.raises(RegistryError):
        reg.get(v1.content_digest)


def test_history_is_one_immutable_value_with_anti_rollback_counters() -> None:
    from tinyswap.registry import History, RegistryEntry

    smap = example_bundle("mlp").smap
    v1 = parse_package(package(smap, 1, "kws", 1))
    v2 = parse_package(package(smap, 2, "kws", 5))
    reg = Registry()
    reg.add(v1)
    before = reg.snapshot()
    reg.add(v2, "alias")  # another adapter name; the counter is the package name's
    assert before.versions == {"kws": (v1.content_digest,)} and before.last_sequence == {"kws": 1}
    assert reg.last_sequence("kws") == 5 and reg.versions("alias") == (v2.content_digest,)
    assert reg.get(v2.content_digest).package_name == "kws" and reg.get(v2.content_digest).kind == "lora"
    reg.remove("kws")
    reg.remove("alias")
    assert reg.last_sequence("kws") == 5  # forgetting versions never lowers a counter
    assert v1.content_digest not in reg and list(reg.names()) == []
    h = History().accept(RegistryEntry.of(v1)).accept(RegistryEntry.of(v2))
    assert h.versions["kws"] == (v1.content_digest, v2.content_digest)
    kept = h.keeping("kws", [v2.content_digest])
    assert kept.versions["kws"] == (v2.content_digest,) and v1.content_digest not in kept.entries
    assert h.versions["kws"] == (v1.content_digest, v2.content_digest)  # the old value is unchanged
    assert h.with_sequences({"kws": 9}).last_sequence == {"kws": 9} and h.last_sequence == {"kws": 5}
    reg.install(kept)
    assert [e.sequence for e in reg.history("kws")] == [5]
    reg.forget(v2.content_digest)
    assert reg.versions("kws") == () and reg.find(v2.content_digest) is None


def test_the_manager_keeps_no_version_history_of_its_own() -> None:
    """Accepted versions and counters are the registry's: a manager given a registry shows
    exactly its history."""
    from tinyswap.package import Keyring
    from tinyswap.swap import SwapManager

    from tests.adapter_cases import KEY

    bundle = example_bundle("mlp")
    reg = Registry()
    m = SwapManager(bytearray(bundle.data), bundle.smap, Keyring([KEY.public_key()]), registry=reg)
    m.load_adapter(package(bundle.smap, 1, "kws", 1))
    m.hotswap_adapter("kws", package(bundle.smap, 2, "kws", 2))
    assert m.export_state()["adapters"]["kws"]["versions"] == list(reg.versions("kws"))
    assert m.last_sequence("kws") == reg.last_sequence("kws") == 2
    assert not any("version" in k or "sequence" in k for k in vars(m))


def test_with_version_finds_a_package_name_at_a_version_under_any_adapter_name() -> None:
    smap = example_bundle("mlp").smap
    v1 = parse_package(package(smap, 1, "kws", 1))
    v2 = parse_package(package(smap, 2, "kws", 2))
    reg = Registry()
    reg.add(v1, "wake-word")  # accepted under another adapter name: still package kws@1.1
    reg.add(v2)
    assert [e.digest for e in reg.with_version("kws", "1.1")] == [v1.content_digest]
    assert [e.digest for e in reg.with_version("kws", "1.2")] == [v2.content_digest]
    assert reg.with_version("kws", "9") == [] and reg.with_version("wake-word", "1.1") == []
