"""The step-kind registry: one registration per kind, duplicates and inconsistent
registrations refused, every kind documented with a valid example, typed steps that
serialise back to the JSON they came from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from tinyswap.firmware_sim.scenario import (
    STEP_KINDS,
    Step,
    StepKindRegistryError,
    StepParams,
    load_scenario,
    step_kind,
    validate_scenario,
)
from tinyswap.firmware_sim.scenario.fields import ValueType, param
from tinyswap.firmware_sim.scenario.registry import COMMON, Registry
from tinyswap.firmware_sim.scenario.kinds import CutWhen, PowerCutStep

from tests.tinyswap.firmware_sim.scenario.scenario_cases import DAY, DEMO, scenario

KINDS = ["activate", "confirm", "delete", "infer", "install", "power_cut", "prefetch", "reboot", "rollback", "stream", "swap",
         "train", "update", "wait"]


def test_the_built_in_kinds():
    assert STEP_KINDS.names() == KINDS
    for kind in STEP_KINDS:
        assert kind.summary and kind.params.__doc__, kind.name
        assert all(p.doc for p in kind.fields), kind.name
        assert hasattr(kind.params, "run") and kind.params.run is not StepParams.run, kind.name


def test_a_name_registered_twice_is_refused():
    registry = Registry()

    def declare() -> type:
        @step_kind("beep", example={"kind": "beep"}, registry=registry)
        @dataclass(frozen=True, kw_only=True)
        class Beep(StepParams):
            """Beep."""

            loud: bool = param(ValueType.BOOL, default=False, doc="how")

            def run(self, run: Any, step: Step) -> dict[str, Any]:
                return {"loud": self.loud}

        return Beep

    declare()
    assert registry.names() == ["beep"] and registry["beep"].fields[0].name == "loud"
    with pytest.raises(StepKindRegistryError, match="'beep' is registered twice"):
        declare()
    with pytest.raises(StepKindRegistryError, match="'install' is registered twice"):
        STEP_KINDS.add(STEP_KINDS["install"])


@pytest.mark.parametrize("kwargs, fields, text", [
    ({"example": {"kind": "other"}}, {}, "its example has kind 'other'"),
    ({"example": {"kind": "bad"}, "target": ("nothing",)}, {}, "target names unknown fields"),
    ({"example": {"kind": "bad"}}, {"note": param(ValueType.TEXT, default=None, doc="x")}, "common to every step"),
])
def test_inconsistent_registrations_are_refused(kwargs, fields, text):
    namespace: dict[str, Any] = {"__annotations__": {k: Any for k in fields}, **fields, "__doc__": "Bad.",
                                 "run": lambda self, run, step: {}}
    cls = dataclass(frozen=True, kw_only=True)(type("Bad", (StepParams,), namespace))
    with pytest.raises(StepKindRegistryError, match=text):
        step_kind("bad", registry=Registry(), **kwargs)(cls)
    no_handler = dataclass(frozen=True, kw_only=True)(type("Idle", (StepParams,), {"__doc__": "Idle."}))
    with pytest.raises(StepKindRegistryError, match="has no `run` handler"):
        step_kind("idle", example={"kind": "idle"}, registry=Registry())(no_handler)
    with pytest.raises(StepKindRegistryError, match="not a StepParams dataclass"):
        step_kind("bad", example={"kind": "bad"}, registry=Registry())(type("Plain", (), {}))


def test_every_example_validates():
    for kind in STEP_KINDS:
        sc = scenario(packages={"invert": "a.tsap", "rot90": "b.tsap"}, datasets={"rot90": "r.npz", "sensor": "s.npz",
                                                                                 "words": "w.npz"})
        sc["steps"] = [dict(kind.example), {"kind": "reboot"}]
        step = validate_scenario(sc)[0]
        assert step.kind == kind.name and isinstance(step.params, kind.params)


def test_steps_are_typed_records():
    steps = validate_scenario(scenario())
    cut = steps[8]
    assert isinstance(cut, Step) and isinstance(cut.params, PowerCutStep)
    assert cut.params.when is CutWhen.BEFORE and cut.params.op == 3 and cut.params.keep is None
    assert steps[12].at == 600.0 and steps[17].params.seconds == 3600.0
    assert steps[18].expect_error == "SignatureError" and steps[0].note is None
    assert steps[7].params.requests[1].request(5).user == "u-5"
    assert [p.name for p in COMMON] == ["at", "note", "expect_error"]


@pytest.mark.parametrize("source", ["every-step", DAY, DEMO])
def test_steps_serialise_back_to_equal_steps(source):
    sc = scenario() if source == "every-step" else load_scenario(source)
    steps = validate_scenario(sc)
    again = json.loads(json.dumps({**sc, "steps": [s.to_json() for s in steps]}))
    assert validate_scenario(again) == steps
