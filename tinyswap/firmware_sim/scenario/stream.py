"""The `stream` step kind: frames from a dataset through a stateful (streaming) model on the
device, one invoke per frame, the stream's state kept in the device's RAM across steps
(`tinyswap.firmware_sim.device_streams`), while other steps update, swap and roll back its
adapters; and the report's `streams` section.

A dataset row is a sequence of frames (a `[n, 8, 8]` dataset on a model whose frame input is
`[1, 8]` gives 8 frames per row); with labels, the prediction after a row's last frame is
scored against its label, per adapter version that frame ran under.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from tinyswap.firmware_sim.device_streams import DeviceStreams, StreamRecord
from tinyswap.firmware_sim.errors import DeviceStateError
from tinyswap.firmware_sim.scenario.errors import ScenarioFormatError
from tinyswap.firmware_sim.scenario.fields import BASE, MAX_ROWS, ValueType, Where, param
from tinyswap.firmware_sim.scenario.files import Dataset, Inputs, prepare
from tinyswap.firmware_sim.scenario.registry import Step, StepContext, StepParams, step_kind
from tinyswap.slotmap import SlotMap
from tinyswap.swap.streams import StatePorts, StreamPolicy

if TYPE_CHECKING:
    from tinyswap.firmware_sim.scenario.report import StepRecord
    from tinyswap.firmware_sim.scenario.runner import Run
    from tinyswap.firmware_sim.scenario.validate import DeviceOptions

KIND = "stream"


@step_kind(KIND, target=("stream",), example={
    "kind": "stream", "stream": "mic", "dataset": "words", "rows": 20, "adapters": "kws-user", "policy": "pin",
    "note": "the microphone streams 20 words; the next steps update kws-user while the stream stays open"})
@dataclass(frozen=True, kw_only=True)
class StreamStep(StepParams):
    """Stream `rows` dataset rows through the stream `stream`, one frame per invoke, each row a
    sequence of frames of the model's frame input. The first step naming a stream opens it with
    `adapters` and `policy` (what a swap of its adapters does: "pin" keeps the old version until
    the stream closes or `max_age_frames`, "flush" resets the state, "segment" keeps one state
    per adapter set); later steps continue it, with its state, until one gives `close`. State
    lives in the device's RAM (`device.stream_ram_bytes`, `device.stream_state`): a power cut
    loses it and the stream starts again from a zero state."""

    stream: str = param(ValueType.NAME, doc="the stream's id (unique in the scenario)")
    dataset: str = param(ValueType.DATASET, doc="where the frames come from: each row is a sequence of frames")
    rows: int = param(ValueType.INT, minimum=1, maximum=MAX_ROWS, doc="how many rows to stream")
    start: int | None = param(ValueType.INT, minimum=0, default=None,
                              doc="the first row (default: where the previous step on that dataset stopped; wraps "
                                  "around)")
    adapters: Any = param(ValueType.ADAPTERS, default=None,
                          doc=f'opening step only (required there): the stream\'s adapter spec; "{BASE}" is none')
    policy: StreamPolicy | None = param(ValueType.CHOICE, choices=StreamPolicy, default=None,
                                        doc="opening step only (required there): what a swap of its adapters does")
    max_age_frames: int | None = param(ValueType.INT, minimum=1, default=None,
                                       doc="opening step of a \"pin\" stream only: frames after which a pin to an "
                                           "old version is released (the state is flushed)")
    close: bool = param(ValueType.BOOL, default=False, doc="end the stream after this step (releases its pin)")

    def check(self, where: Where, context: StepContext) -> None:
        state = _state_before(self.stream, context.steps[:context.index])
        if state == "closed":
            raise where.fail("stream", f"stream {self.stream!r} was closed by an earlier step; a new stream needs a "
                                       "new id")
        if state == "open":
            for name in ("adapters", "policy", "max_age_frames"):
                if getattr(self, name) is not None:
                    raise where.fail(name, f"stream {self.stream!r} is already open: give {name} only on the step "
                                           "that opens it")
            return
        for name in ("adapters", "policy"):
            if getattr(self, name) is None:
                raise where.fail(name, f"is missing (this step opens stream {self.stream!r})")
        if self.max_age_frames is not None and self.policy is not StreamPolicy.PIN:
            raise where.fail("max_age_frames", "only for a \"pin\" stream")

    def run(self, run: Run, step: Step) -> dict[str, Any]:
        d = run.device
        if not d.booted:
            raise DeviceStateError("stream: the device is not booted (a power cut needs a reboot step)")
        streams = device_streams(run)
        if self.policy is not None:
            streams.open(self.stream, self.adapters, self.policy, max_age_frames=self.max_age_frames)
        ds = run.stream_frames[self.dataset]
        if self.start is not None:
            ds.cursor = self.start
        record = streams.record(self.stream)
        before = streams.total(record)
        correct: dict[str, list[int]] = {}
        for _ in range(self.rows):
            row = ds.cursor % len(ds.x)
            ds.cursor += 1
            results = streams.run(self.stream, [(frame[None],) for frame in ds.x[row]])
            if ds.y is not None:
                cell = correct.setdefault(results[-1].version, [0, 0])
                cell[0] += 1
                cell[1] += int(np.argmax(results[-1].outputs[0]) == ds.y[row])
        after = streams.total(record)
        for version, (rows, right) in correct.items():
            total = record_accuracy(run, self.stream).setdefault(version, [0, 0])
            total[0] += rows
            total[1] += right
        if self.close:
            streams.close(self.stream)
        return {"stream": self.stream, "policy": record.policy.value, "rows": self.rows,
                "frames": {k: v - before.frames.get(k, 0) for k, v in after.frames.items()
                           if v != before.frames.get(k, 0)},
                "flushes": after.flushes - before.flushes, "frames_lost": after.frames_lost - before.frames_lost,
                "pinned_frames": after.pinned_frames - before.pinned_frames,
                "evictions": after.evictions - before.evictions,
                "accuracy": {v: right / rows for v, (rows, right) in correct.items()},
                "state_ram_bytes": streams.ram_bytes, "closed": self.close}

    def describe(self, record: StepRecord) -> str:
        r = record.result
        if "frames" not in r:
            return ""
        acc = r["accuracy"]
        parts = [", ".join(f"{v} {n} frames" + (f" ({100 * acc[v]:.0f}% words right)" if v in acc else "")
                           for v, n in r["frames"].items())]
        if r["flushes"] or r["evictions"]:
            parts.append(f"{r['flushes']} flush(es), {r['evictions']} eviction(s): {r['frames_lost']} frames of "
                         "context lost")
        if r["pinned_frames"]:
            parts.append(f"{r['pinned_frames']} frames pinned to an old version")
        return f"{r['stream']} ({r['policy']}): " + "; ".join(parts) + ("; closed" if r["closed"] else "")


def _state_before(stream: str, steps: Sequence[Any]) -> str | None:
    """"open", "closed" or None (not named yet) for `stream` after the raw `steps`."""
    state = None
    for raw in steps:
        if isinstance(raw, dict) and raw.get("kind") == KIND and raw.get("stream") == stream:
            state = "closed" if raw.get("close") is True else "open"
    return state


def device_streams(run: Run) -> DeviceStreams:
    """The device's streams, set up at the first stream step (the budget checked against the
    RAM the profile has left)."""
    if run.streams is None:
        options = run.device_options
        run.streams = DeviceStreams(run.device, StatePorts((options.stream_state,)),
                                    ram_budget_bytes=options.stream_ram_bytes)
    return run.streams


def record_accuracy(run: Run, stream: str) -> dict[str, list[int]]:
    return run.stream_accuracy.setdefault(stream, {})


# ---------------------------------------------------------------- before the device is built

def stream_datasets(steps: Sequence[Step]) -> tuple[set[str], set[str]]:
    """(labels `stream` steps read, labels other steps read)."""
    streamed, other = set(), set()
    for s in steps:
        labels = {getattr(s.params, "dataset", None)} | {r.dataset for r in getattr(s.params, "requests", None) or ()}
        (streamed if s.kind == KIND else other).update(label for label in labels if label is not None)
    return streamed, other


def prepare_frames(steps: Sequence[Step], datasets: Mapping[str, Dataset], model: bytes, slotmap: SlotMap,
                   options: DeviceOptions) -> dict[str, Inputs]:
    """The datasets of `stream` steps as int8 frames of the model's frame input, [rows, frames
    per row, *frame shape]; the state ports checked against the model. Refused with a
    `ScenarioFormatError` before anything runs."""
    streamed, _ = stream_datasets(steps)
    if not streamed:
        return {}
    from tinyswap.interpreter import Interpreter

    interp = Interpreter(model_content=model)
    gates = {g.input_index for g in slotmap.gates}
    inputs = [d for i, d in enumerate(interp.get_input_details()) if i not in gates]
    outputs = interp.get_output_details()
    state_in, state_out = options.stream_state
    if state_in >= len(inputs) or state_out >= len(outputs):
        raise ScenarioFormatError(f"scenario: device.stream_state [{state_in}, {state_out}]: the model has "
                                  f"{len(inputs)} data inputs and {len(outputs)} outputs", field="device.stream_state")
    frame_inputs = [d for i, d in enumerate(inputs) if i != state_in]
    if len(frame_inputs) != 1:
        raise ScenarioFormatError(f"scenario: stream steps feed one frame input; this model has {len(frame_inputs)} "
                                  "data inputs besides the state", field="device.stream_state")
    frame = frame_inputs[0]
    if int(frame["shape"][0]) != 1:
        raise ScenarioFormatError(f"scenario: the frame input {list(frame['shape'])} is not batch 1",
                                  field="device.stream_state")
    size = int(np.prod(frame["shape"][1:]))
    out = {}
    for label in sorted(streamed):
        ds = datasets[label]
        per_row = int(np.prod(np.shape(ds.x)[1:])) if np.ndim(ds.x) > 1 else 1
        if per_row % size:
            raise ScenarioFormatError(f"dataset {label!r}: rows of {per_row} values are not whole frames of the "
                                      f"model's frame input {list(frame['shape'])}", field=f"datasets[{label!r}]")
        as_frames = {**frame, "shape": [1, per_row // size, *frame["shape"][1:]]}
        out[label] = prepare(ds, label, as_frames)
    return out


# ---------------------------------------------------------------- the report

def streams_report(run: Run) -> dict[str, Any] | None:
    """report.json's `streams` (None when no stream step ran)."""
    streams = run.streams
    if streams is None:
        return None
    per_stream = [_stream_json(streams, r, run.stream_accuracy.get(r.stream_id, {})) for r in streams.records.values()]
    return {
        "state_ports": list(streams.ports.pairs[0]), "state_bytes": streams.state_bytes,
        "ram_budget_bytes": streams.budget, "peak_ram_bytes": streams.peak_ram_bytes,
        # The assertion, computed: every frame of every stream was checked before its invoke,
        # and none consumed a state tagged with another adapter set than the slots it ran.
        "no_frame_consumed_state_of_another_adapter_set": streams.no_mixed_state(),
        "per_stream": per_stream,
    }


def _stream_json(streams: DeviceStreams, r: StreamRecord, accuracy: Mapping[str, list[int]]) -> dict[str, Any]:
    total = streams.total(r)
    return {
        "stream": r.stream_id, "policy": r.policy.value, "adapters": r.adapters, "max_age_frames": r.max_age_frames,
        "frames_by_version": total.frames, "frames": sum(total.frames.values()),
        "flushes": total.flushes, "frames_lost": total.frames_lost, "pinned_frames": total.pinned_frames,
        "pinned_seconds": streams.pinned_seconds(r), "evictions": total.evictions,
        "resets": r.resets, "frames_lost_at_reset": r.frames_lost_at_reset, "peak_states": r.peak_states,
        "checked_frames": r.checked_frames, "mixed_frames": r.mixed_frames,
        "accuracy": [{"version": v, "rows": n, "correct": k, "accuracy": k / n} for v, (n, k) in accuracy.items()],
        "closed": r.closed,
    }


__all__ = ["StreamStep", "device_streams", "prepare_frames", "stream_datasets", "streams_report"]
