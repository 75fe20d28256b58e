"""Router: rules, session stickiness, deterministic A/B splits with per-arm metrics, tenant isolation."""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap.package import Keyring
from tinyswap.router import Experiment, Request, Router, RouterError
from tinyswap.swap import SwapManager, TenantIsolationError

from tests.adapter_cases import KEY, example_bundle, package


@pytest.fixture(scope="module")
def bundle():
    return example_bundle("mlp")


@pytest.fixture()
def router(bundle):
    smap = bundle.smap
    m = SwapManager(bytearray(bundle.data), smap, Keyring([KEY.public_key()]))
    m.load_adapter(package(smap, 1, "digits-rot", tags={"task": "rot", "tenant": "acme"}))
    m.load_adapter(package(smap, 2, "digits-inv", tags={"task": "inv"}))
    m.load_adapter(package(smap, 3, "bob", tags={"user": "bob", "tenant": "globex"}))
    return Router(m)


def test_rules_first_match_and_default(router) -> None:
    router.add_rule({"user": "bob"}, "bob")
    router.add_rule({"task": "rot"}, "digits-rot")
    router.add_rule({"orientation": "flipped"}, "digits-inv")  # a device-context key
    assert router.route(Request(user="bob", task="rot")) == "bob"
    assert router.route(Request(user="amy", task="rot")) == "digits-rot"
    assert router.route(Request(context={"orientation": "flipped"})) == "digits-inv"
    assert router.route(Request(task="other")) == "__base__"


def test_sessions_stick_until_ended(router) -> None:
    router.add_rule({"task": "rot"}, "digits-rot")
    assert router.route(Request(task="rot", session="s1")) == "digits-rot"
    assert router.route(Request(task="inv", session="s1")) == "digits-rot"  # sticky
    router.end_session("s1")
    assert router.route(Request(task="inv", session="s1")) == "__base__"


def test_ab_split_is_deterministic_proportional_and_counted(router) -> None:
    exp = Experiment("canary", {"digits-inv": 30.0, "__base__": 70.0}, key="user")
    router.add_experiment(exp)
    users = [f"user{i}" for i in range(10_000)]
    arms = [router.route(Request(user=u)) for u in users]
    share = arms.count("digits-inv") / len(arms)
    assert abs(share - 0.30) < 0.02, share  # binomial sd at n=10,000 is 0.0046
    again = Router(router.manager)
    again.add_experiment(Experiment("canary", {"digits-inv": 30.0, "__base__": 70.0}))
    assert [again.route(Request(user=u)) for u in users[:500]] == arms[:500]  # same arm on every router
    for u, arm in zip(users[:100], arms[:100]):
        router.record("canary", Request(user=u), 1.0 if arm == "digits-inv" else 0.0)
    metrics = router.metrics()["canary"]
    assert metrics["digits-inv"]["requests"] == arms.count("digits-inv")
    assert metrics["digits-inv"]["mean"] == 1.0 and metrics["__base__"]["mean"] == 0.0
    assert metrics["digits-inv"]["outcomes"] + metrics["__base__"]["outcomes"] == 100
    with pytest.raises(RouterError):
        Experiment("bad", {"a": 60.0, "b": 30.0})
    with pytest.raises(RouterError):
        router.route(Request(task="no-user"))


def test_mixed_batch_through_the_router_equals_rows_alone(router) -> None:
    router.add_rule({"task": "inv"}, "digits-inv")
    router.add_rule({"task": "rot"}, "digits-rot")
    x = np.random.default_rng(0).integers(-128, 128, (4, 64), dtype=np.int8)
    reqs = [Request(task="inv", tenant="acme"), Request(task="rot", tenant="acme"), Request(tenant="acme"),
            Request(task="inv", tenant="acme")]
    y = router.infer(x, reqs)[0]
    for r, name in enumerate(["digits-inv", "digits-rot", "__base__", "digits-inv"]):
        np.testing.assert_array_equal(y[r], router.manager.infer(x[r : r + 1], adapters=name, tenant="acme")[0][0])


def test_tenant_isolation_is_refused_with_a_typed_error_and_changes_nothing(router) -> None:
    router.add_rule({"user": "bob"}, "bob")
    m = router.manager
    x = np.zeros((1, 64), np.int8)
    before, table = bytes(m.image.buffer), m.slot_table()
    with pytest.raises(TenantIsolationError):
        router.infer(x, [Request(user="bob", tenant="acme")])  # bob's adapter belongs to globex
    with pytest.raises(TenantIsolationError):
        m.set_adapter("digits-rot", tenant="globex")
    assert bytes(m.image.buffer) == before and m.slot_table() == table
    router.infer(x, [Request(user="bob", tenant="globex")])  # its own tenant may
    router.infer(x, [Request(task="inv", tenant="globex")])  # untagged adapters are shared
    with pytest.raises(RouterError):
        router.infer(np.zeros((2, 64), np.int8), [Request(tenant="acme"), Request(tenant="globex")])


def test_a_request_without_a_tenant_fails_closed_and_the_option_widens_it(bundle, router) -> None:
    router.add_rule({"task": "rot"}, "digits-rot")  # tagged tenant acme
    router.add_rule({"task": "inv"}, "digits-inv")  # untagged
    m = router.manager
    x = np.zeros((1, 64), np.int8)
    before, table, active = bytes(m.image.buffer), m.slot_table(), m.active_weights
    with pytest.raises(TenantIsolationError, match="without a tenant may not use adapter 'digits-rot'"):
        router.infer(x, [Request(task="rot")])
    with pytest.raises(TenantIsolationError, match="'digits-rot'"):
        m.set_adapter("digits-rot")
    with pytest.raises(TenantIsolationError, match="'bob'"):
        m.gates_for("bob")
    with pytest.raises(TenantIsolationError, match="'bob'"):
        with m.pinned("bob"):
            pass
    assert bytes(m.image.buffer) == before and m.slot_table() == table and m.active_weights == active
    router.infer(x, [Request(task="inv")])  # untagged adapters serve untenanted requests
    router.infer(x, [Request(task="rot", tenant="acme")])
    # A single-tenant deployment opts in to the former behaviour.
    smap = bundle.smap
    wide = SwapManager(bytearray(bundle.data), smap, Keyring([KEY.public_key()]), untenanted_requests_see_all=True)
    wide.load_adapter(package(smap, 1, "digits-rot", tags={"task": "rot", "tenant": "acme"}))
    wide.load_adapter(package(smap, 3, "bob", tags={"user": "bob", "tenant": "globex"}))
    np.testing.assert_array_equal(wide.infer(x, adapters="digits-rot")[0],
                                  wide.infer(x, adapters="digits-rot", tenant="acme")[0])
    wide.set_adapter("bob")
    with pytest.raises(TenantIsolationError):  # a named tenant is isolated either way
        wide.infer(x, adapters="bob", tenant="acme")
