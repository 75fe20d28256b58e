"""Streams on the simulated device: stream state in the device's RAM, policies in its trace.

`tinyswap.swap.streams.StreamSessions` runs the streams over the device's swap manager; this
module adds what the device owns:

* RAM. Stream state lives in RAM beside the TFLite Micro arena, the package cache and (for a
  RAM-placed model) the model copy. Its budget is stated when the streams are set up and must fit
  what those leave of the profile's RAM (`free_ram_bytes`), else `StreamRamError`; a state that
  would not fit the budget (a stream too many, a `segment` state beyond it) is refused with the
  same error, nothing changed. State is RAM only: a power cut or a reboot loses it, and the next
  frame of an open stream starts again from a zero state (counted as `resets` and
  `frames_lost_at_reset`). Streams write no flash of their own; a frame whose adapters are not
  resident has the swap manager restore them into a slot, the same path (and power-cut
  coverage) as `Device.infer`.
* Time and trace. Each frame is charged as one estimated inference; a run of frames is a
  `stream` span, and every pin, pin release, flush and segment eviction is an instant (category
  `stream`) at the moment it happens, in the Perfetto trace.
* Isolation, checked. Before each invoke the state's tag (the package digests of the adapter
  set that produced it) is compared with the adapter set the invoke really runs: the slots whose
  gates are on, looked up in the manager's slot table. A frame where they differ is counted as
  mixed; `no_mixed_state` is true only when every frame was checked and none was.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from tinyswap.firmware_sim.errors import DeviceStateError, StreamRamError
from tinyswap.firmware_sim.profiles import estimate_inference_seconds
from tinyswap.swap import SwapManager
from tinyswap.swap.records import AdapterSpec
from tinyswap.swap.streams import (
    StateKey,
    StatePorts,
    Stream,
    StreamBudgetError,
    StreamEvent,
    StreamPolicy,
    StreamSessions,
    StreamStats,
)

if TYPE_CHECKING:  # only the type: the device never needs this module to run
    from tinyswap.firmware_sim.device import Device

KIB = 1024
# What a firmware would set aside for stream state when nothing else is said: a few states of a
# keyword spotter (64 bytes each for models/streaming/kws_state_io) with room for segments.
DEFAULT_STATE_BUDGET = 8 * KIB


def free_ram_bytes(device: Device) -> int:
    """RAM the device's profile leaves after the TFLite Micro arena (measured, or the factory
    figure before the first boot), the package cache budget and the model copy."""
    ram = device.ram_budget
    arena = device.arena_bytes if device.arena_bytes is not None else device.factory_arena_bytes()
    return ram.ram_bytes - (arena + ram.cache + ram.model_copy)


@dataclass(frozen=True)
class FrameResult:
    """One frame's non-state outputs and the adapter versions it ran under ("name@version+...")."""

    version: str
    outputs: list[np.ndarray]


@dataclass
class StreamRecord:
    """One stream over the device's life (across resets), for the report."""

    stream_id: str
    adapters: dict[str, float]
    policy: StreamPolicy
    max_age_frames: int | None
    tenant: str | None
    stats: StreamStats = field(default_factory=StreamStats)  # summed over the stream's incarnations
    resets: int = 0  # power cuts or reboots that lost its state
    frames_lost_at_reset: int = 0
    checked_frames: int = 0
    mixed_frames: int = 0  # frames whose state was produced under another adapter set
    pinned_seconds: float = 0.0
    pinned_since: float | None = None  # simulated time its pin became an old version
    peak_states: int = 0  # the most states it held at once
    closed: bool = False
    live: Stream | None = None  # the incarnation in the current sessions (None: lost or closed)


