"""Conditional slot branches (`SlotPlan(branches="conditional")`): each slot's branch behind a
TFLite IF on its gate. Checked against TFLite Micro (the golden), against the same plan's static
graph ("always", which must agree bit for bit without headroom), and by counting which branch
subgraphs an invoke runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyswap.interpreter as interpreter_module
from tinyswap import Interpreter
from tinyswap.export.bundle import slot_map
from tinyswap.export.compiler import compile_model
from tinyswap.export.errors import SlotPlanError
from tinyswap.export.slot_plan import SlotBranches, SlotPlan, SlotTarget
from tinyswap.export.spec import load_spec
from tinyswap.model_cost import model_cost, slot_cost_report
from tinyswap.oracles import run_tflm
from tinyswap.package import Keyring
from tinyswap.slotmap import SlotMap
from tinyswap.swap import SwapManager

from tests.adapter_cases import KEY, example_bundle, gates_for_rows, package, slot_holding, tflm_rows
from tests.conftest import REPO
from tests.tinyswap.export.model_cases import plans, specs
from tests.tinyswap.export.test_compiler import patch_random_slots, random_inputs

DIGITS = REPO / "models" / "digits"


@st.composite
def cases(draw):
    spec, cal = draw(specs())
    plan = dataclasses.replace(draw(plans(spec)), branches=SlotBranches.CONDITIONAL, headroom=draw(st.booleans()))
    # Each slot off (gate 0.0 = int8 -128) or on at any strength: the IF's condition both ways.
    gates = [draw(st.one_of(st.just(-128), st.integers(-127, 127))) for _ in range(plan.num_slots)]
    return spec, cal, plan, np.array(gates), draw(st.integers(0, 2**32 - 1))


@settings(max_examples=8)
@given(cases())
def test_random_slot_bytes_and_gates_match_tflite_micro(case) -> None:
    spec, cal, plan, gates, seed = case
    rng = np.random.default_rng(seed)
    compiled = compile_model(spec, plan, cal)
    smap = slot_map(compiled).to_json()
    data = bytearray(compiled.data)
    patch_random_slots(data, smap, rng)
    SlotMap.from_json(smap).check_model(data)  # the slot map describes the IF branches' tensors
    inputs = random_inputs(compiled, rng, gates)
    np.testing.assert_array_equal(Interpreter(model_content=data).run(*inputs)[0], run_tflm(bytes(data), inputs)[0])


@settings(max_examples=8)
@given(cases())
def test_without_headroom_the_conditional_graph_equals_the_static_one(case) -> None:
    """Same plan, same slot bytes, same gates: the IF graph and the always-run graph give the same
    bytes (the join's RELU after a plain ADD clamps as the fused activation did), and all gates
    at zero give the slot-free model."""
    spec, cal, plan, gates, seed = case
    plan = dataclasses.replace(plan, headroom=False)
    outputs = []
    for branches in SlotBranches:
        compiled = compile_model(spec, dataclasses.replace(plan, branches=branches), cal)
        data = bytearray(compiled.data)
        patch_random_slots(data, slot_map(compiled).to_json(), np.random.default_rng(seed))
        inputs = random_inputs(compiled, np.random.default_rng(seed + 1), gates)
        outputs.append(Interpreter(model_content=data).run(*inputs)[0])
        if branches == SlotBranches.CONDITIONAL:
            off = random_inputs(compiled, np.random.default_rng(seed + 1), np.full(plan.num_slots, -128))
            free = compile_model(spec, None, cal)
            np.testing.assert_array_equal(Interpreter(model_content=data).run(*off)[0],
                                          Interpreter(model_content=free.data).run(off[0])[0])
    np.testing.assert_array_equal(*outputs)


def _digits_cnn(branches: SlotBranches, **changes):
    spec = load_spec(DIGITS / "cnn.json")
    plan = dataclasses.replace(SlotPlan.load(DIGITS / "cnn.plan.json"), branches=branches, **changes)
    return spec, compile_model(spec, plan, np.load(DIGITS / "cnn.calibration.npy"))


def test_an_inactive_slot_runs_no_branch(monkeypatch) -> None:
    """Which subgraphs an invoke runs: none of a slot's branches while its gate is 0, all of them
    (one per targeted layer) when it is on; the output changes only then."""
    _, compiled = _digits_cnn(SlotBranches.CONDITIONAL)
    smap = slot_map(compiled).to_json()
    data = bytearray(compiled.data)
    patch_random_slots(data, smap, np.random.default_rng(0), constant=90)
    branch_of = {t["subgraph"]: s["slot"] for s in smap["slots"] for t in s["tensors"]}
    ran: list[int] = []
    invoke = interpreter_module._Graph.invoke

    def spy(graph) -> None:
        ran.append(graph.index)
        invoke(graph)

    monkeypatch.setattr(interpreter_module._Graph, "invoke", spy)
    interp = Interpreter(model_content=data)
    x = random_inputs(compiled, np.random.default_rng(1), np.array([-128, -128]))[0]
    results = {}
    for gates in ((-128, -128), (127, -128), (-128, 127)):
        ran.clear()
        results[gates] = interp.run(x, *(np.full((1, 1), g, np.int8) for g in gates))[0]
        branches = [branch_of[i] for i in ran if i in branch_of]
        on = [s for s, g in enumerate(gates) if g > -128]
        assert sorted(branches) == sorted(on * len(compiled.plan.targets)), (gates, ran)
        np.testing.assert_array_equal(results[gates], run_tflm(bytes(data), [x, *(np.full((1, 1), g, np.int8)
                                                                                    for g in gates)])[0])
    assert not np.array_equal(results[(-128, -128)], results[(127, -128)])


@pytest.mark.parametrize("targets", [None, (SlotTarget("fc", "lora", 8),)], ids=["shipped-plan", "rank-8-head"])
def test_active_slots_cost_their_branches_only(targets) -> None:
    """The MAC report with k of S slots on, against the slot-free model and the static graph.
    The shipped plan's rank-8 LoRA on conv2 (16 channels) alone is 61% of conv2's MACs, so one
    active slot stays far above +10% there; a rank-8 LoRA on the classifier stays under it."""
    changes = {} if targets is None else {"targets": targets}
    spec, conditional = _digits_cnn(SlotBranches.CONDITIONAL, **changes)
    _, static = _digits_cnn(SlotBranches.ALWAYS, **changes)
    free = compile_model(spec, None, np.load(DIGITS / "cnn.calibration.npy"))
    base = model_cost(free.data).macs_per_row
    report = slot_cost_report(conditional.data, slot_map(conditional))
    always = slot_cost_report(static.data, slot_map(static))
    assert report.conditional and not always.conditional
    assert report.base_macs == always.base_macs == base
    assert report.slot_macs == always.slot_macs and all(m > 0 for m in report.slot_macs)
    assert report.macs_with_active_slots == tuple(base + sum(report.slot_macs[:k]) for k in range(3))
    assert always.macs_with_active_slots == (always.total_macs,) * 3
    assert report.macs_with_active_slots[1] < always.total_macs
    assert (report.macs_with_active_slots[1] <= 1.10 * base) is (targets is not None)
    assert model_cost(conditional.data).macs_per_row == report.total_macs  # an IF counts its dearer branch
    assert report.to_json()["macs"]["with_active_slots"] == list(report.macs_with_active_slots)


def test_packages_and_the_swap_manager_work_unchanged() -> None:
    bundle = example_bundle("cnn", branches="conditional")
    smap = bundle.smap
    assert any("subgraph" in t for t in smap["slots"][0]["tensors"])
    manager = SwapManager(bytearray(bundle.data), smap, Keyring([KEY.public_key()]))
    packages = {name: package(smap, seed, name) for seed, name in enumerate(["A", "B"], start=1)}
    for data in packages.values():
        manager.load_adapter(data)
    x = np.random.default_rng(2).integers(-128, 128, (1, *bundle.compiled.spec.input_shape[1:]), dtype=np.int8)
    for row in ({"A": 1.0}, {"B": 0.5}, {"A": 0.3, "B": 1.0}, {}):
        ours = manager.infer(x, adapters=row or "__base__")[0]
        slots = {slot_holding(smap, manager.image.buffer, packages[n]): w for n, w in row.items()}
        np.testing.assert_array_equal(ours, tflm_rows(manager.image.buffer, x, gates_for_rows(smap, [slots])))


def test_plan_option_round_trips_and_is_validated() -> None:
    target = (SlotTarget("fc", "lora", 8),)
    plan = SlotPlan(target, branches="conditional")
    assert plan.branches is SlotBranches.CONDITIONAL
    assert SlotPlan.from_json(plan.to_json()) == plan and plan.to_json()["branches"] == "conditional"
    assert "branches" not in SlotPlan(target).to_json()  # the default keeps older plans' JSON
    with pytest.raises(SlotPlanError, match="branches is 'sometimes'"):
        SlotPlan(target, branches="sometimes")
    with pytest.raises(SlotPlanError, match="gate_max >= 0.5"):
        SlotPlan(target, branches="conditional", gate_max=0.25)
    spec, cal = load_spec(DIGITS / "mlp.json"), np.load(DIGITS / "mlp.calibration.npy")
    batched = dataclasses.replace(spec, input_shape=(4, *spec.input_shape[1:]))
    with pytest.raises(SlotPlanError, match="batch-1 model"):
        compile_model(batched, SlotPlan((SlotTarget("fc1", "lora", 4),), branches="conditional"), cal)


def test_slots_injected_into_a_converted_model_match_tflite_micro() -> None:
    """Conditional slots injected into a converter-made MobileNet-style model: gates off give the
    original file's outputs bit for bit; random slot bytes and gates match TFLite Micro."""
    from tinyswap.export.inject import inject_slots

    original = (REPO / "models" / "converted" / "mobilenet.tflite").read_bytes()
    plan = SlotPlan((SlotTarget("#1", "lora", 8), SlotTarget("#6", "lora", 4), SlotTarget("#9", "lora", 8),
                     SlotTarget("#5", "bottleneck", 4)), branches="conditional")
    compiled = inject_slots(original, plan)
    smap = slot_map(compiled).to_json()
    rng = np.random.default_rng(5)
    data = bytearray(compiled.data)
    patch_random_slots(data, smap, rng)
    SlotMap.from_json(smap).check_model(data)
    x = rng.integers(-128, 128, (1, 8, 8, 1), dtype=np.int8)
    off = [np.full((1, 1), -128, np.int8)] * 2
    np.testing.assert_array_equal(Interpreter(model_content=data).run(x, *off)[0],
                                  run_tflm(original, [x])[0])
    for gates in ((127, -128), (-128, -60), (10, 127)):
        inputs = [x, *(np.full((1, 1), g, np.int8) for g in gates)]
        np.testing.assert_array_equal(Interpreter(model_content=data).run(*inputs)[0], run_tflm(bytes(data), inputs)[0])
    report = slot_cost_report(bytes(data), SlotMap.from_json(smap))
    assert report.macs_with_active_slots[0] == model_cost(original).macs_per_row
