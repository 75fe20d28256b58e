"""Gate arithmetic as pure functions: request specs, int8 gate rows, graph input order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinyswap.slotmap import GateInfo
from tinyswap.swap import AdapterError, GateWeightError
from tinyswap.swap.gates import gate_rows, graph_inputs, normalise

# Two slots as the compiler makes them: gate_max 1.0, scale 1/255, zero point -128.
GATES = (GateInfo(0, "gate_0", 1, 1 / 255, -128, 1.0), GateInfo(1, "gate_1", 2, 1 / 255, -128, 1.0))


@pytest.mark.parametrize("spec,expected", [
    (None, {}),
    ("__base__", {}),
    ("A", {"A": 1.0}),
    (["A", "B"], {"A": 1.0, "B": 1.0}),
    ({"A": 0.5, "B": 0.0}, {"A": 0.5}),  # weight 0 selects nothing
    ({"A": 1.0, "__base__": 1.0}, {"A": 1.0}),
    ([], {}),
])
def test_normalise_accepts_every_spec_form(spec, expected) -> None:
    assert normalise(spec, 1.0) == expected


@pytest.mark.parametrize("weight", [-0.5, 1.5, math.nan, math.inf])
def test_normalise_refuses_weights_outside_the_gate_range(weight) -> None:
    with pytest.raises(GateWeightError, match="outside the gate range"):
        normalise({"A": weight}, 1.0)
    assert normalise({"A": 2.0}, 2.0) == {"A": 2.0}  # the range is the slot map's gate_max


def test_gate_rows_quantize_each_rows_weights_into_its_adapters_slot() -> None:
    rows = [{"A": 1.0}, {}, {"A": 0.5, "B": 0.25}, {"B": 1.0}]
    g = gate_rows(GATES, rows, {"A": 1, "B": 0})
    assert g.shape == (2, 4, 1) and g.dtype == np.int8
    assert g[:, :, 0].tolist() == [[-128, -128, round(0.25 * 255) - 128, 127],
                                   [127, -128, round(0.5 * 255) - 128, -128]]
    # Every slot no row names stays at its zero point: gate 0.0, the slot contributes nothing.
    assert (gate_rows(GATES, [{}] * 3, {}) == -128).all()


def test_graph_inputs_put_gates_at_their_input_positions() -> None:
    x = np.ones((2, 4), np.int8)
    values = gate_rows(GATES, [{"A": 1.0}] * 2, {"A": 0})
    ordered = graph_inputs([x], GATES, values)
    assert len(ordered) == 3 and ordered[0] is x
    np.testing.assert_array_equal(ordered[1], values[0])
    np.testing.assert_array_equal(ordered[2], values[1])
    swapped = (GateInfo(0, "g0", 0, 1 / 255, -128, 1.0), GateInfo(1, "g1", 2, 1 / 255, -128, 1.0))
    ordered = graph_inputs([x], swapped, values)  # the data input between the gates
    assert ordered[1] is x
    with pytest.raises(AdapterError, match="graph input 5"):
        graph_inputs([x], (GATES[0], GateInfo(1, "g1", 5, 1 / 255, -128, 1.0)), values)


def test_two_gates_on_one_graph_input_are_a_typed_error() -> None:
    # Was a StopIteration: the second gate overwrote the first and a data input went missing.
    x = np.ones((2, 4), np.int8)
    values = gate_rows(GATES, [{"A": 1.0}] * 2, {"A": 0})
    with pytest.raises(AdapterError, match="gate 1 is graph input 1, which another gate already is"):
        graph_inputs([x], (GATES[0], GateInfo(1, "g1", 1, 1 / 255, -128, 1.0)), values)