class DeviceStreams:
    """The streams of one device (one model with state ports).

    ports: which data inputs / outputs carry the state (`StatePorts`).
    ram_budget_bytes: RAM reserved for stream state; must fit `free_ram_bytes(device)`.
    """

    def __init__(self, device: Device, ports: StatePorts, *, ram_budget_bytes: int = DEFAULT_STATE_BUDGET) -> None:
        if not isinstance(ram_budget_bytes, int) or ram_budget_bytes < 1:
            raise StreamRamError(f"the stream state budget must be a positive number of bytes, got {ram_budget_bytes!r}")
        free = free_ram_bytes(device)
        if ram_budget_bytes > free:
            raise StreamRamError(f"a stream state budget of {ram_budget_bytes} bytes does not fit the "
                                 f"{free} bytes of RAM {device.profile.name} has left after the arena, the package "
                                 "cache and the model copy; give a smaller budget")
        self.device = device
        self.ports = ports
        self.budget = ram_budget_bytes
        self.records: dict[str, StreamRecord] = {}
        self.peak_ram_bytes = 0
        self._sessions: StreamSessions | None = None
        self._manager: SwapManager | None = None
        self._last_frame_at = 0.0  # simulated time the last frame ended (a reset is noticed only later)

    # -- facts ---------------------------------------------------------------------------------
    @property
    def state_bytes(self) -> int | None:
        """RAM one stream state takes (None until the first stream step)."""
        return None if self._sessions is None else self._sessions.state_bytes

    @property
    def ram_bytes(self) -> int:
        """RAM the stream states take now (0 while the device is down: RAM is lost)."""
        if self._sessions is None or not self.device.booted or self.device.manager is not self._manager:
            return 0
        return self._sessions.ram_bytes

    def no_mixed_state(self) -> bool:
        """Every frame of every stream was checked, and none consumed a state produced under
        another adapter set than the one it ran with."""
        return all(r.mixed_frames == 0 and r.checked_frames == sum(self.total(r).frames.values())
                   for r in self.records.values())

    # -- lifecycle -----------------------------------------------------------------------------
    def open(self, stream_id: str, adapters: AdapterSpec, policy: StreamPolicy | str = StreamPolicy.FLUSH, *,
             max_age_frames: int | None = None, tenant: str | None = None) -> StreamRecord:
        sessions = self._live()
        if stream_id in self.records:  # ids are unique over the device's life: the report keeps each
            raise DeviceStateError(f"stream {stream_id!r} was opened before; give a new stream another id")
        with self._ram_errors():
            stream = sessions.open(stream_id, adapters, policy, tenant=tenant, max_age_frames=max_age_frames)
        record = StreamRecord(stream_id, dict(stream.adapters), stream.policy, max_age_frames, tenant, live=stream)
        self.records[stream_id] = record
        self.device.timeline.instant("stream open", cat="stream", stream=stream_id, policy=stream.policy.value)
        return record

    def close(self, stream_id: str) -> StreamRecord:
        record = self.record(stream_id)
        sessions = self._live()
        if record.live is not None:
            self._merge(record, sessions.close(stream_id))
            record.live = None
        self._end_pinned_time(record, self.device.timeline.now)
        record.closed = True
        self.device.timeline.instant("stream close", cat="stream", stream=stream_id)
        return record

    # -- frames --------------------------------------------------------------------------------
    def run(self, stream_id: str, frames: Sequence[tuple[np.ndarray, ...]]) -> list[FrameResult]:
        """Run frames (each the model's non-state data inputs, batch 1) through a stream, one
        invoke each; returns each frame's non-state outputs and versions. One `stream` span in
        the trace."""
        record = self.record(stream_id)
        d = self.device
        one = estimate_inference_seconds(d.cost.macs_per_row, d.profile, d.cost.weight_bytes)
        out = []
        with d.operation("stream", stream=stream_id, frames=len(frames)) as details:
            sessions = self._live()
            if record.live is None:  # its state was lost with the RAM: the stream starts again
                with self._ram_errors():
                    record.live = sessions.open(stream_id, record.adapters, record.policy, tenant=record.tenant,
                                                max_age_frames=record.max_age_frames)
            for frame in frames:
                before, counts = record.live.stats.pinned_frames, dict(record.live.stats.frames)
                with self._ram_errors():
                    outputs = sessions.step(stream_id, *frame)
                version = next(k for k, n in record.live.stats.frames.items() if n != counts.get(k, 0))
                out.append(FrameResult(version, outputs))
                if record.live.stats.pinned_frames > before and record.pinned_since is None:
                    record.pinned_since = d.timeline.now
                record.peak_states = max(record.peak_states, len(record.live.segments))
                self.peak_ram_bytes = max(self.peak_ram_bytes, sessions.ram_bytes)
                d.timeline.advance(one, "invoke", cat="cpu", rows=1, macs=d.cost.macs_per_row, stream=stream_id)
                self._last_frame_at = d.timeline.now
            details["ram_bytes"] = sessions.ram_bytes
        return out

    # -- the report ----------------------------------------------------------------------------
    def total(self, record: StreamRecord) -> StreamStats:
        """A stream's counts over its whole life (lost incarnations and the live one)."""
        total = StreamStats(dict(record.stats.frames), record.stats.flushes, record.stats.frames_lost,
                            record.stats.pinned_frames, record.stats.evictions)
        if record.live is not None:  # (after a reset, until the next frame notices it: what it did before)
            self._add(total, record.live.stats)
        return total

    def pinned_seconds(self, record: StreamRecord) -> float:
        """Simulated seconds the stream ran pinned to a version no longer current (from its first
        frame on the old version to the pin's release; still counting while it holds)."""
        open_pin = 0.0 if record.pinned_since is None else self.device.timeline.now - record.pinned_since
        return record.pinned_seconds + open_pin

    # -- internals -----------------------------------------------------------------------------
    def record(self, stream_id: str) -> StreamRecord:
        """An open stream's record (`DeviceStateError` for an unknown or closed one)."""
        record = self.records.get(stream_id)
        if record is None or record.closed:
            raise DeviceStateError(f"no open stream {stream_id!r} on the device")
        return record

    def _live(self) -> StreamSessions:
        """The sessions over the device's current swap manager. After a power cut or a reboot
        (a new manager: RAM was lost) every open stream's state is gone: counted, and each
        starts again from a zero state at its next frame."""
        d = self.device
        if not d.booted:
            raise DeviceStateError("streams: the device is not booted (power_on() and boot() first)")
        if self._sessions is not None and d.manager is self._manager:
            return self._sessions
        for record in self.records.values():
            if record.live is None or record.closed:
                continue
            lost = sum(s.frames for s in record.live.segments.values())
            self._merge(record, record.live.stats)
            record.resets += 1
            record.frames_lost_at_reset += lost
            record.live = None
            self._end_pinned_time(record, self._last_frame_at)  # the pin went with the RAM
            d.timeline.instant("stream state lost", cat="stream", stream=record.stream_id, frames_lost=lost)
        self._manager = d.manager
        with self._ram_errors():
            self._sessions = StreamSessions(d.manager, self.ports, ram_budget_bytes=self.budget,
                                            on_event=self._on_event, on_frame=self._on_frame)
        return self._sessions

    def _on_event(self, event: StreamEvent, stream: Stream, details: dict[str, object]) -> None:
        record = self.records.get(stream.id)
        if event is StreamEvent.UNPIN and record is not None:
            self._end_pinned_time(record, self.device.timeline.now)
        self.device.timeline.instant(f"stream {event.value}", cat="stream", stream=stream.id, **details)

    def _on_frame(self, stream: Stream, tag: StateKey, gates: np.ndarray) -> None:
        """The check: the digests the state is tagged with are the digests in the slots whose
        gates are on for this invoke."""
        record = self.records[stream.id]
        assert self._manager is not None
        table = {s.slot: s.digest for s in self._manager.slot_table()}
        ran_under = sorted(table[g.slot] or "" for g in self._manager.slotmap.gates
                           if int(gates[g.slot, 0, 0]) != g.zero_point)
        record.checked_frames += 1
        if sorted(digest for _, digest, _ in tag) != ran_under:
            record.mixed_frames += 1
            self.device.timeline.instant("stream MIXED STATE", cat="stream", stream=stream.id)

    def _end_pinned_time(self, record: StreamRecord, now: float) -> None:
        if record.pinned_since is not None:
            record.pinned_seconds += now - record.pinned_since
            record.pinned_since = None

    def _merge(self, record: StreamRecord, stats: StreamStats) -> None:
        self._add(record.stats, stats)

    @staticmethod
    def _add(total: StreamStats, stats: StreamStats) -> None:
        for label, n in stats.frames.items():
            total.frames[label] = total.frames.get(label, 0) + n
        total.flushes += stats.flushes
        total.frames_lost += stats.frames_lost
        total.pinned_frames += stats.pinned_frames
        total.evictions += stats.evictions

    @contextlib.contextmanager
    def _ram_errors(self) -> Iterator[None]:
        try:
            yield
        except StreamBudgetError as exc:
            raise StreamRamError(f"{exc} (the device's stream state budget; {self.device.profile.name} has "
                                 f"{free_ram_bytes(self.device)} bytes of RAM left for it)") from exc


__all__ = ["DEFAULT_STATE_BUDGET", "DeviceStreams", "FrameResult", "StreamRecord", "free_ram_bytes"]
