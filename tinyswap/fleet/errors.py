"""The fleet simulator's errors, under tinyswap's one hierarchy (`TinySwapError`)."""

from __future__ import annotations

from tinyswap.errors import TinySwapError


class FleetError(TinySwapError):
    """Base class of the fleet simulator's errors."""


class FleetScenarioError(FleetError, ValueError):
    """A fleet scenario is malformed: not JSON, an unknown or missing field, a value out of
    range, an unknown profile, domain, link class or package source. `field` names it."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class FleetEngineError(FleetError):
    """The requested engine cannot run: Ray is not installed (the `fleet` extra), or the
    cluster address cannot be reached."""


class FleetPrivacyError(FleetError):
    """A federated client was about to send something other than its adapter update."""


__all__ = ["FleetEngineError", "FleetError", "FleetPrivacyError", "FleetScenarioError"]
