"""Sweep: validly signed but hostile or mistaken packages through the swap manager. A structured
generator draws each case from four families (malformed `tags`, a hot swap by a package of
another name, a hot swap by a package of another tenant, a second package under an accepted
`name@version`) and the operation that receives it (load, plan, hot swap). Every case must be
refused with its typed error, whose message names the adapter or field, and must leave the
image bytes, the slot table, the registry, the package cache and the commit hook's calls as
they were. One manager takes every case, so a leak from one refusal fails the next check.
64 cases in CI, 600 in the full run."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from tinyswap.package import PackageFormatError, parse_package
from tinyswap.swap import HotswapMismatchError, HotswapTenantError, VersionConflictError

from tests.adapter_cases import example_bundle, package
from tests.conftest import FULL
from tests.tinyswap.swap.swap_cases import manager, resign, state_of

CASES = 600 if FULL else 64

#: Shapes a `tags` field must not have, and the field the refusal must name.
BAD_TAGS: list[tuple[Any, str]] = [
    (["tenant", "acme"], "metadata field 'tags'"), ("tenant=acme", "metadata field 'tags'"),
    (42, "metadata field 'tags'"), (1.5, "metadata field 'tags'"), (False, "metadata field 'tags'"),
    ({"tenant": 7}, "tag 'tenant'"), ({"tenant": ["acme"]}, "tag 'tenant'"), ({"task": {"k": "v"}}, "tag 'task'"),
    ({"user": True}, "tag 'user'"), ({"tenant": "acme", "device_class": ["mcu"]}, "tag 'device_class'"),
]


@dataclass
class Case:
    family: str
    operation: str  # "load" | "plan_hotswap" | "hotswap"
    target: str  # the adapter a hot swap names (or the name a load uses)
    data: bytes
    error: type[Exception]
    message: str


@pytest.fixture(scope="module")
def swap_bundle():
    return example_bundle("mlp")


@pytest.fixture(scope="module")
def originals(swap_bundle):
    smap = swap_bundle.smap
    return {"A": package(smap, 1, "A"), "B": package(smap, 2, "B"),
            "kws": package(smap, 3, "kws", 1, tags={"tenant": "acme", "task": "kws"}),
            "bob": package(smap, 4, "bob", 1, tags={"tenant": "globex"})}


def _generate(rng: random.Random, originals: dict[str, bytes], accepted: dict[str, Any]) -> Case:
    """One hostile case; `accepted` holds each loaded adapter's package name, version and tenant."""
    family = rng.choice(["bad_tags", "renamed", "cross_tenant", "duplicate_version"])
    target = rng.choice(sorted(accepted))
    info = accepted[target]
    original = originals[target]
    higher = info["sequence"] + rng.randint(1, 50)
    if family == "bad_tags":
        tags, field = rng.choice(BAD_TAGS)
        operation = rng.choice(["load", "plan_hotswap", "hotswap"])
        name = f"fresh{rng.randint(0, 999)}" if operation == "load" else target
        data = resign(original, name=name, sequence=higher, version=f"9.{higher}", tags=tags)
        return Case(family, operation, name, data, PackageFormatError, f"package '{name}': {field}")
    if family == "renamed":
        other = rng.choice([f"{target}-old", f"{target}2", rng.choice([n for n in accepted if n != target])])
        # Releases numbered below the target's counter too: anti-rollback must not be bypassed by a
        # rename (an accepted name's own counter refuses its old releases first, with RollbackError).
        floor = accepted[other]["sequence"] + 1 if other in accepted else 0
        sequence = floor + rng.choice([0, 1, higher])
        data = resign(original, name=other, sequence=sequence, version=f"0.{sequence}",
                      tags={"tenant": info["tenant"]} if info["tenant"] else {})
        return Case(family, rng.choice(["plan_hotswap", "hotswap"]), target, data, HotswapMismatchError,
                    f"hotswap of '{target}': the package is named '{other}'")
    if family == "cross_tenant":
        tenant = rng.choice([t for t in (None, "acme", "globex", "initech") if t != info["tenant"]])
        donor = rng.choice(sorted(originals))
        data = resign(original, tensors_from=originals[donor], sequence=higher, version=f"7.{higher}",
                      tags={} if tenant is None else {"tenant": tenant, "task": "x"})
        return Case(family, rng.choice(["plan_hotswap", "hotswap"]), target, data, HotswapTenantError,
                    f"hotswap of '{target}': the package belongs to tenant {tenant!r}")
    donor = rng.choice([n for n in originals if n != target])
    data = resign(original, tensors_from=originals[donor], sequence=higher,
                  tags={"tenant": info["tenant"]} if info["tenant"] else {})
    operation = rng.choice(["load", "plan_hotswap", "hotswap"])
    name = f"copy{rng.randint(0, 999)}" if operation == "load" else target
    return Case(family, operation, name, data, VersionConflictError,
                f"package {target}@{info['version']} was accepted as {info['digest']}; this package "
                f"{parse_package(data).content_digest} has other bytes")


def test_hostile_packages_are_refused_by_type_and_change_nothing(swap_bundle, originals) -> None:
    commits: list = []
    m = manager(swap_bundle, on_commit=commits.append, wait_seconds=2.0)
    for name, data in originals.items():
        m.load_adapter(data)
    m.set_adapter({"A": 1.0, "B": 0.5})
    commits.clear()
    accepted = {}
    for name in originals:
        entry = m.adapter_info(name)
        accepted[name] = {"sequence": entry.sequence, "version": entry.version, "tenant": entry.tenant,
                          "digest": entry.digest}
    before = state_of(m)
    operations: dict[str, Callable[[Case], object]] = {
        "load": lambda c: m.load_adapter(c.data, c.target),
        "plan_hotswap": lambda c: m.plan_hotswap(c.target, c.data),
        "hotswap": lambda c: m.hotswap_adapter(c.target, c.data),
    }
    rng = random.Random(20261201)
    seen: dict[tuple[str, str], int] = {}
    for i in range(CASES):
        case = _generate(rng, originals, accepted)
        with pytest.raises(case.error) as info:
            operations[case.operation](case)
        assert case.message in str(info.value), (i, case.family, str(info.value))
        assert state_of(m) == before, (i, case.family, case.operation)
        assert commits == [], (i, case.family)
        assert not any(s.writing or s.draining for s in m._slots.slots), (i, case.family)
        seen[(case.family, case.operation)] = seen.get((case.family, case.operation), 0) + 1
    print(f"{CASES} hostile packages, all refused: {dict(sorted(seen.items()))}")
    assert {family for family, _ in seen} == {"bad_tags", "renamed", "cross_tenant", "duplicate_version"}
    # The manager still serves and still swaps.
    m.hotswap_adapter("kws", resign(originals["kws"], sequence=2, version="1.2"))
    assert m.adapter_info("kws").version == "1.2" and len(commits) == 1
