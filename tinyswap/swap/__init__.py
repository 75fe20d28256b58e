"""The swap manager: verified adapters into compiled slots, activated by gates, per request.

`SwapManager` (in `manager`) is the facade; its parts are `residency` (slot states, eviction,
draining, the one retry loop), `slot_bytes` (slot ranges built from the slot map's frame,
written, read back and compared; content digests), `persistence` (the committed state, its JSON
form and the one commit transaction), `gates` (pure gate arithmetic), `records` (plans, enums,
slot table rows) and `errors`.
"""

from __future__ import annotations

from tinyswap.swap.errors import (
    AdapterError,
    AdapterExistsError,
    GateWeightError,
    HotswapMismatchError,
    HotswapTenantError,
    SlotBusyError,
    SlotVerifyError,
    StalePlanError,
    TenantIsolationError,
    UnknownAdapterError,
    VersionConflictError,
)
from tinyswap.swap.manager import PackageSource, SwapManager
from tinyswap.swap.records import BASE, AdapterSpec, AdapterState, EvictionPolicy, PlanAction, SlotRecord, SwapPlan
from tinyswap.swap.slot_bytes import SwapStats

__all__ = [
    "BASE", "AdapterError", "AdapterExistsError", "AdapterSpec", "AdapterState", "EvictionPolicy", "GateWeightError",
    "HotswapMismatchError", "HotswapTenantError", "PackageSource", "PlanAction", "SlotBusyError", "SlotRecord",
    "SlotVerifyError", "StalePlanError", "SwapManager", "SwapPlan", "SwapStats", "TenantIsolationError",
    "UnknownAdapterError", "VersionConflictError",
]
