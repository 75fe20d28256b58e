"""Federated rounds: the gain on held-out rows, the two aggregations, and privacy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tinyswap.fleet.errors import FleetPrivacyError
from tinyswap.fleet.federated import ClientUpdate, aggregate
from tinyswap.fleet.scenario import Aggregation


def test_the_shared_adapter_gains_ten_points_on_the_majority_domain(local_report: dict[str, Any]) -> None:
    fed = local_report["federated"]
    assert fed["domain"] == "rot90" and len(fed["rounds"]) <= 10
    assert fed["held_out_rows"] == 270  # half the domain's test split; no device holds these rows
    final = fed["accuracy_by_method"]["deltas"][-1]
    assert final - fed["base_accuracy"] >= 0.10, fed
    # both aggregations are measured; the uplink is the clients' factors only
    assert set(fed["accuracy_by_method"]) == {"deltas", "factors"}
    assert fed["uplink_bytes"] == sum(r["clients"] * (24 + 4 * (4 * 256 + 10 * 4)) for r in fed["rounds"])


def test_the_rolled_out_adapter_is_the_federated_one(local_report: dict[str, Any]) -> None:
    v1 = local_report["releases"][0]
    assert v1["packages"]["rot90"]["source"] == "federated"
    assert v1["shadow_accuracy"]["rot90"] > local_report["federated"]["base_accuracy"] + 0.10


def test_averaging_deltas_is_exact_and_averaging_factors_is_not() -> None:
    rng = np.random.default_rng(0)
    updates = [ClientUpdate(0, i, 10, rng.standard_normal((2, 6)).astype(np.float32),
                            rng.standard_normal((3, 2)).astype(np.float32)) for i in range(3)]
    mean_delta = np.mean([u.b.astype(np.float64) @ u.a for u in updates], axis=0)
    a, b = aggregate(updates, Aggregation.DELTAS, rank=3, clip_norm=None)  # rank 3 holds a 3x6 delta exactly
    np.testing.assert_allclose(b @ a, mean_delta, atol=1e-9)
    a, b = aggregate(updates, Aggregation.FACTORS, rank=3, clip_norm=None)
    assert np.abs(b @ a - mean_delta).max() > 0.1
    a, b = aggregate(updates, Aggregation.DELTAS, rank=3, clip_norm=1e-3)
    assert np.linalg.norm(b @ a) <= 1e-3 + 1e-9


def test_no_raw_sample_leaves_a_device(tmp_path: Any) -> None:
    """Everything a shard's clients send is `ClientUpdate` bytes: the factors and a count. No
    local sample (its 64 int8 bytes) appears in any payload, and an update carrying a
    sample-shaped array is refused before it is serialised."""
    from tinyswap.fleet.assets import build_base
    from tinyswap.fleet.federated import pool_and_holdout
    from tinyswap.fleet.measure import load_tables
    from tinyswap.fleet.scenario import load_fleet_scenario
    from tinyswap.fleet.shard import Shard

    from .conftest import CI_SCENARIO

    scenario = load_fleet_scenario(CI_SCENARIO)
    server = build_base(scenario)
    shard = Shard(scenario, server.devices, load_tables(), server.base_correct, 0)
    payloads = shard.federated_round(0)
    assert payloads and all(isinstance(p, bytes) for p in payloads)
    pool, held = pool_and_holdout(len(server.devices.labels), scenario.seed)
    samples = server.devices.images["rot90"][pool].reshape(len(pool), -1)
    for payload in payloads:
        update = ClientUpdate.from_bytes(payload)
        assert update.a.shape == (4, 256) and update.b.shape == (10, 4) and update.samples == 60
        assert len(payload) == 24 + 4 * (4 * 256 + 10 * 4)  # header + the two factors, nothing else
        assert not any(row.tobytes() in payload for row in samples)
    assert not set(pool) & set(held)
    slot = shard.trainer.slot
    with pytest.raises(FleetPrivacyError):
        ClientUpdate(0, 0, 60, samples[:4].astype(np.float32), np.zeros((10, 4), np.float32)).to_bytes(slot)
    with pytest.raises(FleetPrivacyError):  # raw int8 samples packed into A's shape: refused by type
        ClientUpdate(0, 0, 60, samples[:16].reshape(4, 256), np.zeros((10, 4), np.float32)).to_bytes(slot)
