"""Tier A's outcome tables, measured on the real simulated device (`rig.py`).

For each device profile and each transition (`fresh`: the adapter's first install; `upgrade`:
a new version over a confirmed one), a clean update is run once to count its mutating flash
operations n; then, from the same flash image, the update is run with power cut before
operation k for every k in 1..n (exhaustive, so the table needs no seed and is exactly
reproducible), the device boots and retries. Each row records where the cut left the device,
the device seconds and sector erases until the new version was confirmed. A fleet draws a cut
with the scenario's probability and k uniformly in 1..n, and looks the row up.

The tables are stored with the code (`outcomes.json`, about a minute to measure on this
machine: `python -m tinyswap.fleet.measure`) and recomputed by a slow test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyswap.files import read_json
from tinyswap.firmware_sim.device import Device
from tinyswap.fleet.rig import Outcome, build_device, rollback, update
from tinyswap.package import parse_package

TABLE_PATH = Path(__file__).with_name("outcomes.json")
TRANSITIONS = ("fresh", "upgrade")
OUTCOME_CODES = {o: i for i, o in enumerate(Outcome)}  # tier A stores outcomes as small integers


@dataclass(frozen=True)
class TransitionTable:
    clean_seconds: float
    clean_erases: int
    operations: int  # n: mutating operations of the clean update
    outcomes: tuple[Outcome, ...]  # per cut at k = 1..n
    seconds: tuple[float, ...]  # device seconds until confirmed, per k (install, boot, retry)
    erases: tuple[int, ...]
    clean_slot: int  # where a clean update leaves the new version (from the start state: old in slot 0)
    slots: tuple[int, ...]  # per k: where the new version is once the retry confirmed it


@dataclass(frozen=True)
class ProfileTable:
    fresh: TransitionTable
    upgrade: TransitionTable
    rollback_seconds: float
    rollback_erases: int

    def transition(self, name: str) -> TransitionTable:
        return self.fresh if name == "fresh" else self.upgrade


def _measure_transition(start: Device, assets: Any, package: bytes) -> TransitionTable:
    images = start.flash_images()

    def fresh_copy() -> Device:
        d = Device(start.profile, assets.model, assets.slotmap, start.keyring, record_ops=False, flash_images=images)
        d.boot()
        return d

    clean = update(fresh_copy(), package, cut_at=None, max_attempts=1)
    rows = [update(fresh_copy(), package, cut_at=k, max_attempts=2) for k in range(1, clean.mutations + 1)]
    return TransitionTable(round(clean.seconds, 9), clean.erases, clean.mutations, tuple(r.outcome for r in rows),
                           tuple(round(r.seconds, 9) for r in rows), tuple(r.erases for r in rows), clean.slot,
                           tuple(r.slot for r in rows))


def measure_profile(profile: str, assets: Any, v1: bytes, v2: bytes) -> ProfileTable:
    keyring = assets.keyring(1)
    device = build_device(assets, profile, keyring)
    fresh = _measure_transition(device, assets, v1)
    update(device, v1, cut_at=None, max_attempts=1)
    upgrade = _measure_transition(device, assets, v2)
    update(device, v2, cut_at=None, max_attempts=1)
    seconds, erases = rollback(device, parse_package(v2).name, had_previous=True)
    return ProfileTable(fresh, upgrade, round(seconds, 9), erases)


def measure_outcomes(profiles: tuple[str, ...] = ("mcu-qspi", "mcu-ram", "gateway")) -> dict[str, ProfileTable]:
    """Measure every profile's table (the rot90 adapter, versions 1 and 2, signed with the
    generation-0 key of seed 0)."""
    from tinyswap.fleet.assets import build_base, sign
    from tinyswap.fleet.scenario import parse_fleet_scenario

    scenario = parse_fleet_scenario(MEASURE_SCENARIO)
    server = build_base(scenario)
    adapter = server.adapters["rot90"]
    v1, v2 = sign(server, adapter, 1, server.keys[0]), sign(server, adapter, 2, server.keys[0])
    return {p: measure_profile(p, server.devices, v1, v2) for p in profiles}


MEASURE_SCENARIO = {"seed": 0, "devices": 1, "profiles": {"mcu-qspi": 1.0}, "domains": {"rot90": 1.0},
                    "links": {"any": {"share": 1.0, "bytes_per_second": 1000}},
                    "waves": [{"name": "all", "fraction": 1.0, "soak_hours": 1}],
                    "gate": {"min_install_success": 0, "min_confirm_rate": 0, "max_revert_rate": 1,
                             "max_accuracy_drop": 1, "min_rows": 1},
                    "releases": [{"name": "r", "packages": {"rot90": "committed"}}]}


def tables_to_json(tables: dict[str, ProfileTable]) -> dict[str, Any]:
    def t(x: TransitionTable) -> dict[str, Any]:
        return {"clean_seconds": x.clean_seconds, "clean_erases": x.clean_erases, "operations": x.operations,
                "outcomes": [o.value for o in x.outcomes], "seconds": list(x.seconds), "erases": list(x.erases),
                "clean_slot": x.clean_slot, "slots": list(x.slots)}

    return {p: {"fresh": t(v.fresh), "upgrade": t(v.upgrade), "rollback_seconds": v.rollback_seconds,
                "rollback_erases": v.rollback_erases} for p, v in sorted(tables.items())}


def tables_from_json(raw: dict[str, Any]) -> dict[str, ProfileTable]:
    def t(x: dict[str, Any]) -> TransitionTable:
        return TransitionTable(float(x["clean_seconds"]), int(x["clean_erases"]), int(x["operations"]),
                               tuple(Outcome(o) for o in x["outcomes"]), tuple(float(s) for s in x["seconds"]),
                               tuple(int(e) for e in x["erases"]), int(x["clean_slot"]),
                               tuple(int(k) for k in x["slots"]))

    return {p: ProfileTable(t(v["fresh"]), t(v["upgrade"]), float(v["rollback_seconds"]), int(v["rollback_erases"]))
            for p, v in raw.items()}


def load_tables() -> dict[str, ProfileTable]:
    return tables_from_json(read_json(TABLE_PATH, "fleet outcome tables"))


if __name__ == "__main__":
    import time

    t0 = time.perf_counter()
    TABLE_PATH.write_text(json.dumps(tables_to_json(measure_outcomes()), indent=1) + "\n")
    print(f"wrote {TABLE_PATH} in {time.perf_counter() - t0:.1f} s")
