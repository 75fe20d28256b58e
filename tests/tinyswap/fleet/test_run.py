"""The small CI fleet end to end, on both engines: digest, halt, bricked, tiers, outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tinyswap.fleet.run import digest_of


def test_both_engines_give_the_same_digest(local_report: dict[str, Any], ray_report: dict[str, Any]) -> None:
    assert local_report["timing"]["engine"] == "local" and ray_report["timing"]["workers"] == 2
    assert local_report["digest"] == ray_report["digest"]
    assert digest_of(local_report) == local_report["digest"]  # the digest covers the content it claims


def test_the_digest_ignores_wall_clock_only(local_report: dict[str, Any]) -> None:
    changed = {**local_report, "timing": {"wall_seconds": -1}}
    assert digest_of(changed) == local_report["digest"]
    assert digest_of({**local_report, "bricked": local_report["bricked"] + 1}) != local_report["digest"]


def test_the_bad_adapter_is_halted_before_one_percent_of_the_fleet_runs_it(local_report: dict[str, Any]) -> None:
    bad = local_report["releases"][2]
    assert bad["packages"]["sensor"]["source"] == "bad"
    # measured by the server's bit-exact shadow evaluation against the committed adapter
    assert bad["packages"]["sensor"]["measured_drop_points"] >= 10
    assert bad["halted_wave"] == "lab"
    assert 0 < bad["max_bad_exposure"] <= 0.01
    lab = bad["waves"][0]
    assert not lab["gate_passed"] and any("sensor" in r for r in lab["gate_reasons"])
    assert lab["rollback"]["tierB"]["rolled_back"] >= 1
    # the good releases went through all five waves
    assert [r["halted_wave"] for r in local_report["releases"][:2]] == [None, None]
    assert all(len(r["waves"]) == 5 for r in local_report["releases"][:2])


def test_no_device_bricked_across_injected_faults(local_report: dict[str, Any]) -> None:
    assert local_report["power_cuts"]["tier_a"] > 10 and local_report["power_cuts"]["tier_b"] > 0
    assert local_report["bricked"] == 0
    check = local_report["tier_b_check"]
    assert check == {**check, "boot_failures": 0, "state_mismatches": 0, "shadow_mismatches": 0,
                     "untrusted_key_accepted": 0}
    assert check["shadow_rows_checked"] > 0  # tier-B devices re-ran their rows bit-exactly
    # the key rotation: devices back from weeks away refused the new key's package until they synced
    assert local_report["catch_up"]["tierA"]["refused_untrusted_key"] + \
        local_report["catch_up"]["tierB"]["refused_untrusted_key"] > 0


def test_tier_a_and_tier_b_rates_agree(local_report: dict[str, Any]) -> None:
    agreement = local_report["agreement"]
    measured = [c for c in agreement["checks"] if c["n_b"] > 0]
    assert len(measured) >= 4
    assert agreement["agree"], agreement


def test_outputs_are_written(local_report: dict[str, Any]) -> None:
    outputs = {k: Path(v) for k, v in local_report["outputs"].items()}
    assert outputs["rollout"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert outputs["federated"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    trace = json.loads(outputs["trace"].read_text())
    names = {e["name"] for e in trace["traceEvents"]}
    assert {"install", "swap", "boot", "fleet install"} <= names
    written = json.loads((outputs["rollout"].parent / "report.json").read_text())
    assert written["digest"] == local_report["digest"]
