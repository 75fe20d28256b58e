"""Streams across adapter swaps on converter-made streaming models with injected slots.

The models are `models/streaming/kws_state_io` and `rnn_state_io` (state as graph input and
output, the application feeds it back). Adapter "user" has two versions; a stream runs random
frames while the adapter is hot-swapped to v2 and, sometimes, rolled back to v1. Each policy's
promise is checked against the `tflite_micro` wheel running reference streams on the exact
image bytes and gates of each version:

- PIN: every output equals an unswapped run of the old version until the stream ends;
- FLUSH: after the swap, every output equals a fresh stream on the new version;
- SEGMENT: every output equals the run of its own adapter set (a rollback resumes v1's state).
"""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyswap.commands.demo_stream import lora_refs, seeded_lora
from tinyswap.export.build import bundle_from_compiled
from tinyswap.export.inject import inject_slots
from tinyswap.export.pack import pack
from tinyswap.export.slot_plan import SlotPlan, SlotTarget
from tinyswap.package import Keyring
from tinyswap.swap import SwapManager
from tinyswap.swap.streams import StatePorts, StreamError, StreamPolicy, StreamSessions

from tests.conftest import FULL, REPO

STREAMING = REPO / "models" / "streaming"
MODELS = ("kws_state_io", "rnn_state_io")
PORTS = StatePorts(((0, 0),))  # the converter put the state first among inputs and outputs


class _Case:
    """A model with LoRA slots on every weighted operator and two signed versions of "user"."""

    def __init__(self, name: str) -> None:
        source = (STREAMING / f"{name}.tflite").read_bytes()
        refs = lora_refs(source)
        plan = SlotPlan(tuple(SlotTarget(r, "lora", 2, 0.5) for r in refs), num_slots=2, headroom=True)
        self.built = bundle_from_compiled(inject_slots(source, plan, name=name))
        self.key = Ed25519PrivateKey.generate()
        self.packages = [pack(seeded_lora(source, refs, "user", version, scale=0.3), self.built.slotmap, self.key)[0]
                         for version in (1, 2)]

    def manager(self) -> SwapManager:
        manager = SwapManager(bytearray(self.built.data), self.built.slotmap, Keyring([self.key.public_key()]))
        manager.load_adapter(self.packages[0])
        return manager


_CASES: dict[str, _Case] = {}


def case(name: str) -> _Case:
    if name not in _CASES:
        _CASES[name] = _Case(name)
    return _CASES[name]


def tflm_stream(image: bytes, gates: np.ndarray, frames: list[np.ndarray], sessions: StreamSessions) -> list[np.ndarray]:
    """The golden: the wheel runs a stream from a zero state on `image` with `gates`, feeding the
    state back exactly as the sessions do."""
    from tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(image, arena_size=64 * 1024)
    (state_in, frame_in), (state_out, result_out) = sessions._in_details, sessions._out_details
    state = sessions._initial_state()[0]
    results = []
    for frame in frames:
        interp.set_input(state, 0)
        interp.set_input(frame, 1)
        for s, g in enumerate(gates):
            interp.set_input(g[:1], 2 + s)
        interp.invoke()
        state = StreamSessions._feed_back(interp.get_output(0), state_out, state_in)
        results.append(interp.get_output(1).copy())
    return results


def run_scenario(name: str, policy: StreamPolicy, seed: int, frames: int, swap_at: int,
                 rollback_at: int | None) -> None:
    c = case(name)
    manager = c.manager()
    sessions = StreamSessions(manager, PORTS)
    frame_shape = tuple(sessions._in_details[1]["shape"])
    rng = np.random.default_rng(seed)
    xs = [rng.integers(-128, 128, frame_shape, dtype=np.int8) for _ in range(frames)]
    image_v1, gates_v1 = bytes(manager.image.buffer), manager.gates_for("user")
    sessions.open("s", "user", policy)
    got, version_at = [], []
    image_v2 = gates_v2 = None
    for t, x in enumerate(xs):
        if t == swap_at:
            manager.hotswap_adapter("user", c.packages[1])
            image_v2, gates_v2 = bytes(manager.image.buffer), manager.gates_for("user")
        if rollback_at is not None and t == rollback_at:
            manager.rollback("user")
        version_at.append(manager.adapter_info("user").version)
        got.append(sessions.step("s", x)[0])
    stats = sessions.close("s")

    def golden(image, gates, ts):
        return dict(zip(ts, tflm_stream(image, gates, [xs[t] for t in ts], sessions)))

    if policy is StreamPolicy.PIN:
        expected = golden(image_v1, gates_v1, list(range(frames)))
        assert stats.flushes == 0 and set(stats.frames) == {"user@1.0.0"}
    else:
        v1 = [t for t in range(frames) if version_at[t] == "1.0.0"]
        v2 = [t for t in range(frames) if version_at[t] == "2.0.0"]
        if policy is StreamPolicy.SEGMENT:
            expected = {**golden(image_v1, gates_v1, v1), **(golden(image_v2, gates_v2, v2) if v2 else {})}
            assert stats.flushes == 0
        else:  # FLUSH: every change of version starts a fresh stream
            expected, run = {}, [0]
            for t in range(1, frames + 1):
                if t == frames or version_at[t] != version_at[run[0]]:
                    image, gates = (image_v1, gates_v1) if version_at[run[0]] == "1.0.0" else (image_v2, gates_v2)
                    expected.update(golden(image, gates, run))
                    run = [t]
                else:
                    run.append(t)
            changes = sum(version_at[t] != version_at[t - 1] for t in range(1, frames))
            assert stats.flushes == changes
        assert sum(stats.frames.values()) == frames
    for t in range(frames):
        np.testing.assert_array_equal(got[t], expected[t], err_msg=f"{name} {policy.value}: frame {t} "
                                                                   f"(swap at {swap_at}, rollback at {rollback_at})")


