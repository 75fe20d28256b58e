"""The device's simulated timeline: flash operations, CPU work and device spans, on one clock.

Why not `storage.SimClock` alone: a device may have two media (QSPI NOR and an SD card), each
with its own profile, but one timeline. Each part gets a `FlashTimer` (an `OpSink`) that costs
its operations with `storage.op_seconds` and its own profile, exactly as `SimClock.charge`
does, and advances the shared clock; CPU work (inference, hashing, in-place reads) is added
with `advance`. Nothing sleeps: the time is a pure function of the operations and profiles.

The trace exports as Chrome / Perfetto trace JSON (the "Trace Event Format": `{"traceEvents":
[...]}`, complete events `ph: "X"` with `ts`/`dur` in microseconds, instant events `ph: "i"`,
thread names as metadata events `ph: "M"`), which ui.perfetto.dev and chrome://tracing open.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from tinyswap.firmware_sim.flash import FlashOp
from tinyswap.firmware_sim.storage import StorageProfile, op_seconds

# Trace "threads": one per track of the timeline.
TRACKS = ("device", "cpu")


@dataclass
class TraceEvent:
    name: str
    cat: str
    ph: str  # "X" (complete) or "i" (instant)
    ts: float  # seconds
    dur: float  # seconds (0 for instants)
    track: str
    args: dict[str, Any] = field(default_factory=dict)


class Timeline:
    """Simulated time and the events that filled it.

    record_ops: keep one event per flash operation (turn off for long runs; the clock and the
        per-category totals are kept either way).
    """

    def __init__(self, *, worst: bool = False, record_ops: bool = True) -> None:
        self.now = 0.0
        self.worst = worst
        self.record_ops = record_ops
        self.events: list[TraceEvent] = []
        self.totals: dict[str, float] = {}
        self._tracks: list[str] = list(TRACKS)

    def timer(self, track: str, profile: StorageProfile) -> FlashTimer:
        """An `OpSink` for one flash part, drawn on its own track."""
        if track not in self._tracks:
            self._tracks.append(track)
        return FlashTimer(self, track, profile)

    def advance(self, seconds: float, label: str, /, cat: str = "cpu", track: str = "cpu", **args: Any) -> None:
        """Add `seconds` of work that is not a flash command (inference, hashing, RAM copies)."""
        if seconds < 0:
            raise ValueError(f"time cannot go backwards ({seconds} s)")
        self.events.append(TraceEvent(label, cat, "X", self.now, seconds, track, args))
        self._total(cat, seconds)
        self.now += seconds

    def instant(self, label: str, /, cat: str = "device", **args: Any) -> None:
        self.events.append(TraceEvent(label, cat, "i", self.now, 0.0, "device", args))

    @contextlib.contextmanager
    def span(self, label: str, /, cat: str = "device", **args: Any) -> Iterator[dict[str, Any]]:
        """A device-level operation (boot, install, swap ...). The yielded dict becomes the
        event's args, so the operation can add what it learnt (bytes, slots, errors)."""
        start = self.now
        details = dict(args)
        try:
            yield details
        except BaseException as exc:
            details["error"] = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.events.append(TraceEvent(label, cat, "X", start, self.now - start, "device", details))

    def seconds(self, cat: str) -> float:
        """Total simulated seconds charged under a category ("cpu", "flash:model", ...)."""
        return self.totals.get(cat, 0.0)

    def _total(self, cat: str, seconds: float) -> None:
        self.totals[cat] = self.totals.get(cat, 0.0) + seconds

    # ---------------------------------------------------------------- export
    def chrome_trace(self) -> dict[str, Any]:
        """The timeline as Chrome / Perfetto trace JSON (timestamps in microseconds)."""
        tid = {t: i + 1 for i, t in enumerate(self._tracks)}
        out: list[dict[str, Any]] = [
            {"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "tinyswap device"}}]
        out += [{"name": "thread_name", "ph": "M", "pid": 1, "tid": tid[t], "args": {"name": t}}
                for t in self._tracks]
        # Spans are appended when they end; sort by start (longer first) so parents precede
        # children, which is the order trace viewers expect for nested complete events.
        for e in sorted(self.events, key=lambda e: (e.ts, -e.dur)):
            ev: dict[str, Any] = {"name": e.name, "cat": e.cat, "ph": e.ph, "pid": 1, "tid": tid[e.track],
                                  "ts": e.ts * 1e6, "args": _jsonable(e.args)}
            if e.ph == "X":
                ev["dur"] = e.dur * 1e6
            else:
                ev["s"] = "t"
            out.append(ev)
        return {"traceEvents": out, "displayTimeUnit": "ms",
                "otherData": {"clock": "simulated", "worst_case_timings": self.worst}}

    def write_chrome_trace(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.chrome_trace()))
        return path


class FlashTimer:
    """Charges each operation of one flash part to the shared timeline (`OpSink`)."""

    def __init__(self, timeline: Timeline, track: str, profile: StorageProfile) -> None:
        self.timeline = timeline
        self.track = track
        self.profile = profile

    def charge(self, op: FlashOp) -> None:
        t = self.timeline
        seconds = op_seconds(op, self.profile, t.worst)
        if t.record_ops:
            t.events.append(TraceEvent(op.kind.value, "flash", "X", t.now, seconds, self.track,
                                       {"offset": op.offset, "bytes": op.length}))
        t._total(self.track, seconds)
        t.now += seconds


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


__all__ = ["FlashTimer", "Timeline", "TraceEvent"]
