"""`tinyswap fleet SCENARIO.json --engine local|ray ...`: the command's body (cli.py imports
this module only when the command runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyswap.fleet.errors import FleetScenarioError


def make_engine(name: str, workers: int, address: str | None):  # noqa: ANN201 - an Engine
    from tinyswap.fleet.engine import LocalEngine

    if name == "local":
        if address is not None:
            raise FleetScenarioError("--address needs --engine ray", field="address")
        return LocalEngine()
    from tinyswap.fleet.ray_engine import RayEngine

    return RayEngine(workers=workers, address=address)


def run(args: argparse.Namespace) -> int:
    from tinyswap.fleet.run import run_fleet
    from tinyswap.fleet.scenario import load_fleet_scenario

    scenario = load_fleet_scenario(Path(args.scenario))
    if args.devices is not None:
        scenario = scenario.with_devices(args.devices)
    if not 1 <= args.workers <= 256:
        raise FleetScenarioError(f"--workers must be in [1, 256], got {args.workers}", field="workers")
    engine = make_engine(args.engine, args.workers, args.address)
    report = run_fleet(scenario, engine, Path(args.out), progress=print, engine_name=args.engine)
    agree = report["agreement"]["agree"]
    print(f"report: {Path(args.out) / 'report.json'} (digest {report['digest']}); tier A vs tier B "
          f"{'agree' if agree else 'DISAGREE'}; {report['timing']['devices_per_second']} devices/s")
    return 0 if agree and report["bricked"] == 0 else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    fleet = sub.add_parser("fleet", help="simulate a fleet: staged rollouts with health gates, federated adapters "
                           "(format: docs/fleet-format.md)")
    fleet.add_argument("scenario", help="fleet scenario JSON (example: models/digits/scenarios/fleet/fleet.json)")
    fleet.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: this process; ray: Ray actors (needs the `fleet` extra)")
    fleet.add_argument("--address", metavar="ADDR", help="a Ray cluster's address (default: start a local Ray)")
    fleet.add_argument("--devices", type=int, metavar="N", help="tier-A fleet size (tier B scales at the "
                       "scenario's ratio)")
    fleet.add_argument("--workers", type=int, default=2, metavar="W", help="Ray actors (default: 2)")
    fleet.add_argument("--out", default="out/fleet", metavar="DIR",
                       help="report.json, rollout.png, federated.png, trace.json (default: out/fleet)")
    fleet.set_defaults(func=run)


__all__ = ["add_parser", "run"]
