"""Fixtures of the scenario tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tinyswap.firmware_sim.scenario.scenario_cases import make_work


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    """The shared working folder (see `make_work`); tests only read it or add new files."""
    return make_work(tmp_path_factory.mktemp("scenario"))
