"""Slot residency: which package each slot holds, pins by requests in flight, eviction,
draining, and the one retry loop every slot-claiming operation runs.

Why concurrent swaps are safe without stopping inference: a slot whose gate is 0 contributes
exactly nothing, so bytes may change under a request that does not use that slot. Every
request pins the slots its gates use and a slot is written only while nothing pins it and no
adapter points at it. A swap that finds every usable slot pinned drains one: no new request may
pin it, requests in flight finish, then it is written (writers are not starved by readers).
"""

from __future__ import annotations

import itertools
import operator
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Iterable, Mapping

import numpy as np

from tinyswap.slotmap import SlotInfo, SlotMap
from tinyswap.swap.errors import SlotBusyError, StalePlanError
from tinyswap.swap.records import AdapterState, EvictionPolicy, SwapPlan

#: Longest single wait for a state change: waits re-check the slots at least this often.
POLL_SECONDS = 0.05
_last_used = operator.attrgetter("last_used")


@dataclass
class SlotState:
    info: SlotInfo
    digest: str | None = None  # package digest whose bytes the slot holds; None = zeros
    writing: bool = False
    draining: bool = False  # a swap waits for this slot: no new request may pin it
    retired: bool = False  # never written again (e.g. worn flash); may keep serving what it holds
    pinned: int = 0  # in-flight requests whose gates use this slot
    last_used: int = 0
    index: int = field(init=False)  # the slot's number (info.slot; a field: read on every look at the slots)

    def __post_init__(self) -> None:
        self.index = self.info.slot


class DrainOutcome(Enum):
    DRAINED = "drained"  # the slot is drained and idle: the caller writes it, then undrains it
    RETRY = "retry"  # another swap drains or writes, or the state changed: look again
    IMPOSSIBLE = "impossible"  # nothing could ever be freed (the caller looks once more, then refuses)


@dataclass(slots=True)  # built on every swap: slots, not frozen (a frozen init costs ~5x)
class Drain:
    outcome: DrainOutcome
    slot: int | None = None  # the drained slot (DRAINED only)


@dataclass(slots=True)  # built on every swap: slots, not frozen (a frozen init costs ~5x)
class Attempt:
    """One look at the slots by an operation that needs a slot (see `Residency.until_done`)."""

    plan: SwapPlan | None = None  # a write to apply now
    done: bool = False  # nothing (more) to do
    wait: str | None = None  # wait for another writer first; the message if that times out
    keep: frozenset[str] = frozenset()  # with no plan: digests whose slots must not be drained
    exclude: frozenset[str] = frozenset()  # ... nor these (e.g. the live version of a hot swap)
    stuck: str = ""  # with no plan: the refusal when no slot could ever be freed
    idle: str = ""  # with no plan and no draining allowed: the refusal when no slot became idle
    last: bool = False  # the operation is complete once `plan` is applied
    label: str = ""  # prefix of the refusal when the slots keep changing


