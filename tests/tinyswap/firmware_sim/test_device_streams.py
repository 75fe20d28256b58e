"""Streams on the simulated device (`tinyswap.firmware_sim.device_streams`).

The model is the keyword spotter the demo streams (`models/streaming/kws_state_io` with two
LoRA slots on 4 KB sectors, two versions of "kws-user"). The references are independent of
the device: the host `StreamSessions` on a plain `SwapManager` (itself checked against the
`tflite_micro` wheel in tests/tinyswap/swap/test_streams.py), and the wheel directly for the
pinned stream, run on the exact image bytes and gates of each version.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyswap.commands.demo_stream import ADAPTER, StreamingBundle, build_kws
from tinyswap.firmware_sim.device import Device
from tinyswap.firmware_sim.device_streams import DeviceStreams, free_ram_bytes
from tinyswap.firmware_sim.errors import DeviceStateError, RamBudgetError, StreamRamError
from tinyswap.package import Keyring
from tinyswap.swap import SwapManager
from tinyswap.swap.streams import StatePorts, StreamPolicy, StreamSessions

from tests.tinyswap.swap.test_streams import tflm_stream

PORTS = StatePorts(((0, 0),))
V1, V2 = f"{ADAPTER}-v1", f"{ADAPTER}-v2"


@pytest.fixture(scope="module")
def kws(tmp_path_factory) -> StreamingBundle:
    return build_kws(tmp_path_factory.mktemp("kws"))


def keyring(kws: StreamingBundle) -> Keyring:
    assert kws.built.keys is not None
    return Keyring([kws.built.keys.private_key().public_key()])


def booted(kws: StreamingBundle) -> Device:
    d = Device("mcu-qspi", kws.built.data, kws.built.slotmap, keyring(kws))
    d.provision()
    d.boot()
    d.update(kws.packages[V1], permanent=True)
    return d


def frames(n: int, seed: int = 0) -> list[tuple[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.integers(-128, 128, (1, 8), dtype=np.int8),) for _ in range(n)]


def host_reference(kws: StreamingBundle, policy: StreamPolicy, xs, swap_at: int, rollback_at: int,
                   max_age: int | None = None) -> list[np.ndarray]:
    """The same stream on the host: a plain swap manager, the same swap and rollback times."""
    manager = SwapManager(bytearray(kws.built.data), kws.built.slotmap, keyring(kws))
    manager.load_adapter(kws.packages[V1])
    sessions = StreamSessions(manager, PORTS)
    sessions.open("mic", ADAPTER, policy, max_age_frames=max_age)
    out = []
    for t, x in enumerate(xs):
        if t == swap_at:
            manager.hotswap_adapter(ADAPTER, kws.packages[V2])
        if t == rollback_at:
            manager.rollback(ADAPTER)
        out.append(sessions.step("mic", *x)[0])
    return out


@pytest.mark.parametrize("policy", list(StreamPolicy))
def test_device_streams_equal_the_host_reference_across_an_update_and_a_rollback(kws, policy) -> None:
    d = booted(kws)
    streams = DeviceStreams(d, PORTS)
    xs = frames(14, seed=3)
    streams.open("mic", ADAPTER, policy, max_age_frames=6 if policy is StreamPolicy.PIN else None)
    got = [r.outputs[0] for r in streams.run("mic", xs[:5])]
    d.update(kws.packages[V2], permanent=True)  # a hot swap mid-stream: slot write, read-back, commit
    got += [r.outputs[0] for r in streams.run("mic", xs[5:10])]
    d.rollback(ADAPTER, permanent=True)
    got += [r.outputs[0] for r in streams.run("mic", xs[10:])]
    expected = host_reference(kws, policy, xs, 5, 10, 6 if policy is StreamPolicy.PIN else None)
    for t, (a, b) in enumerate(zip(got, expected)):
        np.testing.assert_array_equal(a, b, err_msg=f"{policy.value}: frame {t}")
    record = streams.records["mic"]
    total = streams.total(record)
    assert sum(total.frames.values()) == 14 and record.checked_frames == 14 and record.mixed_frames == 0
    assert streams.no_mixed_state()
    if policy is StreamPolicy.FLUSH:  # two set changes: the update and the rollback
        assert total.flushes == 2 and total.frames == {f"{ADAPTER}@1.0.0": 9, f"{ADAPTER}@2.0.0": 5}
    if policy is StreamPolicy.SEGMENT:  # the rollback resumes v1's own state: nothing flushed
        assert total.flushes == 0 and total.frames_lost == 0


def test_a_pinned_stream_on_the_device_equals_the_wheel_on_the_old_version(kws) -> None:
    d = booted(kws)
    streams = DeviceStreams(d, PORTS)
    image_v1 = d.model_bytes_now()
    gates_v1 = d.manager.gates_for(ADAPTER)
    xs = frames(10, seed=5)
    streams.open("mic", ADAPTER, StreamPolicy.PIN)
    got = [r for r in streams.run("mic", xs[:4])]
    d.update(kws.packages[V2], permanent=True)
    assert d.model_bytes_now() != image_v1  # v2 was written into the other slot
    got += streams.run("mic", xs[4:])
    reference = StreamSessions(SwapManager(bytearray(kws.built.data), kws.built.slotmap, keyring(kws)), PORTS)
    golden = tflm_stream(image_v1, gates_v1, [x for (x,) in xs], reference)
    for t, (mine, theirs) in enumerate(zip(got, golden)):
        np.testing.assert_array_equal(mine.outputs[0], theirs, err_msg=f"frame {t}")
        assert mine.version == f"{ADAPTER}@1.0.0"
    record = streams.records["mic"]
    assert streams.total(record).pinned_frames == 6 and streams.pinned_seconds(record) > 0


def test_stream_state_is_counted_against_the_devices_free_ram(kws) -> None:
    d = booted(kws)
    free = free_ram_bytes(d)
    p = d.profile
    assert free == p.ram_bytes - (d.arena_bytes + d.cache_budget)  # XIP: no model copy
    with pytest.raises(StreamRamError, match=f"does not fit the {free} bytes"):
        DeviceStreams(d, PORTS, ram_budget_bytes=free + 1)
    assert issubclass(StreamRamError, RamBudgetError)
    streams = DeviceStreams(d, PORTS, ram_budget_bytes=64)  # one 8x8 int8 ring buffer
    streams.open("a", ADAPTER, StreamPolicy.FLUSH)
    streams.run("a", frames(1))
    assert streams.state_bytes == 64 and streams.ram_bytes == 64
    with pytest.raises(StreamRamError, match="needs 64 more bytes"):
        streams.open("b", ADAPTER, StreamPolicy.FLUSH)
    assert "b" not in streams.records and streams.ram_bytes == 64  # refused, nothing changed


def test_the_trace_shows_pins_releases_flushes_and_evictions(kws, tmp_path) -> None:
    d = booted(kws)
    streams = DeviceStreams(d, PORTS, ram_budget_bytes=2 * 64)
    streams.open("pinned", ADAPTER, StreamPolicy.PIN, max_age_frames=2)
    streams.open("seg", ADAPTER, StreamPolicy.SEGMENT)
    for stream_id in ("pinned", "seg"):
        streams.run(stream_id, frames(2))
    d.update(kws.packages[V2], permanent=True)
    streams.run("pinned", frames(3))  # its pin is 2 frames old: released, flushed, pinned again on v2
    streams.run("seg", frames(1))  # a second state for v2 does not fit beside "pinned": v1's is evicted
    streams.close("pinned")
    trace = json.loads(d.write_trace(tmp_path / "trace.json").read_text())
    events = [(e["name"], e["args"].get("stream")) for e in trace["traceEvents"] if e.get("cat") == "stream"]
    assert ("stream pin", "pinned") in events and ("stream unpin", "pinned") in events
    assert ("stream flush", "pinned") in events and ("stream evict", "seg") in events
    assert events.count(("stream pin", "pinned")) == 2  # v1, then v2 after the release
    spans = [e for e in trace["traceEvents"] if e["name"] == "stream" and e["ph"] == "X"]
    assert len(spans) == 4 and all(e["dur"] > 0 for e in spans)  # one per run, time charged per frame
    seg = streams.total(streams.records["seg"])
    assert seg.evictions == 1 and seg.frames_lost == 2


def test_a_power_cut_loses_the_state_and_the_stream_starts_again_from_zero(kws) -> None:
    d = booted(kws)
    streams = DeviceStreams(d, PORTS)
    streams.open("mic", ADAPTER, StreamPolicy.FLUSH)
    xs = frames(6, seed=9)
    streams.run("mic", xs[:4])
    d.power_cut()
    with pytest.raises(DeviceStateError, match="power is off"):
        streams.run("mic", xs[4:])
    d.power_on()
    d.boot()
    after = streams.run("mic", xs[4:])
    record = streams.records["mic"]
    assert record.resets == 1 and record.frames_lost_at_reset == 4
    manager = SwapManager(bytearray(kws.built.data), kws.built.slotmap, keyring(kws))
    manager.load_adapter(kws.packages[V1])
    fresh = StreamSessions(manager, PORTS)
    fresh.open("mic", ADAPTER)
    for r, x in zip(after, xs[4:]):  # equal to a stream that never saw the first four frames
        np.testing.assert_array_equal(r.outputs[0], fresh.step("mic", *x)[0])
    assert sum(streams.total(record).frames.values()) == 6 and streams.no_mixed_state()


def test_the_check_sees_a_stream_that_reuses_state_across_adapter_sets(kws, monkeypatch) -> None:
    """Mutate the policy code: a stream continues the state of the set it ran before (no flush,
    no segment). The device's check compares each state's tag with the slots the invoke really
    gates on, so it must count those frames as mixed."""
    def reuse_any_state(self, stream, key):
        if stream.segments:
            return next(iter(stream.segments.values()))
        return real(self, stream, key)

    real = StreamSessions._segment_for
    monkeypatch.setattr(StreamSessions, "_segment_for", reuse_any_state)
    d = booted(kws)
    streams = DeviceStreams(d, PORTS)
    streams.open("mic", ADAPTER, StreamPolicy.FLUSH)
    streams.run("mic", frames(3))
    assert streams.no_mixed_state()
    d.update(kws.packages[V2], permanent=True)
    streams.run("mic", frames(4))
    record = streams.records["mic"]
    assert record.checked_frames == 7 and record.mixed_frames == 4
    assert not streams.no_mixed_state()


def test_stream_ids_are_unique_and_unknown_streams_are_refused(kws) -> None:
    d = booted(kws)
    streams = DeviceStreams(d, PORTS)
    streams.open("mic", ADAPTER, StreamPolicy.FLUSH)
    streams.close("mic")
    with pytest.raises(DeviceStateError, match="opened before"):
        streams.open("mic", ADAPTER, StreamPolicy.FLUSH)
    with pytest.raises(DeviceStateError, match="no open stream"):
        streams.run("mic", frames(1))
    with pytest.raises(StreamRamError, match="positive"):
        DeviceStreams(d, PORTS, ram_budget_bytes=0)
