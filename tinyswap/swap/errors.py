"""The swap manager's refusals: each one leaves the model image and the committed state as they were."""

from __future__ import annotations

from tinyswap.errors import TinySwapError


class AdapterError(TinySwapError):
    """A swap-manager request was refused; the model image and the state are unchanged."""


class UnknownAdapterError(AdapterError):
    """No adapter of that name is loaded."""


class AdapterExistsError(AdapterError):
    """An adapter of that name is already loaded (use `hotswap_adapter` for a new version)."""


class GateWeightError(AdapterError):
    """A composition weight lies outside the gates' range [0, gate_max]."""


class SlotBusyError(AdapterError):
    """No slot can be freed: each holds an adapter pinned by in-flight requests, or one request
    needs more adapters at once than the model has slots."""


class SlotVerifyError(AdapterError):
    """The bytes read back from a slot differ from what was written; the slot stays disabled."""


class StalePlanError(AdapterError):
    """The state changed between `plan_*` and `apply`: plan again."""


class TenantIsolationError(AdapterError):
    """A request of one tenant asked for an adapter that belongs to another tenant."""


class HotswapMismatchError(AdapterError):
    """A hot swap's package carries another package name than the adapter it replaces (its
    anti-rollback counter and version history are per package name)."""


class HotswapTenantError(HotswapMismatchError, TenantIsolationError):
    """A hot swap's package belongs to another tenant than the adapter it replaces."""


class VersionConflictError(AdapterError):
    """A package reuses an accepted `name@version` with different bytes."""


__all__ = [
    "AdapterError", "AdapterExistsError", "GateWeightError", "HotswapMismatchError", "HotswapTenantError",
    "SlotBusyError", "SlotVerifyError", "StalePlanError", "TenantIsolationError", "UnknownAdapterError",
    "VersionConflictError",
]
