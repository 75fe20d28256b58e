"""One shard of the fleet: its tier-A arrays advanced in vectorised NumPy, and its tier-B
real simulated devices driven through the same draws (`rig.py`).

For every wave both tiers draw the same things the same way (who is targeted, who is online,
who suffers a power cut and at which mutating operation); tier A then looks the outcome up in
the measured tables (`measure.py`), tier B runs it on the flash simulator. Counters come back
as plain dicts of numbers, summed by the driver in shard order.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tinyswap.errors import TinySwapError
from tinyswap.firmware_sim.device import Device
from tinyswap.fleet.assets import DeviceAssets
from tinyswap.fleet.measure import ProfileTable
from tinyswap.fleet.population import NO_VERSION, TIER_A, TIER_B, Population, draw, rng_for, shard_ids
from tinyswap.fleet.rig import Outcome, build_device, rollback, update
from tinyswap.fleet.scenario import FleetScenario
from tinyswap.package import parse_package

PACKET = 1024  # bytes per link packet; a lost packet is sent again
PURPOSE_WAVE, PURPOSE_CATCH_UP = 1, 2


def _zero() -> dict[str, Any]:
    return defaultdict(int)


class Shard:
    def __init__(self, scenario: FleetScenario, assets: DeviceAssets, tables: dict[str, ProfileTable],
                 base_correct: dict[str, np.ndarray], index: int) -> None:
        self.scenario, self.assets, self.tables, self.index = scenario, assets, tables, index
        self.correct: list[dict[str, np.ndarray]] = []  # per release: domain -> held-out rows it gets right
        self.base_correct = base_correct
        self.trainer: Any = None
        a_ids, b_ids = shard_ids(scenario, index)
        rows = len(assets.labels)
        self.pops = {TIER_A: draw(scenario, index, TIER_A, a_ids, rows),
                     TIER_B: draw(scenario, index, TIER_B, b_ids, rows)}
        self.domains = [d for d, _ in scenario.domains]
        self._provision_lab()
        self.profiles = [p for p, _ in scenario.profiles]
        self.devices: dict[int, Device] = {}  # tier-B position -> its simulated device (built on first use)
        self.lab = self._lab_positions()
        # per-profile lookup arrays for tier A
        self._ops = {t: np.array([tables[p].transition(t).operations for p in self.profiles])
                     for t in ("fresh", "upgrade")}

    # ------------------------------------------------------------------ set-up
    def _provision_lab(self) -> None:
        """Lab rigs cover every domain: shard 0's first tier-B devices get the domains in turn
        (as many per domain as the largest lab wave asks), present and never away."""
        per = max((w.lab_per_domain for w in self.scenario.waves), default=0)
        b = self.pops[TIER_B]
        if self.index != 0 or not per:
            return
        n = min(len(b), per * len(self.domains))
        b.domain[:n] = np.arange(n) % len(self.domains)
        b.away_until[:n] = 0.0

    def _lab_positions(self) -> np.ndarray:
        """Lab rigs: in shard 0 only, the first tier-B devices of each domain."""
        b = self.pops[TIER_B]
        if self.index != 0:
            return np.zeros(len(b), np.int64)
        order = np.zeros(len(b), np.int64)  # 1-based rank within its domain
        for d in range(len(self.domains)):
            where = np.flatnonzero(b.domain == d)
            order[where] = np.arange(1, len(where) + 1)
        return order

    def _device(self, pos: int) -> Device:
        if pos not in self.devices:
            b = self.pops[TIER_B]
            keyring = self.assets.keyring(int(b.key_generation[pos]))
            self.devices[pos] = build_device(self.assets, self.profiles[int(b.profile[pos])], keyring)
        return self.devices[pos]

    def set_releases(self, packages: tuple[dict[str, bytes], ...], correct: list[dict[str, np.ndarray]]) -> None:
        self.assets = replace(self.assets, packages=packages)
        self.correct = correct

    # ------------------------------------------------------------------ federated
    def federated_round(self, rnd: int) -> list[bytes]:
        """This shard's clients of round `rnd` train on their own samples; only their
        serialised `ClientUpdate`s leave (the samples stay inside this call)."""
        from tinyswap.firmware_sim.training import TrainingConfig
        from tinyswap.fleet.federated import LocalTrainer, pool_and_holdout

        s = self.scenario
        fed = s.federated
        assert fed is not None
        quota = fed.clients_per_round // s.shards + (self.index < fed.clients_per_round % s.shards)
        pop = self.pops[TIER_A]
        candidates = np.flatnonzero(pop.domain == self.domains.index(fed.domain))
        if not quota or not len(candidates):
            return []
        if self.trainer is None:
            self.trainer = LocalTrainer(self.assets.model, self.assets.slotmap)
        clients = np.sort(rng_for(s, self.index, 3, rnd).choice(candidates, size=min(quota, len(candidates)),
                                                                 replace=False))
        pool, _ = pool_and_holdout(len(self.assets.labels), s.seed)
        config = TrainingConfig(epochs=fed.epochs, rank=4, batch=8, learning_rate=0.02, seed=s.seed * 1000 + rnd)
        payloads = []
        for pos in clients:
            device_id = int(pop.ids[pos])
            rows = np.random.default_rng(np.random.SeedSequence([s.seed, 4, device_id])).choice(
                pool, size=fed.local_samples, replace=False)
            payloads.append(self.trainer.train(self.assets.images[fed.domain][rows], self.assets.labels[rows], config,
                                               rnd, device_id))
        return payloads

    # ------------------------------------------------------------------ waves
    def rotate_key(self, generation: int) -> None:
        """The fleet's new signing key reaches every present device (away ones learn it when back)."""
        for tier, pop in self.pops.items():
            present = pop.away_until <= 0
            pop.key_generation[present] = generation
            if tier == TIER_B:
                key = Ed25519PublicKey.from_public_bytes(self.assets.public_keys[generation - 1])
                for pos, device in self.devices.items():
                    if present[pos]:
                        device.keyring.add(key)

    def wave(self, release: int, wave: int, now_hours: float, generation: int) -> dict[str, Any]:
        s = self.scenario
        w = s.waves[wave]
        domains = {self.domains.index(d) for d, _, _ in s.releases[release].packages}
        out: dict[str, Any] = {}
        for tier, pop in self.pops.items():
            rng = rng_for(s, self.index, PURPOSE_WAVE, release, wave, tier)
            mine = np.isin(pop.domain, list(domains)) & (pop.version != release) & ~pop.bricked
            if w.lab_per_domain:
                lab = (self.lab >= 1) & (self.lab <= w.lab_per_domain)
                chosen = lab if tier == TIER_B else np.zeros(len(pop), bool)
            else:
                chosen = pop.rank < w.fraction
            present = pop.away_until <= now_hours
            online = rng.random(len(pop)) < s.faults.online_per_wave
            target = mine & chosen & present & (online | (w.lab_per_domain > 0))
            out[f"tier{'AB'[tier]}"] = self._install(tier, pop, np.flatnonzero(target), release, generation, rng,
                                                     lab=w.lab_per_domain > 0)
        return out

    def catch_up(self, latest: dict[str, int], now_hours: float, generation: int) -> dict[str, Any]:
        """Devices back from weeks offline, and those offline during their waves, install the
        latest completed release for their domain."""
        out: dict[str, Any] = {}
        for tier, pop in self.pops.items():
            rng = rng_for(self.scenario, self.index, PURPOSE_CATCH_UP, tier)
            stats: dict[str, Any] = _zero()
            for d, release in sorted(latest.items()):
                target = (pop.domain == self.domains.index(d)) & (pop.version != release) & ~pop.bricked
                part = self._install(tier, pop, np.flatnonzero(target), release, generation, rng, lab=False)
                for k, v in part.items():
                    stats[k] += v
            out[f"tier{'AB'[tier]}"] = dict(stats)
        return out

    def _install(self, tier: int, pop: Population, idx: np.ndarray, release: int, generation: int,
                 rng: np.random.Generator, *, lab: bool) -> dict[str, Any]:
        s, f = self.scenario, self.scenario.faults
        stats: dict[str, Any] = _zero()
        n = len(idx)
        cut = rng.random(n) < f.power_cut_per_install
        fresh = pop.version[idx] == NO_VERSION
        ops = np.where(fresh, self._ops["fresh"][pop.profile[idx]], self._ops["upgrade"][pop.profile[idx]])
        k = np.floor(rng.random(n) * ops).astype(np.int64) + 1
        rotation = s.faults.key_rotation
        signed_by = 2 if rotation is not None and release >= rotation else 1  # the key generation that signed it
        refused = pop.key_generation[idx] < signed_by  # came back after the rotation: a stale keyring
        sizes = np.array([len(self.assets.packages[release][self.domains[int(d)]]) for d in pop.domain[idx]],
                         np.int64)
        attempts = 1 + cut + refused
        packets = -(-sizes // PACKET) * attempts
        loss = np.array([link.loss for link in s.links])[pop.link[idx]]
        resent = rng.negative_binomial(np.maximum(packets, 1), 1 - loss) * (packets > 0)
        egress = sizes * attempts + resent * PACKET
        for li, link in enumerate(s.links):
            stats[f"egress_bytes.{link.name}"] += int(egress[pop.link[idx] == li].sum())
            seconds = egress[pop.link[idx] == li] / link.bytes_per_second
            stats["download_seconds"] += float(seconds.sum())
        stats["targets"] += n
        stats["cuts"] += int(cut.sum())
        stats["refused_untrusted_key"] += int(refused.sum())
        if tier == TIER_A:
            self._resolve_a(pop, idx, release, cut, fresh, k, stats)
        else:
            self._resolve_b(pop, idx, release, cut, k, refused, generation, stats)
        pop.key_generation[idx] = np.maximum(pop.key_generation[idx], generation)  # synced on contact
        self._shadow(pop, idx, release, stats, lab)
        stats["exposed_end"] = 0
        return dict(stats)

    def _resolve_a(self, pop: Population, idx: np.ndarray, release: int, cut: np.ndarray, fresh: np.ndarray,
                   k: np.ndarray, stats: dict[str, Any]) -> None:
        for pi, profile in enumerate(self.profiles):
            for transition, mask in (("fresh", fresh), ("upgrade", ~fresh)):
                table = self.tables[profile].transition(transition)
                sel = (pop.profile[idx] == pi) & mask
                clean = sel & ~cut
                stats["device_seconds"] += table.clean_seconds * int(clean.sum())
                stats["erases"] += table.clean_erases * int(clean.sum())
                pop.wear[idx[clean]] += table.clean_erases
                where = np.flatnonzero(sel & cut)
                if len(where):
                    codes = np.array([list(Outcome).index(o) for o in table.outcomes])[k[where] - 1]
                    for code, outcome in enumerate(Outcome):
                        stats[f"outcome.{outcome.value}"] += int((codes == code).sum())
                    stats["device_seconds"] += float(np.asarray(table.seconds)[k[where] - 1].sum())
                    erases = np.asarray(table.erases)[k[where] - 1]
                    stats["erases"] += int(erases.sum())
                    pop.wear[idx[where]] += erases
                    bricked = codes == list(Outcome).index(Outcome.BRICKED)
                    pop.bricked[idx[where[bricked]]] = True
                stats[f"clean.{profile}.{transition}.count"] += int(clean.sum())
                stats[f"clean.{profile}.{transition}.seconds"] += table.clean_seconds * int(clean.sum())
                stats[f"clean.{profile}.{transition}.erases"] += table.clean_erases * int(clean.sum())
        ok = ~pop.bricked[idx]
        self._adopt(pop, idx[ok], release, self._boot_to_slot0(pop, idx[ok], cut[ok], k[ok]))
        stats["installs"] += int(ok.sum())
        stats["failures"] += int((~ok).sum())
        stats["reverts"] += stats.get("outcome.reverted", 0)

    def _resolve_b(self, pop: Population, idx: np.ndarray, release: int, cut: np.ndarray, k: np.ndarray,
                   refused: np.ndarray, generation: int, stats: dict[str, Any]) -> None:
        f = self.scenario.faults
        for j, pos in enumerate(idx):
            pos = int(pos)
            device = self._device(pos)
            domain = self.domains[int(pop.domain[pos])]
            package = self.assets.packages[release][domain]
            profile = self.profiles[int(pop.profile[pos])]
            fresh = pop.version[pos] == NO_VERSION
            if refused[j]:
                try:
                    device.check_package(package)
                    stats["untrusted_key_accepted"] += 1  # must stay 0: the device trusted an unknown key
                except TinySwapError:
                    pass
            for key in self.assets.public_keys[:generation]:  # the device syncs the fleet's keys on contact
                device.keyring.add(Ed25519PublicKey.from_public_bytes(key))
            start = device.timeline.now
            result = update(device, package, cut_at=int(k[j]) if cut[j] else None, max_attempts=f.max_attempts + 1)
            stats["device_seconds"] += result.seconds
            stats["erases"] += result.erases
            pop.wear[pos] += result.erases
            if cut[j]:
                stats[f"outcome.{result.outcome.value}"] += 1
                stats["reverts"] += int(result.outcome is Outcome.REVERTED)
            else:
                transition = "fresh" if fresh else "upgrade"
                stats[f"clean.{profile}.{transition}.count"] += 1
                stats[f"clean.{profile}.{transition}.seconds"] += result.seconds
                stats[f"clean.{profile}.{transition}.erases"] += result.erases
            if result.outcome is Outcome.BRICKED:
                pop.bricked[pos] = True
                stats["failures"] += 1
                continue
            if not result.installed:
                stats["failures"] += 1
                continue
            stats["installs"] += 1
            here = np.array([pos])
            self._adopt(pop, here, release, self._boot_to_slot0(pop, here, cut[j:j + 1], k[j:j + 1]))
            device.timeline.instant("fleet install", cat="fleet", release=release, device=int(pop.ids[pos]),
                                    started=start)
            # the device's own shadow check on its held-out rows: bit-exact with the server's table
            name = self.assets.adapter_names[domain]
            rows = pop.holdout[pos]
            right = device.infer(self.assets.images[domain][rows], adapters=name)[0].argmax(axis=1) \
                == self.assets.labels[rows]
            stats["shadow_rows_checked"] += len(rows)
            slot = int(pop.slot[pos])
            resident = device.status()["resident"].get(slot)
            stats["slot_mismatches"] += int(resident != f"{name}@{release + 2}.0.0")
            stats["shadow_mismatches"] += int((right != self.correct[release][domain][slot][rows]).sum())

    def _boot_to_slot0(self, pop: Population, idx: np.ndarray, cut: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Which updates end in slot 0 because a power cut made the device boot before the retry:
        where the measured table says the new version landed after that cut (a RAM-placed model
        boots with no slot resident, so the retry takes the first free slot; an XIP model keeps
        the old version resident and the retry takes the other slot)."""
        out = np.zeros(len(idx), bool)
        for j in np.flatnonzero(cut & (pop.version[idx] != NO_VERSION)):
            pos = idx[j]
            table = self.tables[self.profiles[int(pop.profile[pos])]].upgrade
            out[j] = table.slots[int(k[j]) - 1] == 0
        return out

    def _adopt(self, pop: Population, idx: np.ndarray, release: int, to_slot0: np.ndarray) -> None:
        """A confirmed update: a first install lands in slot 0; a new version goes to the other
        slot, keeping the one it replaces resident for a rollback (what `SwapManager` does with
        two slots and one adapter name), unless a cut's boot sent it to slot 0 (`_boot_to_slot0`).
        Tier B compares this prediction with the device's slot table on every install."""
        pop.slot[idx] = np.where((pop.version[idx] == NO_VERSION) | to_slot0, 0, 1 - pop.slot[idx])
        pop.previous[idx] = pop.version[idx]
        pop.version[idx] = release
        pop.sequence[idx] = release + 2

    def _shadow(self, pop: Population, idx: np.ndarray, release: int, stats: dict[str, Any], lab: bool) -> None:
        """Shadow accuracy of the candidate against what the device ran before, on the
        device's held-out rows (lab rigs: the domain's whole held-out split)."""
        installed = idx[pop.version[idx] == release]
        for di, domain in enumerate(self.domains):
            sel = installed[pop.domain[installed] == di]
            if not len(sel):
                continue
            new = self.correct[release][domain]  # [slot, row]
            before, slot = pop.previous[sel], pop.slot[sel]
            if lab:
                rows = np.tile(np.arange(new.shape[1]), (len(sel), 1))
            else:
                rows = pop.holdout[sel]
            rows_new = new[slot[:, None], rows]
            old = np.stack([(self.base_correct[domain] if v == NO_VERSION else self.correct[int(v)][domain][1 - s])[r]
                            for v, s, r in zip(before, slot, rows)])
            stats[f"shadow.{domain}.rows"] += int(rows.size)
            stats[f"shadow.{domain}.right_new"] += int(rows_new.sum())
            stats[f"shadow.{domain}.right_old"] += int(old.sum())

    # ------------------------------------------------------------------ after a wave
    def exposure(self, release: int) -> dict[str, int]:
        return {f"tier{'AB'[t]}": int((p.version == release).sum()) for t, p in self.pops.items()}

    def exposure_of(self, release: int, domains: list[int]) -> dict[str, int]:
        return {f"tier{'AB'[t]}": int(((p.version == release) & np.isin(p.domain, domains)).sum())
                for t, p in self.pops.items()}

    def roll_back(self, release: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for tier, pop in self.pops.items():
            idx = np.flatnonzero((pop.version == release) & ~pop.bricked)
            stats: dict[str, Any] = _zero()
            if tier == TIER_A:
                for pi, profile in enumerate(self.profiles):
                    sel = idx[pop.profile[idx] == pi]
                    stats["device_seconds"] += self.tables[profile].rollback_seconds * len(sel)
                    pop.wear[sel] += self.tables[profile].rollback_erases
            else:
                for pos in idx:
                    pos = int(pos)
                    domain = self.domains[int(pop.domain[pos])]
                    seconds, erases = rollback(self._device(pos), self.assets.adapter_names[domain],
                                               had_previous=bool(pop.previous[pos] != NO_VERSION))
                    stats["device_seconds"] += seconds
                    pop.wear[pos] += erases
            stats["rolled_back"] += len(idx)
            pop.version[idx] = pop.previous[idx]
            pop.slot[idx] = np.where(pop.previous[idx] == NO_VERSION, -1, 1 - pop.slot[idx])  # still resident there
            pop.sequence[idx] = np.where(pop.previous[idx] == NO_VERSION, 0, pop.previous[idx] + 2)
            out[f"tier{'AB'[tier]}"] = dict(stats)
        return out

    def health(self) -> dict[str, Any]:
        """End-of-run check of every tier-B device: it boots, and runs what its record says."""
        out: dict[str, Any] = {"bricked": {f"tier{'AB'[t]}": int(p.bricked.sum()) for t, p in self.pops.items()},
                               "boot_failures": 0, "state_mismatches": 0, "max_wear": [int(max(
                                   [int(p.wear.max()) if len(p) else 0 for p in self.pops.values()]))]}
        b = self.pops[TIER_B]
        for pos, device in sorted(self.devices.items()):
            try:
                device.boot()
            except TinySwapError:
                out["boot_failures"] += 1
                continue
            domain = self.domains[int(b.domain[pos])]
            v = int(b.version[pos])
            expected = None if v == NO_VERSION else self.assets.packages[v][domain]
            has = device.status()["adapters"].get(self.assets.adapter_names[domain])
            wanted = None if expected is None else parse_package(expected).content_digest
            if wanted != has:
                out["state_mismatches"] += 1
        return out

    def trace_events(self) -> list[dict[str, Any]]:
        """Tier B's device timelines as Perfetto trace events, one process per device."""
        events: list[dict[str, Any]] = []
        b = self.pops[TIER_B]
        for pos, device in sorted(self.devices.items()):
            pid = int(b.ids[pos])
            for e in device.trace()["traceEvents"]:
                events.append({**e, "pid": pid})
        return events


__all__ = ["Shard"]
