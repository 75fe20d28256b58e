"""One small fleet (models/digits/scenarios/fleet/ci.json) run once per session on each engine:
the tests read its reports. Ray starts once, with two CPUs and no dashboard. Under
pytest-xdist the first worker that needs a report runs the fleet and the others read its
report.json (one run per session, not one per worker)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

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


def shared_run(factory: pytest.TempPathFactory, name: str, make_engine: Callable[[], Any]) -> dict[str, Any]:
    """The CI fleet's report on one engine, run once per session across xdist workers."""
    base = factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out = root / f"fleet-{name}"
    report = out / "report.json"
    lock = root / f"fleet-{name}.lock"
    if report.exists():
        return json.loads(report.read_text())
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL))
    except FileExistsError:  # another worker is running it: wait for it (bounded), then read its report
        deadline = time.monotonic() + 900
        while lock.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {name} fleet run of another worker did not finish") from None
            time.sleep(0.5)
        if not report.exists():
            raise RuntimeError(f"the {name} fleet run failed on another worker (see its error)") from None
        return json.loads(report.read_text())
    try:
        return run_ci(make_engine(), out)
    finally:
        lock.unlink()


@pytest.fixture(scope="session")
def local_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tinyswap.fleet.engine import LocalEngine

    return shared_run(tmp_path_factory, "local", LocalEngine)


@pytest.fixture(scope="session")
def ray_report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("ray", reason="the fleet extra (ray) is not installed")

    def engine() -> Any:
        from tinyswap.fleet.ray_engine import RayEngine

        request.getfixturevalue("ray_session")  # Ray starts only in the worker that runs the fleet
        return RayEngine(workers=2)

    return shared_run(tmp_path_factory, "ray", engine)