@settings(max_examples=200 if FULL else 6)
@given(name=st.sampled_from(MODELS), policy=st.sampled_from(list(StreamPolicy)), seed=st.integers(0, 2**32 - 1),
       frames=st.integers(2, 14), data=st.data())
def test_streams_never_mix_state_across_a_swap(name: str, policy: StreamPolicy, seed: int, frames: int, data) -> None:
    swap_at = data.draw(st.integers(1, frames - 1), label="swap_at")
    rollback_at = data.draw(st.one_of(st.none(), st.integers(swap_at + 1, frames)), label="rollback_at")
    run_scenario(name, policy, seed, frames, swap_at, None if rollback_at == frames else rollback_at)


@pytest.mark.parametrize("policy", list(StreamPolicy))
def test_each_policy_on_the_keyword_spotter(policy: StreamPolicy) -> None:
    run_scenario("kws_state_io", policy, seed=7, frames=10, swap_at=4, rollback_at=7)


def test_a_pin_older_than_its_maximum_age_moves_to_the_new_version() -> None:
    c = case("kws_state_io")
    manager = c.manager()
    sessions = StreamSessions(manager, PORTS)
    x = np.zeros(tuple(sessions._in_details[1]["shape"]), np.int8)
    sessions.open("s", "user", StreamPolicy.PIN, max_age_frames=3)
    sessions.step("s", x)
    manager.hotswap_adapter("user", c.packages[1])
    for _ in range(5):
        sessions.step("s", x)
    stats = sessions.close("s")
    assert stats.frames == {"user@1.0.0": 3, "user@2.0.0": 3}
    assert stats.flushes == 1 and stats.frames_lost == 3 and stats.pinned_frames == 2


def test_segment_states_are_evicted_least_recently_used_within_the_budget() -> None:
    c = case("rnn_state_io")
    manager = c.manager()
    probe = StreamSessions(manager, PORTS)
    sessions = StreamSessions(manager, PORTS, ram_budget_bytes=probe.state_bytes)  # room for one state
    x = np.zeros(tuple(sessions._in_details[1]["shape"]), np.int8)
    sessions.open("s", "user", StreamPolicy.SEGMENT)
    sessions.step("s", x)
    sessions.step("s", x)
    manager.hotswap_adapter("user", c.packages[1])
    sessions.step("s", x)
    stats = sessions.stream("s").stats
    assert stats.evictions == 1 and stats.frames_lost == 2 and sessions.ram_bytes == probe.state_bytes


def test_misuse_is_refused_with_a_stream_error() -> None:
    manager = case("kws_state_io").manager()
    with pytest.raises(StreamError, match="not a distinct"):
        StreamSessions(manager, StatePorts(((0, 0), (0, 1))))
    with pytest.raises(StreamError, match="differ in shape"):
        StreamSessions(manager, StatePorts(((1, 0),)))
    sessions = StreamSessions(manager, PORTS)
    with pytest.raises(StreamError, match="over the RAM budget"):
        StreamSessions(manager, PORTS, ram_budget_bytes=sessions.state_bytes - 1)
    sessions.open("s", "user")
    with pytest.raises(StreamError, match="already open"):
        sessions.open("s", "user")
    with pytest.raises(StreamError, match="unknown stream policy"):
        sessions.open("t", "user", "sometimes")
    with pytest.raises(StreamError, match="must be"):
        sessions.step("s", np.zeros((1, 3), np.int8))
    with pytest.raises(StreamError, match="no open stream"):
        sessions.step("nope", np.zeros((1, 8), np.int8))


@pytest.mark.parametrize("name", MODELS)
def test_a_mixed_batch_carries_one_state_and_adapter_set_per_row(name: str) -> None:
    """Three streams (v1 then v2 under FLUSH, the base under SEGMENT, v1 pinned) stepped together
    in one invoke per frame give what each gives stepped alone."""
    c = case(name)
    plan = [("a", "user", StreamPolicy.FLUSH), ("b", "__base__", StreamPolicy.SEGMENT), ("c", "user", StreamPolicy.PIN)]
    batched_manager, single_manager = c.manager(), c.manager()
    batched, single = StreamSessions(batched_manager, PORTS), StreamSessions(single_manager, PORTS)
    for sessions in (batched, single):
        for stream_id, adapters, policy in plan:
            sessions.open(stream_id, adapters, policy)
    rng = np.random.default_rng(11)
    shape = tuple(batched._in_details[1]["shape"])
    for t in range(8):
        if t == 3:
            for manager in (batched_manager, single_manager):
                manager.hotswap_adapter("user", c.packages[1])
        frames = [(rng.integers(-128, 128, shape, dtype=np.int8),) for _ in plan]
        rows = batched.step_batch([p[0] for p in plan], frames)
        for (stream_id, _, _), frame, row in zip(plan, frames, rows):
            np.testing.assert_array_equal(row[0], single.step(stream_id, *frame)[0], err_msg=f"{stream_id} at {t}")
    assert batched.stream("a").stats.frames == {"user@1.0.0": 3, "user@2.0.0": 5}
    assert batched.stream("c").stats.frames == {"user@1.0.0": 8} and batched.stream("c").stats.pinned_frames == 5
    assert batched.stream("b").stats.frames == {"__base__": 8}
    with pytest.raises(StreamError, match="distinct"):
        batched.step_batch(["a", "a"], frames[:2])
