"""SlotPlan and spec validation: every error names the field and the value."""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap.export.slot_plan import SlotPlan, SlotPlanError, SlotTarget
from tinyswap.export.spec import SpecError, parse_spec


@pytest.mark.parametrize("kwargs,match", [
    ({"num_slots": 1}, "num_slots is 1"),
    ({"alignment": 100}, "alignment is 100"),
    ({"alignment": 8}, "alignment is 8"),
    ({"gate_max": 0}, "gate_max is 0"),
    ({"headroom": "yes"}, "headroom is 'yes'"),
    ({"scale_policy": "magic"}, "scale_policy is 'magic'"),
])
def test_plan_fields_are_validated(kwargs, match) -> None:
    with pytest.raises(SlotPlanError, match=match):
        SlotPlan(targets=(SlotTarget("fc1"),), **kwargs)


@pytest.mark.parametrize("kwargs,match", [
    ({"kind": "prefix"}, "kind is 'prefix'"),
    ({"max_rank": 0}, "max_rank is 0"),
    ({"delta_ratio": -1.0}, "delta_ratio is -1.0"),
])
def test_target_fields_are_validated(kwargs, match) -> None:
    with pytest.raises(SlotPlanError, match=match):
        SlotTarget("fc1", **kwargs)


def test_plan_json_round_trip_and_unknown_fields() -> None:
    plan = SlotPlan(targets=(SlotTarget("a", "lora", 8), SlotTarget("b", "bottleneck", 2)), num_slots=4, alignment=4096)
    assert SlotPlan.from_json(plan.to_json()) == plan
    with pytest.raises(SlotPlanError, match="unknown slot plan fields"):
        SlotPlan.from_json({**plan.to_json(), "colour": "red"})
    with pytest.raises(SlotPlanError, match="name a layer twice"):
        SlotPlan(targets=(SlotTarget("a"), SlotTarget("a")))


def test_spec_errors_name_the_layer() -> None:
    base = {"input": {"shape": [1, 4]}, "layers": [{"name": "fc", "type": "dense", "units": 2}]}
    good = {"fc/kernel": np.zeros((4, 2), np.float32), "fc/bias": np.zeros(2, np.float32)}
    parse_spec(base, good)
    with pytest.raises(SpecError, match="'fc/kernel' has shape"):
        parse_spec(base, {**good, "fc/kernel": np.zeros((3, 2), np.float32)})
    with pytest.raises(SpecError, match="unknown type 'lstm'"):
        parse_spec({**base, "layers": [{"name": "x1", "type": "lstm"}]}, {})
    with pytest.raises(SpecError, match="reads 'nope'"):
        parse_spec({**base, "layers": [{"name": "fc", "type": "dense", "units": 2, "inputs": ["nope"]}]}, good)
    with pytest.raises(SpecError, match="arrays no layer uses"):
        parse_spec(base, {**good, "extra": np.zeros(1, np.float32)})


def test_lora_on_a_pooling_layer_is_refused() -> None:
    from tinyswap.export.compiler import compile_model

    spec = parse_spec({"input": {"shape": [1, 4, 4, 1]}, "layers": [
        {"name": "pool", "type": "max_pool2d", "pool_size": 2}]}, {})
    with pytest.raises(SpecError, match="only dense and conv2d"):
        compile_model(spec, SlotPlan(targets=(SlotTarget("pool", "lora"),)), np.zeros((2, 4, 4, 1), np.float32))
