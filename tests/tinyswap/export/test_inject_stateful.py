"""Slots injected into converter-made stateful models (resource variables, a CALL_ONCE
initialiser subgraph): the other subgraphs are kept, gates off equal the original file invoke by
invoke, and random slot bytes equal the tflite_micro wheel invoke by invoke, with both the
always-run and the conditional (IF) branches."""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap import Interpreter
from tinyswap.export.bundle import slot_map
from tinyswap.export.errors import InjectError
from tinyswap.export.inject import inject_slots
from tinyswap.export.slot_plan import SlotBranches, SlotPlan, SlotTarget
from tinyswap.oracles import tflm_interpreter
from tinyswap.reader import read_model
from tinyswap.slotmap import SlotMap

from tests.conftest import REPO
from tests.tinyswap.export.test_compiler import patch_random_slots

STREAMING = REPO / "models" / "streaming"
TARGETS = {"kws_stream": ("#12", "#14"), "rnn_stream": ("#5", "#11")}


@pytest.mark.parametrize("branches", list(SlotBranches))
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_stateful_model_keeps_its_subgraphs_and_matches_tflite_micro(name, branches) -> None:
    original = (STREAMING / f"{name}.tflite").read_bytes()
    plan = SlotPlan(tuple(SlotTarget(t, "lora", 4) for t in TARGETS[name]), branches=branches)
    compiled = inject_slots(original, plan)
    before, after = read_model(original), read_model(compiled.data)
    assert [op.op_name for op in after.subgraphs[1].operators] == [op.op_name for op in before.subgraphs[1].operators]
    smap = slot_map(compiled).to_json()
    data = bytearray(compiled.data)
    rng = np.random.default_rng(7)
    patch_random_slots(data, smap, rng)
    SlotMap.from_json(smap).check_model(data)
    plain, off_run = Interpreter(model_content=original), Interpreter(model_content=bytes(data))
    ours, golden = Interpreter(model_content=bytes(data)), tflm_interpreter(bytes(data))
    off = [np.full((1, 1), -128, np.int8)] * plan.num_slots
    changed = 0
    for step in range(10):  # state carries over from one invoke to the next
        frame = rng.integers(-128, 128, (1, 8), dtype=np.int8)
        gates = [np.full((1, 1), rng.choice([-128, int(rng.integers(-127, 128))]), np.int8) for _ in off]
        base = plain.run(frame)[0]
        np.testing.assert_array_equal(off_run.run(frame, *off)[0], base, err_msg=f"gates off, invoke {step}")
        got = ours.run(frame, *gates)[0]
        for i, value in enumerate([frame, *gates]):
            golden.set_input(value, i)
        golden.invoke()
        np.testing.assert_array_equal(got, golden.get_output(0), err_msg=f"invoke {step}")
        changed += not np.array_equal(got, base)
    assert changed  # the slots did something on some invoke


def test_a_model_with_its_own_control_flow_is_refused() -> None:
    conditional = inject_slots((REPO / "models" / "converted" / "mobilenet.tflite").read_bytes(),
                               SlotPlan((SlotTarget("#9", "lora", 4),), branches="conditional"))
    with pytest.raises(InjectError, match="is an IF"):
        inject_slots(conditional.data, SlotPlan((SlotTarget("#1", "lora", 4),)))
