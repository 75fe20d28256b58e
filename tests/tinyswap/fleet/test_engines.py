"""The command and its engines: typed errors, Ray optional."""

from __future__ import annotations

import sys

import pytest

from tinyswap.cli import main
from tinyswap.fleet.errors import FleetEngineError

from .conftest import CI_SCENARIO


def test_without_ray_the_ray_engine_names_the_fleet_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from tinyswap.fleet.ray_engine import RayEngine

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(FleetEngineError, match=r"tinyswap\[fleet\]"):
        RayEngine()


def test_the_command_refuses_an_address_for_the_local_engine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fleet", str(CI_SCENARIO), "--engine", "local", "--address", "ray://x:1", "--out", "unused"]) == 2
    assert "--address needs --engine ray" in capsys.readouterr().err


def test_the_command_refuses_a_bad_scenario_before_running(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fleet.json"
    path.write_text('{"seed": 1}')
    assert main(["fleet", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "fleet scenario" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_command_refuses_zero_workers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fleet", str(CI_SCENARIO), "--engine", "ray", "--workers", "0", "--out", "unused"]) == 2
    assert "--workers" in capsys.readouterr().err
