"""One small fleet (models/digits/scenarios/fleet/ci.json) run once per session on each engine:
the tests read its reports. Ray starts once, with two CPUs and no dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from tinyswap.resources import models_dir

CI_SCENARIO = models_dir() / "digits" / "scenarios" / "fleet" / "ci.json"


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="the fleet extra (ray) is not installed")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def run_ci(engine: Any, out: Path) -> dict[str, Any]:
    from tinyswap.fleet.run import run_fleet
    from tinyswap.fleet.scenario import load_fleet_scenario

    return run_fleet(load_fleet_scenario(CI_SCENARIO), engine, out)


@pytest.fixture(scope="session")
def local_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tinyswap.fleet.engine import LocalEngine

    return run_ci(LocalEngine(), tmp_path_factory.mktemp("fleet-local"))


@pytest.fixture(scope="session")
def ray_report(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tinyswap.fleet.ray_engine import RayEngine

    return run_ci(RayEngine(workers=2), tmp_path_factory.mktemp("fleet-ray"))
