"""Large runs (slow; `TINYSWAP_FULL=1 bash scripts/test.sh -m ""`): the outcome tables
re-measured, the digest across worker counts, and the acceptance fleet of 100,000 + 1,000."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tinyswap.fleet.measure import load_tables, measure_outcomes
from tinyswap.fleet.scenario import load_fleet_scenario
from tinyswap.resources import models_dir

FOLDER = models_dir() / "digits" / "scenarios" / "fleet"


@pytest.mark.slow
def test_the_stored_outcome_tables_are_what_the_device_measures() -> None:
    assert measure_outcomes() == load_tables()


@pytest.mark.slow
def test_the_digest_does_not_depend_on_the_number_of_workers(ray_session: Any, tmp_path: Path) -> None:
    from tinyswap.fleet.engine import LocalEngine
    from tinyswap.fleet.ray_engine import RayEngine
    from tinyswap.fleet.run import run_fleet

    scenario = load_fleet_scenario(FOLDER / "small.json")
    digests = {run_fleet(scenario, engine, tmp_path / name)["digest"]
               for name, engine in (("local", LocalEngine()), ("ray1", RayEngine(workers=1)),
                                    ("ray2", RayEngine(workers=2)))}
    assert len(digests) == 1


@pytest.mark.slow
def test_the_acceptance_fleet_runs_within_ten_minutes_on_ray(ray_session: Any, tmp_path: Path) -> None:
    from tinyswap.fleet.ray_engine import RayEngine
    from tinyswap.fleet.run import run_fleet

    start = time.perf_counter()
    report = run_fleet(load_fleet_scenario(FOLDER / "fleet.json"), RayEngine(workers=2), tmp_path)
    assert time.perf_counter() - start <= 600
    assert report["bricked"] == 0 and report["agreement"]["agree"]
    bad = report["releases"][-1]
    assert bad["halted_wave"] is not None and bad["max_bad_exposure"] <= 0.01
    fed = report["federated"]
    assert fed["accuracy_by_method"]["deltas"][-1] - fed["base_accuracy"] >= 0.10
