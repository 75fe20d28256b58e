"""The arena planner never lets two simultaneously live buffers overlap."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tinyswap.planner import ARENA_ALIGNMENT, BufferRequest, plan_memory


@st.composite
def requests(draw) -> list[BufferRequest]:
    n = draw(st.integers(1, 30))
    out = []
    for t in range(n):
        first = draw(st.integers(-1, 20))
        last = draw(st.integers(first, 21))
        out.append(BufferRequest(t, draw(st.integers(1, 5000)), first, last))
    return out


@given(requests())
def test_live_buffers_never_overlap(reqs: list[BufferRequest]) -> None:
    plan = plan_memory(reqs)
    for a in reqs:
        oa = plan.offsets[a.tensor]
        assert oa % ARENA_ALIGNMENT == 0
        assert oa + a.size <= plan.arena_bytes
        for b in reqs:
            if a.tensor >= b.tensor:
                continue
            live_together = not (a.last_use < b.first_use or b.last_use < a.first_use)
            ob = plan.offsets[b.tensor]
            if live_together:
                assert oa + a.size <= ob or ob + b.size <= oa, (a, b, oa, ob)


@given(requests())
def test_arena_is_at_least_the_largest_live_set_and_at_most_the_sum(reqs: list[BufferRequest]) -> None:
    plan = plan_memory(reqs)
    steps = range(min(r.first_use for r in reqs), max(r.last_use for r in reqs) + 1)
    peak = max(sum(r.size for r in reqs if r.first_use <= s <= r.last_use) for s in steps)
    total = sum(-(-r.size // ARENA_ALIGNMENT) * ARENA_ALIGNMENT for r in reqs)
    assert peak <= plan.arena_bytes <= total


def test_sequential_chain_reuses_memory() -> None:
    # a -> b -> c -> d, each 100 bytes: at most two are alive at once, so two slots suffice.
    reqs = [BufferRequest(i, 100, i - 1, i) for i in range(4)]
    assert plan_memory(reqs).arena_bytes == 224  # 100 rounded to 112, twice


def test_arena_equals_tflite_micros_recorded_plan_on_the_example_models() -> None:
    """TFLM's RecordingMicroAllocator reports the planned (non-persistent) arena as "head"."""
    from tinyswap import Interpreter
    from tinyswap.oracles import tflm_arena

    from tests.conftest import TFLM_MODELS

    for name in ("hello_world_int8", "micro_speech_quantized", "person_detect"):
        raw = (TFLM_MODELS / f"{name}.tflite").read_bytes()
        interp = Interpreter(model_content=raw)
        interp.allocate_tensors()
        recorded = tflm_arena(raw)
        assert recorded["total"] == recorded["head"] + recorded["tail"]
        assert interp.arena_bytes == recorded["head"], name
