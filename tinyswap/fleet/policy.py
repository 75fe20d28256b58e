"""The rollout policy's health gate: what a wave's cumulative counters must show to go on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from tinyswap.fleet.scenario import Gate


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: tuple[str, ...]
    health: dict[str, Any]


def evaluate(gate: Gate, stats: Mapping[str, Any], domains: list[str]) -> GateResult:
    """`stats`: tiers A and B summed, over the release's waves so far."""
    targets = stats.get("targets", 0)
    installs = stats.get("installs", 0)
    reverts = stats.get("reverts", 0)
    health: dict[str, Any] = {
        "install_success": installs / targets if targets else 1.0,
        "confirm_rate": 1.0 - reverts / targets if targets else 1.0,
        "revert_rate": reverts / targets if targets else 0.0,
        "accuracy": {},
    }
    reasons = []
    rates = targets >= gate.min_devices  # too few devices: rates mean nothing yet; the shadow accuracy still gates
    if rates and health["install_success"] < gate.min_install_success:
        reasons.append(f"install success {health['install_success']:.3f} < {gate.min_install_success}")
    if rates and health["confirm_rate"] < gate.min_confirm_rate:
        reasons.append(f"confirm rate {health['confirm_rate']:.3f} < {gate.min_confirm_rate}")
    if rates and health["revert_rate"] > gate.max_revert_rate:
        reasons.append(f"revert rate {health['revert_rate']:.3f} > {gate.max_revert_rate}")
    for d in domains:
        rows = stats.get(f"shadow.{d}.rows", 0)
        if not rows:
            continue
        new, old = stats[f"shadow.{d}.right_new"] / rows, stats[f"shadow.{d}.right_old"] / rows
        health["accuracy"][d] = {"candidate": round(new, 6), "current": round(old, 6), "rows": int(rows)}
        if rows >= gate.min_rows and new - old < -gate.max_accuracy_drop:
            reasons.append(f"{d}: shadow accuracy {new:.3f} vs {old:.3f} now ({rows} rows)")
    return GateResult(not reasons, tuple(reasons), health)


__all__ = ["GateResult", "evaluate"]