class Residency:
    def __init__(self, slotmap: SlotMap, policy: EvictionPolicy, wait_seconds: float,
                 adapters: Callable[[], Mapping[str, AdapterState]], label: Callable[[str], str]) -> None:
        self.slots = [SlotState(info) for info in slotmap.slots]
        self.policy = policy
        self.wait_seconds = wait_seconds
        self._adapters = adapters
        self._label = label
        # `with self.lock` on the hot paths; `self.cond` (same lock) to wait and notify.
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.generation = 0  # bumped by every change a plan may depend on
        self._clock = itertools.count(1)

    # -- bookkeeping (lock held) ------------------------------------------------------------------
    def tick(self) -> int:
        return next(self._clock)

    def changed(self) -> None:
        """A change plans depend on: stale plans are refused, waiters look again."""
        self.generation += 1
        self.cond.notify_all()

    def digests(self) -> list[str | None]:
        return [s.digest for s in self.slots]

    def retired(self) -> list[int]:
        return [s.index for s in self.slots if s.retired]

    def describe(self) -> dict[int, str | None]:
        return {s.index: (None if s.digest is None else self._label(s.digest)) for s in self.slots}

    def current_digests(self) -> set[str]:
        return {a.current for a in self._adapters().values()}

    def resident_slots(self, digests: Iterable[str]) -> dict[str, int] | None:
        """digest -> slot for every digest, using current (committed, not writing) slots only."""
        wanted = set(digests)
        found: dict[str, int] = {}
        for s in self.slots:
            if s.digest in wanted and not s.writing and not s.draining:
                found.setdefault(s.digest, s.index)
        return found if len(found) == len(wanted) else None

    def resident_slot(self, digest: str) -> int | None:
        """`resident_slots` for one digest (the swap path asks for one at a time)."""
        for s in self.slots:
            if s.digest == digest and not s.writing and not s.draining:
                return s.index
        return None

    def pin(self, slots: Iterable[int]) -> None:
        tick = self.tick()
        for s in slots:
            self.slots[s].pinned += 1
            self.slots[s].last_used = tick

    def release(self, slots: Iterable[int]) -> None:
        with self.lock:
            for s in slots:
                self.slots[s].pinned -= 1
            self.cond.notify_all()

    # -- choosing a slot (lock held) --------------------------------------------------------------
    def free_slot(self) -> int | None:
        """An idle slot that holds nothing anyone points at (empty first), or None."""
        current = self.current_digests()
        for want_empty in (True, False):
            for s in self.slots:
                if s.pinned or s.writing or s.retired or s.digest in current:
                    continue
                if (s.digest is None) == want_empty:
                    return s.index
        return None

    def victim(self, keep: set[str], exclude_digests: set[str]) -> int | None:
        """The slot to overwrite: empty, then stale versions, then the resident adapter chosen
        by the eviction policy; never a pinned or writing slot or one holding `keep`."""
        protected = self._protected(keep | exclude_digests)
        # One pass over the slots: the first idle empty one, the first idle stale one (what
        # `free_slot` returns) and the unprotected idle ones the policy chooses among.
        current = self.current_digests()
        empty = stale = None
        candidates = []
        for s in self.slots:
            if s.pinned or s.writing or s.retired:
                continue
            if s.digest is None:
                empty = s if empty is None else empty
            elif stale is None and s.digest not in current:
                stale = s
            if s.index not in protected:
                candidates.append(s)
        free = empty or stale
        if free is not None and free.index not in protected:
            return free.index
        if not candidates:
            return None
        return self._choose(candidates, by_pins=False).index

    def _choose(self, candidates: list[SlotState], by_pins: bool) -> SlotState:
        """The policy's choice among candidates (fewest pins first when draining)."""
        if self.policy is EvictionPolicy.priority:
            priority = {a.current: a.priority for a in self._adapters().values()}
            if by_pins:
                return min(candidates, key=lambda s: (priority.get(s.digest, -np.inf), s.pinned, s.last_used))
            return min(candidates, key=lambda s: (priority.get(s.digest, -np.inf), s.last_used))
        if by_pins:
            return min(candidates, key=lambda s: (s.pinned, s.last_used))
        return min(candidates, key=_last_used)  # the swap path: least recently used

    def _protected(self, digests: set[str]) -> set[int]:
        """One slot per digest that must stay (a second copy of the same bytes may go)."""
        seen: dict[str, int] = {}
        for s in self.slots:
            if s.digest in digests and not s.writing:
                seen.setdefault(s.digest, s.index)
        return set(seen.values())

    def mark_writing(self, slot: int) -> None:
        """From here on the slot holds nothing usable."""
        target = self.slots[slot]
        target.writing, target.digest = True, None

    # -- waiting and draining ---------------------------------------------------------------------
    def wait_until(self, deadline: float, what: str) -> None:
        """Wait (holding the condition's lock) for a state change, at most POLL_SECONDS at a time."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SlotBusyError(f"{what} within {self.wait_seconds} s "
                                f"(slots: {self.describe()}, pinned: {[s.pinned for s in self.slots]})")
        self.cond.wait(min(POLL_SECONDS, remaining))

    def drain_one(self, keep: set[str], exclude_digests: set[str], deadline: float) -> Drain:
        """Every usable slot is pinned: mark the policy's choice `draining` so that no new
        request pins it and wait until the requests in flight release it."""
        with self.lock:
            protected = self._protected(keep | exclude_digests)
            candidates = [s for s in self.slots if not s.writing and not s.retired and s.index not in protected]
            if not candidates and not any(s.draining or s.writing for s in self.slots):
                return Drain(DrainOutcome.IMPOSSIBLE)
            if not candidates or any(s.draining for s in self.slots):
                # Another swap drains or writes (one drain at a time), or the state changed
                # since the caller looked: wait briefly and let the caller look again.
                self.wait_until(deadline, "no slot became idle")
                return Drain(DrainOutcome.RETRY)
            slot = self._choose(candidates, by_pins=True)
            slot.draining = True
            self.generation += 1
            while slot.pinned:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.cond.wait(remaining) and slot.pinned:
                    slot.draining = False
                    self.cond.notify_all()
                    raise SlotBusyError(f"slot {slot.index} stayed pinned by in-flight requests for "
                                        f"{self.wait_seconds} s")
            return Drain(DrainOutcome.DRAINED, slot.index)

    def undrain(self, slot: int | None) -> None:
        if slot is None:
            return
        with self.lock:
            if self.slots[slot].draining:
                self.slots[slot].draining = False
                self.changed()

    def until_done(self, attempt: Callable[[], Attempt], apply: Callable[[SwapPlan], None], *,
                   may_drain: bool) -> None:
        """The one retry loop of every operation that claims a slot: look (`attempt`), then
        apply its plan, wait for another writer, or drain a slot, until the attempt reports
        done, up to `wait_seconds`. Requests (`may_drain=False`) only wait for an idle slot;
        swaps drain one (one drain at a time, so drains do not fight). A slot this loop drained
        is undrained however it ends."""
        deadline = time.monotonic() + self.wait_seconds
        drained: int | None = None
        impossible = 0
        try:
            while True:
                step = attempt()
                if step.done:
                    return
                if step.wait is not None:
                    with self.lock:
                        self.wait_until(deadline, step.wait)
                    continue
                if step.plan is None:
                    if not may_drain:
                        with self.lock:
                            self.wait_until(deadline, step.idle)
                        continue
                    self.undrain(drained)
                    drained = None
                    result = self.drain_one(set(step.keep), set(step.exclude), deadline)
                    drained = result.slot
                    impossible = impossible + 1 if result.outcome is DrainOutcome.IMPOSSIBLE else 0
                    if impossible >= 2:
                        raise SlotBusyError(step.stuck)
                    continue
                try:
                    apply(step.plan)
                except StalePlanError:
                    if time.monotonic() > deadline:
                        raise SlotBusyError(f"{step.label}the slots kept changing for {self.wait_seconds} s") from None
                    continue
                # The write is done: the slot this loop drained (usually the one just written)
                # must not stay draining, or the adapter it now holds would not count as
                # resident and this loop would wait for its own drain until the timeout.
                if drained is not None:
                    self.undrain(drained)
                    drained = None
                if step.last:
                    return
        finally:
            if drained is not None:
                self.undrain(drained)

    def take_for_clearing(self, slot: SlotState, digests: set[str]) -> bool:
        """Wait until `slot` (if it holds one of `digests`) is idle, then mark it `writing` and
        empty: True when the caller must now write zeros into it."""
        with self.lock:
            while slot.digest in digests and (slot.pinned or slot.writing):
                if not self.cond.wait(self.wait_seconds):
                    raise SlotBusyError(f"slot {slot.index} stayed in use for {self.wait_seconds} s")
            if slot.digest not in digests:
                return False
            if slot.retired:  # never written again: forget what it holds, leave the bytes
                slot.digest = None
                self.generation += 1
                return False
            self.mark_writing(slot.index)
            self.generation += 1
            return True

    def finish_write(self, slot: int) -> None:
        """The write into `slot` ended (committed or not): it may be chosen again."""
        with self.lock:
            self.slots[slot].writing = False
            self.changed()


__all__ = ["Attempt", "Drain", "DrainOutcome", "Residency", "SlotState"]
