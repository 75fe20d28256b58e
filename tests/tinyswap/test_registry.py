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
