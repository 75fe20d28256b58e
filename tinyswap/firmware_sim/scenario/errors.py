"""The scenario runner's errors, under tinyswap's one hierarchy (`TinySwapError`).

Every format error carries where it happened (`step`: the 0-based step index, or None for
the scenario's top level), the step's `kind` when known, and the offending `field`, so a
caller can point at the line of the scenario without parsing the message.
"""

from __future__ import annotations

from typing import Any

from tinyswap.errors import TinySwapError


class ScenarioError(TinySwapError):
    """Base class of the scenario runner's errors."""

    def __init__(self, message: str, *, step: int | None = None, field: str | None = None,
                 kind: str | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.field = field
        self.kind = kind


class ScenarioFormatError(ScenarioError, ValueError):
    """The scenario is malformed: not JSON, an unknown step kind or field, a missing, mistyped
    or out-of-range field, an unknown package or dataset label."""


class ScenarioFileError(ScenarioError):
    """A file the scenario is or names is missing, too large, not a regular file, or unreadable
    (the scenario itself, a bundle, key, package or dataset)."""


class StepKindRegistryError(ScenarioError):
    """Two step kinds were registered under one name, or a registration is inconsistent (a
    programming error in the runner, caught at import time)."""


class ScenarioStepFailed(ScenarioError):
    """A step raised an error it did not expect, or did not raise the one it expected.
    The outputs were written; `report` is the report up to and including that step."""

    def __init__(self, message: str, *, step: int, report: dict[str, Any], kind: str | None = None) -> None:
        super().__init__(message, step=step, kind=kind)
        self.report = report


__all__ = ["ScenarioError", "ScenarioFileError", "ScenarioFormatError", "ScenarioStepFailed",
           "StepKindRegistryError"]
