"""The fleet scenario format: the committed examples parse; every kind of mistake is one
`FleetScenarioError` naming its field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tinyswap.fleet.errors import FleetScenarioError
from tinyswap.fleet.scenario import Aggregation, load_fleet_scenario, parse_fleet_scenario
from tinyswap.resources import models_dir

FOLDER = models_dir() / "digits" / "scenarios" / "fleet"


def raw(name: str = "ci.json") -> dict[str, Any]:
    return json.loads((FOLDER / name).read_text())


@pytest.mark.parametrize("name", ["ci.json", "small.json", "fleet.json"])
def test_the_committed_scenarios_parse(name: str) -> None:
    s = load_fleet_scenario(FOLDER / name)
    assert len(s.waves) == 5 and s.waves[0].lab_per_domain > 0 and s.waves[-1].fraction == 1.0
    assert s.federated is not None and s.federated.aggregation is Aggregation.DELTAS


def test_the_large_example_is_the_acceptance_fleet() -> None:
    s = load_fleet_scenario(FOLDER / "fleet.json")
    assert (s.devices, s.tier_b, s.shards) == (100_000, 1000, 10)


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is KeyError:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


@pytest.mark.parametrize("path,value,field", [
    ("devices", 0, "devices"),
    ("devices", True, "devices"),
    ("seed", KeyError, "scenario"),
    ("profiles", {"mcu-qspi": 0.5}, "profiles"),
    ("profiles", {"toaster": 1.0}, "profiles"),
    ("domains.rot90", "most", "domains.rot90"),
    ("links.wifi.loss", 0.99, "links.wifi.loss"),
    ("waves.1.fraction", 0.5, "waves[2].fraction"),
    ("waves.4.fraction", 0.9, "waves"),
    ("waves.0.fraction", 0.1, "waves[0]"),
    ("gate.min_rows", -1, "gate.min_rows"),
    ("faults.power_cut_per_install", 0.9, "faults.power_cut_per_install"),
    ("faults.key_rotation", 7, "faults.key_rotation"),
    ("releases.2.packages.sensor", {"bad": 0}, "releases[2].packages.sensor.bad"),
    ("releases.1.packages.sensor", "from-the-internet", "releases[1].packages.sensor"),
    ("releases.1.packages", {"thick": "committed"}, "releases[1].packages.thick"),
    ("federated.domain", "invert", "federated.domain"),
    ("federated.aggregation", "median", "federated.aggregation"),
    ("federated.rounds", 0, "federated.rounds"),
    ("surprise", 1, "scenario"),
])
def test_a_mistake_names_its_field(path: str, value: Any, field: str) -> None:
    broken = _set(raw(), path, value) if path != "surprise" else {**raw(), "surprise": 1}
    with pytest.raises(FleetScenarioError) as info:
        parse_fleet_scenario(broken)
    assert info.value.field == field, str(info.value)


def test_federated_packages_need_the_federated_section() -> None:
    data = raw()
    del data["federated"]
    with pytest.raises(FleetScenarioError, match="federated"):
        parse_fleet_scenario(data)


def test_a_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    path.write_text("{not json")
    with pytest.raises(FleetScenarioError):
        load_fleet_scenario(path)
    with pytest.raises(FleetScenarioError):
        load_fleet_scenario(tmp_path / "missing.json")


def test_another_fleet_size_keeps_the_tier_b_ratio_and_the_lab() -> None:
    s = load_fleet_scenario(FOLDER / "fleet.json")
    assert s.with_devices(10_000).tier_b == 100
    assert s.with_devices(100).tier_b == 9  # the lab's 3 rigs per domain
    with pytest.raises(FleetScenarioError):
        s.with_devices(0)
