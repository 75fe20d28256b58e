"""Gate inputs as pure functions: request specs to weights, weights to int8 gates, gates into
the graph's input order. Nothing here touches the manager's state, so each is tested alone."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from tinyswap.slotmap import GateInfo
from tinyswap.swap.errors import AdapterError, GateWeightError
from tinyswap.swap.records import BASE, AdapterSpec


def normalise(spec: AdapterSpec, gate_max: float) -> dict[str, float]:
    """{adapter name: weight > 0} for a name, a list (weight 1 each), {name: weight} or None;
    `"__base__"` and zero weights select nothing. A weight outside [0, gate_max] (or NaN) is a
    `GateWeightError`."""
    if spec is None or spec == BASE:
        return {}
    if isinstance(spec, str):
        items = {spec: 1.0}
    elif isinstance(spec, Mapping):
        items = {str(k): float(v) for k, v in spec.items()}
    else:
        items = {str(n): 1.0 for n in spec}
    out = {}
    for name, weight in items.items():
        if name == BASE:
            continue
        if not (0.0 <= weight <= gate_max):  # also refuses NaN
            raise GateWeightError(f"weight {weight} for adapter {name!r} is outside the gate range [0, {gate_max}]")
        if weight > 0:
            out[name] = weight
    return out


def gate_rows(gates: Sequence[GateInfo], rows: Sequence[Mapping[str, float]], slot_of: Mapping[str, int]) -> np.ndarray:
    """The int8 gate inputs [S, batch, 1]: per row, each named adapter's slot gets its weight
    quantized, every other slot its zero point (gate 0.0: the slot contributes nothing)."""
    out = np.empty((len(gates), len(rows), 1), np.int8)
    for s, g in enumerate(gates):
        out[s] = g.zero_point
    for r, spec in enumerate(rows):
        for name, weight in spec.items():
            s = slot_of[name]
            out[s, r, 0] = gates[s].quantize(weight)
    return out


def graph_inputs(inputs: Sequence[np.ndarray], gates: Sequence[GateInfo], values: np.ndarray) -> list[np.ndarray]:
    """The data inputs and one gate input per slot, each at its graph input position."""
    total = len(inputs) + len(gates)
    by_position: list[np.ndarray | None] = [None] * total
    for g in gates:
        if g.input_index >= total:
            raise AdapterError(f"gate {g.slot} is graph input {g.input_index}, but the model has {total} inputs")
        if by_position[g.input_index] is not None:  # a slot map the model check would refuse
            raise AdapterError(f"gate {g.slot} is graph input {g.input_index}, which another gate already is")
        by_position[g.input_index] = values[g.slot]
    data = iter(inputs)
    return [next(data) if x is None else x for x in by_position]


__all__ = ["gate_rows", "graph_inputs", "normalise"]
