"""Test-wide settings: hypothesis profiles and the location of the shared example models.

CI runs the bounded `ci` profile. The documented full run is
`TINYSWAP_FULL=1 .venv/bin/python -m pytest -m ""` (see README), which selects the `full`
profile (>= 200 examples per property) and includes the tests marked `slow`, which the
default `-m "not slow"` in pyproject.toml deselects.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings

FULL = os.environ.get("TINYSWAP_FULL") == "1"

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "full",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("full" if FULL else "ci")

REPO = Path(__file__).resolve().parents[1]
TFLM_MODELS = REPO / "models" / "tflm"
KERAS_MODELS = REPO / "models" / "keras"

