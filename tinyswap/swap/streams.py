"""Streams: stateful models across adapter swaps, never mixing state from two adapter sets.

A streaming model (keyword spotting on audio frames, anomaly detection on sensor windows)
carries state from one invoke to the next. State computed under adapter A is wrong for adapter
B, so each stream's state is tagged with the package digests of the adapter set that produced
it, and when a swap changes that set a per-stream policy decides, never silently:

- `PIN`: the stream keeps the versions it started with resident (the swap manager's pins, as an
  in-flight request does) until it is closed or reaches `max_age_frames`; then its state is
  flushed and it moves to the current versions.
- `FLUSH`: the state is reset when the set changes; the frames whose context is dropped are
  counted as lost.
- `SEGMENT`: one state per adapter set, kept within a RAM budget and evicted least recently
  used; frames under a set continue that set's own stream (a rollback resumes the old state).

This module handles models whose state is a graph input fed back from a graph output (the
state-in/state-out pattern; `StatePorts` names the pairs). A state output whose quantization
differs from its input's is requantized on the way back, as the application would do. Mixed
batches (`step_batch`) carry one state and one adapter set per row.
"""

from __future__ import annotations

import contextlib
import enum
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from tinyswap.errors import TinySwapError
from tinyswap.swap.manager import SwapManager
from tinyswap.swap.records import AdapterSpec

StateKey = tuple[tuple[str, str, float], ...]  # (adapter name, package digest, weight), sorted


class StreamError(TinySwapError):
    """A stream is misused (unknown id, wrong frame, a state that does not fit the budget)."""


class StreamBudgetError(StreamError):
    """The streams' states would not fit their RAM budget."""


class StreamPolicy(str, enum.Enum):
    PIN = "pin"
    FLUSH = "flush"
    SEGMENT = "segment"


class StreamEvent(str, enum.Enum):
    """What a policy did to a stream, for traces (`StreamSessions(on_event=...)`)."""

    PIN = "pin"  # the stream pinned the versions it runs on
    UNPIN = "unpin"  # it released them (closed, or older than max_age_frames)
    FLUSH = "flush"  # its state was reset (details: frames_lost)
    EVICT = "evict"  # a SEGMENT state was evicted to make room (details: frames_lost)


@dataclass(frozen=True)
class StatePorts:
    """Which graph inputs carry state in and which outputs carry it out, as (input position,
    output position) pairs over the model's data inputs and outputs (gates not counted)."""

    pairs: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class _Quant:
    scale: float
    zero_point: int


@dataclass
class StreamStats:
    """What a stream did, for reports: frames per adapter version, flushes, pinned frames."""

    frames: dict[str, int] = field(default_factory=dict)  # "name@version+..." (or "__base__") -> frames
    flushes: int = 0
    frames_lost: int = 0  # frames of context discarded by flushes and evictions
    pinned_frames: int = 0  # frames run on a pinned version while a newer one was current
    evictions: int = 0


@dataclass
class _Segment:
    key: StateKey
    state: list[np.ndarray]
    frames: int = 0  # frames since this state was last reset


class Stream:
    """One stream's state, tagged with the adapter set that produced it."""

    def __init__(self, stream_id: str, adapters: dict[str, float], policy: StreamPolicy, tenant: str | None,
                 max_age_frames: int | None) -> None:
        self.id = stream_id
        self.adapters = adapters
        self.policy = policy
        self.tenant = tenant
        self.max_age_frames = max_age_frames
        self.stats = StreamStats()
        self.segments: OrderedDict[StateKey, _Segment] = OrderedDict()  # LRU order, most recent last
        self.pin: contextlib.ExitStack | None = None
        self.pinned_key: StateKey | None = None
        self.pinned_gates: np.ndarray | None = None
        self.pinned_frames = 0  # frames run under the current pin

    @property
    def state_keys(self) -> list[StateKey]:
        return list(self.segments)


