"""The swap manager's typed records: plans, plan actions, eviction policy, the committed slot
table row, and what the manager keeps per adapter name."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Mapping, Sequence, Union

from tinyswap.package import AdapterPackage

#: The reserved name of "no adapter" in a request.
BASE = "__base__"

#: What a request may ask for: one adapter, several at weight 1, or weights per adapter.
AdapterSpec = Union[str, Sequence[str], Mapping[str, float], None]


class PlanAction(StrEnum):
    """What `apply` does with a plan (also the event kind it reports). Member names equal their
    values, so `plan.action == "load"` keeps holding for callers that compare strings."""

    load = "load"  # a new adapter name
    hotswap = "hotswap"  # a new version of a loaded name
    restore = "restore"  # an accepted version made resident again (rollback, first use, eviction)


class EvictionPolicy(StrEnum):
    """Which resident adapter gives up its slot when no slot is free."""

    lru = "lru"  # least recently used first
    priority = "priority"  # lowest `priority` first, least recently used among equals


@dataclass(slots=True)
class SwapPlan:
    """What `apply` will do; building one changed nothing."""

    action: PlanAction
    name: str
    package: AdapterPackage
    slot: int | None  # the idle slot to write; None: keep cached, make resident on first use
    evicts: str | None  # digest of the adapter whose bytes the write replaces
    generation: int
    priority: float = 0.0


@dataclass(frozen=True)
class SlotRecord:
    """One row of the committed slot table (what a device persists)."""

    slot: int
    digest: str | None  # package digest, None when the slot holds zeros
    content_sha256: str  # SHA-256 of the slot's tensor bytes, in slot-map order


@dataclass(frozen=True)
class AdapterState:
    """A loaded adapter name: the version in use and how it is treated. Its accepted versions
    are the registry's history of the name (the one version history)."""

    name: str
    current: str  # package digest in use for this name
    priority: float = 0.0
    tenant: str | None = None

    def at(self, digest: str) -> "AdapterState":
        """The same name at another version (built directly: `dataclasses.replace` costs ~5x
        on the swap path)."""
        return AdapterState(self.name, digest, self.priority, self.tenant)


__all__ = ["AdapterSpec", "AdapterState", "BASE", "EvictionPolicy", "PlanAction", "SlotRecord", "SwapPlan"]
