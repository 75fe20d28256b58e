"""Structure-aware generated scenarios: step lists built from the registry's own field
declarations, then mutated (fields dropped, added, retyped, pushed out of range, kinds
changed, steps replaced). Validation must either accept a scenario, and then its typed steps
must survive a JSON round trip unchanged, or refuse it with a `ScenarioFormatError` naming the
step; never anything else."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tinyswap.firmware_sim.scenario import STEP_KINDS, ScenarioFormatError, validate_scenario
from tinyswap.firmware_sim.scenario.kinds import CutWhen
from tinyswap.firmware_sim.scenario.fields import MAX_INDEX, MAX_SECONDS, Param, ValueType
from tinyswap.firmware_sim.scenario.registry import COMMON

PACKAGES = ("A1", "A2", "bad")
DATASETS = ("rows", "other")
NAMES = st.sampled_from(["A", "B", "__base__", "cnn-invert"]) | st.text(min_size=1, max_size=8)
SCALAR = st.none() | st.booleans() | st.integers(-10, 10**12) | st.floats(allow_nan=False) | st.text(max_size=8)
JSON = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                           max_size=3), max_leaves=8)
SPEC = NAMES | st.lists(NAMES, min_size=1, max_size=3) | st.dictionaries(
    NAMES, st.integers(0, 100) | st.floats(0, 10, allow_nan=False), min_size=1, max_size=3)
REQUEST = st.fixed_dictionaries({}, optional={
    **{k: st.text(max_size=10) | st.just("meter-{row}") for k in ("user", "tenant", "task", "session")},
    "context": st.dictionaries(st.text(max_size=6), st.text(max_size=6) | st.integers() | st.booleans(), max_size=2),
    "dataset": st.sampled_from(DATASETS)})
DURATION = (st.floats(0, MAX_SECONDS, allow_nan=False) | st.integers(0, 10**6)
            | st.builds(lambda n, u: f"{n}{u}", st.integers(0, 5000), st.sampled_from(["ms", "s", "min", "h"]))
            | st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 99), st.integers(0, 59)))


def valid_value(p: Param) -> st.SearchStrategy[Any]:
    """A value the declaration says is valid (the checker may still refuse cross-field rules)."""
    if p.type is ValueType.INT:
        low = 0 if p.minimum is None else p.minimum
        return st.integers(low, min(MAX_INDEX if p.maximum is None else int(p.maximum), low + 10**6))
    if p.type is ValueType.CHOICE:
        assert p.choices is not None
        return st.sampled_from([c.value for c in p.choices])
    return {
        ValueType.TEXT: st.text(max_size=12), ValueType.NAME: st.text(min_size=1, max_size=12),
        ValueType.BOOL: st.booleans(), ValueType.DURATION: DURATION, ValueType.PACKAGE: st.sampled_from(PACKAGES),
        ValueType.DATASET: st.sampled_from(DATASETS), ValueType.ADAPTERS: SPEC,
        ValueType.ADAPTERS_LIST: st.lists(SPEC, min_size=1, max_size=3),
        ValueType.REQUESTS: st.lists(REQUEST, min_size=1, max_size=3),
    }[p.type]


def test_every_value_type_has_a_generator():
    for t in ValueType:
        p = Param("x", t, True, minimum=0, choices=CutWhen if t is ValueType.CHOICE else None)
        assert valid_value(p) is not None


@st.composite
def generated_step(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(list(STEP_KINDS)))
    step: dict[str, Any] = {"kind": kind.name}
    for p in (*COMMON, *kind.fields):
        if p.required or draw(st.booleans()):
            step[p.name] = draw(valid_value(p))
    return step


@st.composite
def mutated(draw: st.DrawFn, steps: list[Any]) -> list[Any]:
    steps = json.loads(json.dumps(steps))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(steps) - 1))
        step = steps[i]
        how = draw(st.sampled_from(["drop", "add", "retype", "range", "kind", "replace", "swap"]))
        if how == "replace" or not isinstance(step, dict):
            steps[i] = draw(JSON)
        elif how == "drop" and step:
            del step[draw(st.sampled_from(sorted(step)))]
        elif how == "add":
            step[draw(st.text(max_size=8))] = draw(JSON)
        elif how == "retype" and step:
            step[draw(st.sampled_from(sorted(step)))] = draw(JSON)
        elif how == "range" and step:
            step[draw(st.sampled_from(sorted(step)))] = draw(st.sampled_from(
                [-1, 0, 2**31, 10**18, -0.5, math.inf, "", "-1s", "99:99", [], {}]))
        elif how == "kind":
            step["kind"] = draw(st.sampled_from(STEP_KINDS.names()) | st.text(max_size=8))
        elif how == "swap" and len(steps) > 1:
            j = draw(st.integers(0, len(steps) - 1))
            steps[i], steps[j] = steps[j], steps[i]
    return steps


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    steps = draw(st.lists(generated_step(), min_size=1, max_size=6))
    if draw(st.booleans()):
        steps = draw(mutated(steps))
    return {"bundle": "bundle", "keyring": "key.pem", "packages": {k: f"{k}.tsap" for k in PACKAGES},
            "datasets": {k: f"{k}.npz" for k in DATASETS}, "steps": steps}


@settings(max_examples=200)
@given(scenarios())
def test_validation_accepts_and_round_trips_or_raises_the_typed_error(sc):
    try:
        steps = validate_scenario(sc)
    except ScenarioFormatError as exc:
        # every refusal here is about a step: it names which one, and its field when it has one
        assert exc.step is not None and 0 <= exc.step < len(sc["steps"]), exc
        message = str(exc)
        assert message.startswith(f"step {exc.step}") and "\n" not in message
        if isinstance(sc["steps"][exc.step], dict):
            assert exc.field is not None, exc
            if exc.field != "kind":
                assert exc.kind == sc["steps"][exc.step]["kind"] and f"field {exc.field!r}" in message
        return
    assert [s.index for s in steps] == list(range(len(sc["steps"])))
    again = json.loads(json.dumps({**sc, "steps": [s.to_json() for s in steps]}, allow_nan=False))
    assert validate_scenario(again) == steps