class StreamSessions:
    """Streams over one swap manager and a state-in/state-out model."""

    def __init__(self, manager: SwapManager, ports: StatePorts, *, ram_budget_bytes: int = 64 * 1024,
                 on_event: Callable[[StreamEvent, Stream, dict[str, object]], None] | None = None,
                 on_frame: Callable[[Stream, StateKey, np.ndarray], None] | None = None) -> None:
        """on_event: told of every pin, pin release, flush and eviction, when it happens.
        on_frame: told, for each row just before its invoke, of the tag of the state it consumes
        and the gates [S, 1, 1] it runs with (the selected versions are pinned then), so that an
        observer can check independently that the two name the same adapter set."""
        self._on_event = on_event
        self._on_frame = on_frame
        self._manager = manager
        data_inputs, outputs = manager.io_details()
        self._in_details, self._out_details = data_inputs, outputs
        seen_in, seen_out = set(), set()
        for i, o in ports.pairs:
            if not (0 <= i < len(data_inputs) and 0 <= o < len(outputs)) or i in seen_in or o in seen_out:
                raise StreamError(f"state port ({i}, {o}) is not a distinct (data input, output) pair of this model "
                                  f"({len(data_inputs)} data inputs, {len(outputs)} outputs)")
            seen_in.add(i)
            seen_out.add(o)
            if tuple(data_inputs[i]["shape"]) != tuple(outputs[o]["shape"]) or \
                    data_inputs[i]["dtype"] != outputs[o]["dtype"]:
                raise StreamError(f"state input {i} {tuple(data_inputs[i]['shape'])} and output {o} "
                                  f"{tuple(outputs[o]['shape'])} differ in shape or type")
        self._ports = ports
        self._frame_inputs = [i for i in range(len(data_inputs)) if i not in seen_in]
        self._result_outputs = [o for o in range(len(outputs)) if o not in seen_out]
        self._state_bytes = sum(int(np.prod(data_inputs[i]["shape"])) * np.dtype(data_inputs[i]["dtype"]).itemsize
                                for i, _ in ports.pairs)
        if self._state_bytes > ram_budget_bytes:
            raise StreamBudgetError(f"one stream's state is {self._state_bytes} bytes, over the RAM budget of "
                              f"{ram_budget_bytes} bytes")
        self._budget = ram_budget_bytes
        self._streams: dict[str, Stream] = {}

    # -- facts ---------------------------------------------------------------------------------
    @property
    def state_bytes(self) -> int:
        """RAM one state takes (one per stream; one per adapter set a `SEGMENT` stream keeps)."""
        return self._state_bytes

    @property
    def ram_bytes(self) -> int:
        return sum(len(s.segments) for s in self._streams.values()) * self._state_bytes

    def stream(self, stream_id: str) -> Stream:
        try:
            return self._streams[stream_id]
        except KeyError:
            raise StreamError(f"no open stream {stream_id!r}") from None

    # -- lifecycle -----------------------------------------------------------------------------
    def open(self, stream_id: str, adapters: AdapterSpec, policy: StreamPolicy | str = StreamPolicy.FLUSH, *,
             tenant: str | None = None, max_age_frames: int | None = None) -> Stream:
        if stream_id in self._streams:
            raise StreamError(f"stream {stream_id!r} is already open")
        try:
            policy = StreamPolicy(policy)
        except ValueError:
            raise StreamError(f"unknown stream policy {policy!r}; choose one of "
                              f"{[p.value for p in StreamPolicy]}") from None
        if max_age_frames is not None and (not isinstance(max_age_frames, int) or max_age_frames < 1):
            raise StreamError(f"max_age_frames must be a positive integer, got {max_age_frames!r}")
        if (len(self._streams) + 1) * self._state_bytes > self._budget:
            raise StreamBudgetError(f"opening stream {stream_id!r} needs {self._state_bytes} more bytes of state; "
                              f"{self.ram_bytes} of the {self._budget}-byte budget are in use")
        spec = self._manager.normalise_adapters(adapters)
        stream = Stream(stream_id, spec, policy, tenant, max_age_frames)
        self._streams[stream_id] = stream
        return stream

    def close(self, stream_id: str) -> StreamStats:
        stream = self.stream(stream_id)
        self._unpin(stream)
        del self._streams[stream_id]
        return stream.stats

    # -- frames --------------------------------------------------------------------------------
    def step(self, stream_id: str, *frame: np.ndarray) -> list[np.ndarray]:
        """Run one frame (the model's non-state data inputs, batch 1) through the stream; returns
        the model's non-state outputs."""
        return self.step_batch([stream_id], [frame])[0]

    def step_batch(self, stream_ids: list[str], frames: list[tuple[np.ndarray, ...]]) -> list[list[np.ndarray]]:
        """One frame for each of several streams in one invoke: row r carries stream r's state
        and gates (streams may use different adapter sets and policies). Returns each row's
        non-state outputs."""
        streams = [self.stream(i) for i in stream_ids]
        if len(set(stream_ids)) != len(stream_ids) or len(frames) != len(streams) or not streams:
            raise StreamError("step_batch takes one frame for each of one or more distinct open streams")
        if len({s.tenant for s in streams}) > 1:
            raise StreamError("the streams of one batch must share a tenant")
        rows = [self._check_frame(frame) for frame in frames]  # all checked before any state moves
        with contextlib.ExitStack() as stack:
            plans = [self._plan_row(stream, stack) for stream in streams]
            inputs: list[np.ndarray | None] = [None] * len(self._in_details)
            for k, (i, _) in enumerate(self._ports.pairs):
                inputs[i] = np.concatenate([segment.state[k] for segment, _, _ in plans])
            for k, i in enumerate(self._frame_inputs):
                inputs[i] = np.concatenate([row[k] for row in rows])
            if self._on_frame is not None:
                for stream, (segment, gates, _) in zip(streams, plans):
                    self._on_frame(stream, segment.key, gates)
            outputs = self._manager.run_gated(*inputs, gates=np.concatenate([g for _, g, _ in plans], axis=1))
        results = []
        for r, (stream, (segment, _, key)) in enumerate(zip(streams, plans)):
            segment.state = [self._feed_back(outputs[o][r:r + 1], self._out_details[o], self._in_details[i])
                             for i, o in self._ports.pairs]
            segment.frames += 1
            label = self._label(key)
            stream.stats.frames[label] = stream.stats.frames.get(label, 0) + 1
            results.append([outputs[o][r:r + 1].copy() for o in self._result_outputs])
        return results

    def _check_frame(self, frame: tuple[np.ndarray, ...]) -> list[np.ndarray]:
        if len(frame) != len(self._frame_inputs):
            raise StreamError(f"a frame is {len(self._frame_inputs)} input(s), got {len(frame)}")
        checked = []
        for i, value in zip(self._frame_inputs, frame):
            detail = self._in_details[i]
            value = np.asarray(value)
            if value.shape != tuple(detail["shape"]) or value.dtype != detail["dtype"]:
                raise StreamError(f"frame input {i} must be {tuple(detail['shape'])} {np.dtype(detail['dtype'])}, "
                                  f"got {value.shape} {value.dtype}")
            checked.append(value)
        return checked

    def _plan_row(self, stream: Stream, stack: contextlib.ExitStack) -> tuple[_Segment, np.ndarray, StateKey]:
        """The state this frame continues, the gates [S, 1, 1] it runs with and its adapter set;
        the versions stay pinned while `stack` is open (for the whole stream under PIN)."""
        if stream.policy is not StreamPolicy.PIN:
            gates, versions = stack.enter_context(self._manager.pinned_versions(stream.adapters, tenant=stream.tenant))
            key = self._key(stream, versions)
            return self._segment_for(stream, key), gates, key
        if stream.pin is not None and stream.max_age_frames is not None and \
                stream.pinned_frames >= stream.max_age_frames and self._key(stream, self._current(stream)) != \
                stream.pinned_key:
            self._unpin(stream)  # too old: move to the current versions with a fresh state
            self._flush(stream)
        if stream.pin is None:
            pin = contextlib.ExitStack()
            gates, versions = pin.enter_context(self._manager.pinned_versions(stream.adapters, tenant=stream.tenant))
            stream.pin, stream.pinned_gates = pin, gates
            stream.pinned_key = self._key(stream, versions)
            stream.pinned_frames = 0
            self._emit(StreamEvent.PIN, stream, versions=self._label(stream.pinned_key))
        assert stream.pinned_key is not None and stream.pinned_gates is not None
        segment = self._segment_for(stream, stream.pinned_key)
        if self._key(stream, self._current(stream)) != stream.pinned_key:
            stream.stats.pinned_frames += 1
        stream.pinned_frames += 1
        return segment, stream.pinned_gates, stream.pinned_key

    def _unpin(self, stream: Stream) -> None:
        if stream.pin is not None:
            stream.pin.close()
            assert stream.pinned_key is not None
            self._emit(StreamEvent.UNPIN, stream, versions=self._label(stream.pinned_key),
                       frames=stream.pinned_frames)
        stream.pin, stream.pinned_gates, stream.pinned_key = None, None, None

    def _segment_for(self, stream: Stream, key: StateKey) -> _Segment:
        segment = stream.segments.get(key)
        if segment is not None:
            stream.segments.move_to_end(key)
            return segment
        if stream.segments and stream.policy is not StreamPolicy.SEGMENT:
            self._flush(stream)  # the set changed: FLUSH (and an expired PIN) start over
        elif stream.policy is StreamPolicy.SEGMENT:
            while stream.segments and self.ram_bytes + self._state_bytes > self._budget:
                _, evicted = stream.segments.popitem(last=False)
                stream.stats.evictions += 1
                stream.stats.frames_lost += evicted.frames
                self._emit(StreamEvent.EVICT, stream, versions=self._label(evicted.key), frames_lost=evicted.frames)
        if self.ram_bytes + self._state_bytes > self._budget:
            raise StreamBudgetError(f"stream {stream.id!r}: no room for a state of {self._state_bytes} bytes in the "
                              f"{self._budget}-byte budget ({self.ram_bytes} in use)")
        segment = _Segment(key, self._initial_state())
        stream.segments[key] = segment
        return segment

    def _flush(self, stream: Stream) -> None:
        if stream.segments:
            lost = sum(s.frames for s in stream.segments.values())
            stream.stats.flushes += 1
            stream.stats.frames_lost += lost
            stream.segments.clear()
            self._emit(StreamEvent.FLUSH, stream, frames_lost=lost)

    def _emit(self, event: StreamEvent, stream: Stream, **details: object) -> None:
        if self._on_event is not None:
            self._on_event(event, stream, details)

    # -- helpers -------------------------------------------------------------------------------
    def _current(self, stream: Stream) -> dict[str, str]:
        return {name: self._manager.adapter_info(name).digest for name in stream.adapters}

    def _key(self, stream: Stream, versions: Mapping[str, str]) -> StateKey:
        return tuple(sorted((name, versions[name], weight) for name, weight in stream.adapters.items()))

    def _label(self, key: StateKey) -> str:
        if not key:
            return "__base__"
        return "+".join(self._manager.registry.get(digest).label for _, digest, _ in key)

    def _initial_state(self) -> list[np.ndarray]:
        """Real zero in every state input: its zero point (0 for float)."""
        state = []
        for i, _ in self._ports.pairs:
            d = self._in_details[i]
            zero_point = d["quantization"][1] if np.dtype(d["dtype"]).kind in "iu" else 0
            state.append(np.full(tuple(d["shape"]), zero_point, dtype=d["dtype"]))
        return state

    @staticmethod
    def _feed_back(value: np.ndarray, out: Mapping, inp: Mapping) -> np.ndarray:
        """The state output as the state input's quantization wants it (bytes unchanged when
        both are quantized alike; else rounded to nearest, ties away from zero, and clamped)."""
        if np.dtype(inp["dtype"]).kind not in "iu" or out["quantization"] == inp["quantization"]:
            return value.copy()
        (s_out, z_out), (s_in, z_in) = out["quantization"], inp["quantization"]
        real = (value.astype(np.float64) - z_out) * s_out / s_in
        q = np.sign(real) * np.floor(np.abs(real) + 0.5) + z_in
        info = np.iinfo(inp["dtype"])
        return np.clip(q, info.min, info.max).astype(inp["dtype"])


__all__ = ["StateKey", "StatePorts", "Stream", "StreamBudgetError", "StreamError", "StreamEvent", "StreamPolicy",
           "StreamSessions", "StreamStats"]
