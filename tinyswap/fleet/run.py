"""The fleet run: build the server's assets, run the federated rounds, roll every release out
wave by wave through the health gate (halting and rolling back fleet-wide on a failed gate),
let offline devices catch up, check every tier-B device, and write the report.

Deterministic: the report's `digest` covers everything but the `timing` section, and equals
on both engines and any number of workers (per-shard seeds, results combined in shard order).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

from tinyswap.fleet.assets import ServerAssets, add_release, build_base, make_bad, sign
from tinyswap.fleet.engine import Engine, combine
from tinyswap.fleet.measure import load_tables
from tinyswap.fleet.policy import evaluate
from tinyswap.fleet.scenario import FleetScenario

HOURS_PER_WEEK = 7 * 24


def digest_of(report: dict[str, Any]) -> str:
    content = {k: v for k, v in report.items() if k not in ("timing", "digest", "outputs")}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _build_releases(scenario: FleetScenario, server: ServerAssets, federated_adapter: Any) -> list[dict[str, Any]]:
    info = []
    rotation = scenario.faults.key_rotation
    for r, release in enumerate(scenario.releases):
        generation = 2 if rotation is not None and r >= rotation else 1
        key = server.keys[generation - 1]
        packages, notes = {}, {}
        for domain, source, points in release.packages:
            sequence = r + 2
            if source == "committed":
                packages[domain] = sign(server, server.adapters[domain], sequence, key)
            elif source == "federated":
                packages[domain] = sign(server, federated_adapter, sequence, key)
            else:
                packages[domain], scale, drop = make_bad(server, domain, points, sequence, key, scenario.seed + r)
                notes[domain] = {"bad_points": points, "noise_scale": round(scale, 6),
                                 "measured_drop_points": round(drop * 100, 3)}
        add_release(server, r, packages)
        info.append({"name": release.name, "key_generation": generation,
                     "packages": {d: {"bytes": len(p), "source": s, **notes.get(d, {})}
                                  for (d, s, _), p in zip(release.packages,
                                                          [packages[d] for d, _, _ in release.packages])},
                     "shadow_accuracy": {d: round(float(server.correct[r][d][0].mean()), 6) for d in packages}})
    return info


def run_fleet(scenario: FleetScenario, engine: Engine, out_dir: str | Path, *,
              progress: Callable[[str], None] | None = None, engine_name: str = "local") -> dict[str, Any]:
    say = progress or (lambda line: None)
    wall0 = time.perf_counter()
    timing: dict[str, float] = {}
    server = build_base(scenario)
    tables = load_tables()
    timing["assets_seconds"] = time.perf_counter() - wall0
    say(f"{scenario.name}: {scenario.devices} tier-A + {scenario.tier_b} tier-B devices in {scenario.shards} shards, "
        f"{len(scenario.releases)} release(s), engine {engine_name} x{engine.workers}")

    t = time.perf_counter()
    engine.start([(scenario, server.devices, tables, server.base_correct, i) for i in range(scenario.shards)])
    timing["engine_start_seconds"] = time.perf_counter() - t
    federated_report, federated_adapter = None, None
    if scenario.federated is not None:
        from tinyswap.fleet.federated import run_federated

        t = time.perf_counter()
        federated_report, federated_adapter = run_federated(scenario, server, engine, say)
        timing["federated_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    releases_info = _build_releases(scenario, server, federated_adapter)
    timing["releases_seconds"] = time.perf_counter() - t
    engine.call("set_releases", server.devices.packages, server.correct)

    t = time.perf_counter()
    domains = [d for d, _ in scenario.domains]
    total = scenario.devices + scenario.tier_b
    now = 0.0
    generation = 1
    latest: dict[str, int] = {}
    timeline: list[dict[str, Any]] = []
    releases_out = []
    tier_parts: list[dict[str, Any]] = []
    rotation = scenario.faults.key_rotation
    for r, release in enumerate(scenario.releases):
        if rotation is not None and r == rotation:
            generation = 2
            engine.call("rotate_key", generation)
            say(f"  signing key rotated before release {release.name}")
        cumulative: dict[str, Any] = {}
        waves_out = []
        halted = None
        bad_domains = [d for d, s, _ in release.packages if s == "bad"]
        max_bad = 0.0
        for w, wave in enumerate(scenario.waves):
            parts = combine(engine.call("wave", r, w, now, generation))
            tier_parts.append(parts)
            exposure = combine(engine.call("exposure", r))
            now += wave.soak_hours
            step = combine([parts["tierA"], parts["tierB"]])
            cumulative = combine([cumulative, step]) if cumulative else step
            result = evaluate(scenario.gate, cumulative, domains)
            exposed = exposure["tierA"] + exposure["tierB"]
            bad_exposed = _bad_exposure(engine, r, bad_domains, domains)
            max_bad = max(max_bad, bad_exposed / total)
            waves_out.append({"name": wave.name, "end_hours": now, "exposed": exposed,
                              "exposed_fraction": round(exposed / total, 6), "wave": _rounded(step),
                              "health": result.health, "gate_passed": result.passed,
                              "gate_reasons": list(result.reasons)})
            timeline.append({"release": release.name, "wave": wave.name, "hours": now,
                             "exposed_fraction": round(exposed / total, 6), "health": result.health})
            say(f"  {release.name} wave {wave.name}: exposed {exposed}/{total} ({exposed / total:.2%}), "
                f"gate {'passed' if result.passed else 'FAILED: ' + '; '.join(result.reasons)}")
            if not result.passed:
                halted = w
                back = combine(engine.call("roll_back", r))
                waves_out[-1]["rollback"] = _rounded(back)
                timeline.append({"release": release.name, "wave": "rollback", "hours": now,
                                 "exposed_fraction": 0.0, "health": result.health})
                say(f"  {release.name}: halted at wave {wave.name}; rolled back "
                    f"{back['tierA']['rolled_back'] + back['tierB']['rolled_back']} devices")
                break
        if halted is None:
            for d, _, _ in release.packages:
                latest[d] = r
        releases_out.append({**releases_info[r], "waves": waves_out,
                             "halted_wave": None if halted is None else scenario.waves[halted].name,
                             "max_bad_exposure": round(max_bad, 6) if bad_domains else None,
                             "egress_bytes": int(sum(v for k, v in cumulative.items()
                                                     if k.startswith("egress_bytes.")))})
    back_at = max(now, scenario.faults.away_weeks * HOURS_PER_WEEK)
    catch = combine(engine.call("catch_up", latest, back_at, generation))
    say(f"  catch-up at {back_at / HOURS_PER_WEEK:.1f} weeks: {catch['tierA']['targets'] + catch['tierB']['targets']} "
        f"devices back or late; {catch['tierA']['refused_untrusted_key'] + catch['tierB']['refused_untrusted_key']} "
        f"refused a package signed with the rotated key until they synced it")
    health = combine(engine.call("health"))
    timing["rollout_seconds"] = time.perf_counter() - t
    all_stats = combine([*tier_parts, catch])
    report = {
        "scenario": scenario.name, "seed": scenario.seed, "devices": {"tier_a": scenario.devices,
                                                                      "tier_b": scenario.tier_b},
        "shards": scenario.shards,
        "federated": federated_report,
        "releases": releases_out,
        "catch_up": _rounded(catch),
        "halted_wave": next((r["halted_wave"] for r in releases_out if r["halted_wave"]), None),
        "max_bad_exposure": max([r["max_bad_exposure"] or 0.0 for r in releases_out]),
        "bricked": int(health["bricked"]["tierA"] + health["bricked"]["tierB"]),
        "tier_b_check": {"boot_failures": health["boot_failures"], "state_mismatches": health["state_mismatches"],
                         "shadow_mismatches": int(all_stats["tierB"].get("shadow_mismatches", 0)),
                         "untrusted_key_accepted": int(all_stats["tierB"].get("untrusted_key_accepted", 0)),
                         "slot_mismatches": int(all_stats["tierB"].get("slot_mismatches", 0)),
                         "shadow_rows_checked": int(all_stats["tierB"].get("shadow_rows_checked", 0))},
        "max_wear_erases": max(health["max_wear"]),  # sector erases of the most-worn device (lists concatenate)
        "power_cuts": {"tier_a": int(all_stats["tierA"].get("cuts", 0)),
                       "tier_b": int(all_stats["tierB"].get("cuts", 0))},
        "egress_bytes": {k.split(".", 1)[1]: int(v)
                         for k, v in combine([all_stats["tierA"], all_stats["tierB"]]).items()
                         if k.startswith("egress_bytes.")},
        "agreement": agreement(all_stats["tierA"], all_stats["tierB"]),
        "timeline": timeline,
    }
    report["egress_bytes"]["total"] = sum(report["egress_bytes"].values())
    report["digest"] = digest_of(report)
    timing["wall_seconds"] = time.perf_counter() - wall0
    report["timing"] = {"engine": engine_name, "workers": engine.workers,
                        "devices_per_second": round(total / timing["rollout_seconds"], 1),
                        **{k: round(v, 3) for k, v in timing.items()}}
    from tinyswap.fleet.outputs import write_outputs

    events = engine.call("trace_events")
    write_outputs(report, [e for part in events for e in part], Path(out_dir))
    engine.stop()
    say(f"bricked {report['bricked']}, max bad exposure {report['max_bad_exposure']:.4%}, "
        f"digest {report['digest'][:16]}, "
        f"{timing['wall_seconds']:.1f} s")
    return report


def _bad_exposure(engine: Engine, release: int, bad: list[str], domains: list[str]) -> int:
    if not bad:
        return 0
    parts = combine(engine.call("exposure_of", release, [domains.index(d) for d in bad]))
    return int(parts["tierA"] + parts["tierB"])


def _rounded(stats: Any) -> Any:
    if isinstance(stats, dict):
        return {k: _rounded(v) for k, v in sorted(stats.items())}
    if isinstance(stats, float):
        return round(stats, 6) if stats != int(stats) else int(stats)
    return stats


def agreement(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Tier A's rates (from the measured tables) against tier B's (the flash simulator).

    Outcome fractions among power cuts: within 3 binomial standard errors of tier B's count
    plus 0.02. Per profile and transition, the clean update's device seconds and erases per
    install: within 10% (tier B's states drift from the measured ones as stores fill). The slot
    tier A predicts for each install against the tier-B device's slot table: at most 1% wrong."""
    out: dict[str, Any] = {"checks": [], "agree": True}
    cuts_a, cuts_b = a.get("cuts", 0), b.get("cuts", 0)
    for o in ("old", "reverted", "new", "bricked"):
        pa = a.get(f"outcome.{o}", 0) / cuts_a if cuts_a else 0.0
        pb = b.get(f"outcome.{o}", 0) / cuts_b if cuts_b else 0.0
        tol = 3 * (max(pa * (1 - pa), 1e-4) / max(cuts_b, 1)) ** 0.5 + 0.02
        ok = cuts_b == 0 or abs(pa - pb) <= tol
        out["checks"].append({"what": f"P({o} | power cut)", "tier_a": round(pa, 4), "tier_b": round(pb, 4),
                              "tolerance": round(tol, 4), "n_b": int(cuts_b), "ok": ok})
    for key in sorted(k for k in b if k.startswith("clean.") and k.endswith(".count")):
        stem = key[: -len(".count")]
        if not b[key] or not a.get(key):
            continue
        for what in ("seconds", "erases"):
            va, vb = a[f"{stem}.{what}"] / a[key], b[f"{stem}.{what}"] / b[key]
            ok = abs(va - vb) <= 0.10 * max(abs(va), 1e-9)
            out["checks"].append({"what": f"{stem[6:]} {what} per install", "tier_a": round(va, 6),
                                  "tier_b": round(vb, 6), "tolerance": "10%", "n_b": int(b[key]), "ok": ok})
    installs = b.get("installs", 0)
    wrong = b.get("slot_mismatches", 0)
    out["checks"].append({"what": "slot predicted for each tier-B install", "tier_a": 0, "tier_b": wrong,
                          "tolerance": "1% of installs", "n_b": int(installs), "ok": wrong <= 0.01 * installs})
    out["agree"] = all(c["ok"] for c in out["checks"])
    return out


__all__ = ["agreement", "digest_of", "run_fleet"]
