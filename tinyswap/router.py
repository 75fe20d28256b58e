"""The router: which adapter serves a request, decided from its metadata.

Order of decision for one request:
1. session stickiness: a session keeps the adapter it was first given (until `end_session`);
2. experiments (A/B splits): if a request matches an experiment's filter, its arm is chosen
   deterministically by SHA-256 of (experiment name, key value), so the same user lands in the
   same arm on every device and every run, and arms are filled in proportion to their percent;
3. rules, first match wins: a rule matches when every field it names equals the request's
   (`user`, `tenant`, `task`, or any key of `context`);
4. the default (`"__base__"` unless set).

Tenant isolation is enforced by the swap manager at activation and fails closed: a request of
tenant T may use adapters tagged with tenant T or with no tenant; a request without a tenant
only adapters with no tenant (unless the manager was built with
`untenanted_requests_see_all=True`); anything else raises `TenantIsolationError`.
Per-arm metrics count requests and any outcomes recorded with `record`.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from tinyswap.errors import TinySwapError
from tinyswap.swap import BASE, SwapManager


class RouterError(TinySwapError):
    """A routing rule or experiment is malformed, or a request cannot be routed."""


@dataclass(frozen=True)
class Request:
    user: str | None = None
    tenant: str | None = None
    task: str | None = None
    session: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)

    def field(self, name: str) -> Any:
        if name in ("user", "tenant", "task", "session"):
            return getattr(self, name)
        return self.context.get(name)


@dataclass(frozen=True)
class Rule:
    match: Mapping[str, Any]
    adapter: str  # an adapter name or "__base__"

    def matches(self, request: Request) -> bool:
        return all(request.field(k) == v for k, v in self.match.items())


@dataclass
class ArmStats:
    requests: int = 0
    outcomes: int = 0
    total: float = 0.0

    @property
    def mean(self) -> float | None:
        return self.total / self.outcomes if self.outcomes else None


@dataclass
class Experiment:
    """A deterministic percentage split. `arms` maps an adapter name (or "__base__") to its
    percent; the percents must sum to 100. `key` is the request field hashed (default user)."""

    name: str
    arms: Mapping[str, float]
    key: str = "user"
    match: Mapping[str, Any] = field(default_factory=dict)
    stats: dict[str, ArmStats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.arms or any(not (0 <= p <= 100) for p in self.arms.values()):
            raise RouterError(f"experiment {self.name!r}: arms need percents in [0, 100], got {dict(self.arms)}")
        if abs(sum(self.arms.values()) - 100.0) > 1e-9:
            raise RouterError(f"experiment {self.name!r}: arm percents sum to {sum(self.arms.values())}, not 100")
        self.stats = {arm: ArmStats() for arm in self.arms}

    def arm(self, request: Request) -> str:
        value = request.field(self.key)
        if value is None:
            raise RouterError(f"experiment {self.name!r} splits on {self.key!r}, which the request does not carry")
        digest = hashlib.sha256(f"{self.name}\x00{value}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64 * 100.0  # uniform in [0, 100)
        edge = 0.0
        arms = list(self.arms.items())
        for arm, percent in arms:
            edge += percent
            if point < edge:
                return arm
        return arms[-1][0]


class Router:
    def __init__(self, manager: SwapManager, rules: Sequence[Rule] = (), default: str = BASE) -> None:
        self.manager = manager
        self.rules = list(rules)
        self.default = default
        self.experiments: list[Experiment] = []
        self._sessions: dict[str, str] = {}
        self._lock = threading.Lock()

    def add_rule(self, match: Mapping[str, Any], adapter: str) -> None:
        self.rules.append(Rule(dict(match), adapter))

    def add_experiment(self, experiment: Experiment) -> None:
        self.experiments.append(experiment)

    def end_session(self, session: str) -> None:
        with self._lock:
            self._sessions.pop(session, None)

    def route(self, request: Request) -> str:
        """The adapter for `request` (no side effects other than session stickiness and counts)."""
        with self._lock:
            if request.session is not None and request.session in self._sessions:
                return self._sessions[request.session]
            choice = None
            for exp in self.experiments:
                if all(request.field(k) == v for k, v in exp.match.items()):
                    choice = exp.arm(request)
                    exp.stats[choice].requests += 1
                    break
            if choice is None:
                choice = next((r.adapter for r in self.rules if r.matches(request)), self.default)
            if request.session is not None:
                self._sessions[request.session] = choice
            return choice

    def infer(self, x: np.ndarray, requests: Sequence[Request]) -> list[np.ndarray]:
        """One mixed batch: row i is served by `route(requests[i])`, in one invoke. Rows of
        different tenants cannot share a batch (isolation is checked per tenant)."""
        if len(requests) != len(x):
            raise RouterError(f"{len(requests)} requests for a batch of {len(x)} rows")
        tenants = {r.tenant for r in requests}
        if len(tenants) > 1:
            raise RouterError(f"one batch mixes tenants {sorted(map(str, tenants))}; batch per tenant")
        names = [self.route(r) for r in requests]
        return self.manager.infer(x, adapter_names=names, tenant=next(iter(tenants)))

    def record(self, experiment: str, request: Request, value: float) -> None:
        """Record an outcome (accuracy 0/1, latency, ...) for the arm `request` falls in."""
        exp = next((e for e in self.experiments if e.name == experiment), None)
        if exp is None:
            raise RouterError(f"no experiment named {experiment!r}")
        arm = exp.arm(request)
        with self._lock:
            exp.stats[arm].outcomes += 1
            exp.stats[arm].total += float(value)

    def metrics(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {e.name: {arm: {"requests": s.requests, "outcomes": s.outcomes, "mean": s.mean}
                         for arm, s in e.stats.items()} for e in self.experiments}


__all__ = ["ArmStats", "Experiment", "Request", "Router", "RouterError", "Rule"]
