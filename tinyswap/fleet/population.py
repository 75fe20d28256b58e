"""The fleet's devices as compact arrays (tier A) and their attribute draws, per shard.

Shard s holds tier-A devices [s * shard_size, min((s + 1) * shard_size, devices)) and the
tier-B devices whose index j has j % shards == s. Every random draw comes from a generator
seeded by (scenario seed, shard, purpose, release, wave), never from the order of calls, so a
shard gives the same numbers on any engine and any number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.fleet.scenario import FleetScenario

TIER_A, TIER_B = 0, 1
NO_VERSION = -1  # the base model: no adapter for the device's domain


def rng_for(scenario: FleetScenario, shard: int, *purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([scenario.seed, shard, *purpose]))


@dataclass
class Population:
    """Per-device state, one entry per device (numpy arrays; the names are the fields of the
    issue's compact device state)."""

    ids: np.ndarray  # int64 global device ids (tier B: devices + j)
    profile: np.ndarray  # int8 index into scenario.profiles
    link: np.ndarray  # int8 index into scenario.links
    domain: np.ndarray  # int8 index into scenario.domains
    rank: np.ndarray  # float64 in [0, 1): the device joins a wave whose cumulative fraction exceeds it
    away_until: np.ndarray  # float64 hours: offline from the start until then (0: present)
    key_generation: np.ndarray  # int8: signing keys the device trusts (1: the first only)
    version: np.ndarray  # int16: release index of the confirmed adapter (NO_VERSION: base)
    previous: np.ndarray  # int16: the version before it (what a rollback returns to)
    sequence: np.ndarray  # int32: the adapter's sequence number on the device
    slot: np.ndarray  # int8: the slot table: where the confirmed version's bytes are (-1: none)
    trial: np.ndarray  # bool: a version on trial (always resolved by the end of an update)
    wear: np.ndarray  # int32: sector erases over the device's life
    bricked: np.ndarray  # bool
    holdout: np.ndarray  # int16 [n, rows]: the device's held-out test rows of its domain

    def __len__(self) -> int:
        return len(self.ids)


def draw(scenario: FleetScenario, shard: int, tier: int, ids: np.ndarray, test_rows: int) -> Population:
    n = len(ids)
    rng = rng_for(scenario, shard, 0, tier)
    f = scenario.faults

    def pick(shares: tuple[float, ...]) -> np.ndarray:
        return rng.choice(len(shares), size=n, p=np.asarray(shares) / sum(shares)).astype(np.int8)

    profile = pick(tuple(s for _, s in scenario.profiles))
    link = pick(tuple(link.share for link in scenario.links))
    domain = pick(tuple(s for _, s in scenario.domains))
    rank = rng.random(n)
    away = rng.random(n) < f.away_fraction
    away_until = np.where(away, f.away_weeks * 7 * 24, 0.0)
    holdout = rng.integers(0, test_rows, size=(n, scenario.holdout_rows), dtype=np.int16)
    return Population(ids, profile, link, domain, rank, away_until, np.ones(n, np.int8),
                      np.full(n, NO_VERSION, np.int16), np.full(n, NO_VERSION, np.int16), np.zeros(n, np.int32),
                      np.full(n, -1, np.int8), np.zeros(n, bool), np.zeros(n, np.int32), np.zeros(n, bool), holdout)


def shard_ids(scenario: FleetScenario, shard: int) -> tuple[np.ndarray, np.ndarray]:
    """(tier-A ids, tier-B ids) of a shard."""
    lo = shard * scenario.shard_size
    a = np.arange(lo, min(lo + scenario.shard_size, scenario.devices), dtype=np.int64)
    b = scenario.devices + np.arange(shard, scenario.tier_b, scenario.shards, dtype=np.int64)
    return a, b


__all__ = ["NO_VERSION", "Population", "TIER_A", "TIER_B", "draw", "rng_for", "shard_ids"]
