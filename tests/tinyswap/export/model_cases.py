"""Hypothesis strategies for random float model specs and slot plans (compiler tests)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from tinyswap.export.slot_plan import SlotPlan, SlotTarget
from tinyswap.export.spec import ModelSpec, parse_spec


def _dense(rng, name, fan_in, units, act):
    w = {f"{name}/kernel": (rng.standard_normal((fan_in, units)) / np.sqrt(fan_in)).astype(np.float32),
         f"{name}/bias": (rng.standard_normal(units) * 0.1).astype(np.float32)}
    return {"name": name, "type": "dense", "units": units, "activation": act}, w


@st.composite
def specs(draw, batch: int = 1) -> tuple[ModelSpec, np.ndarray]:
    """(spec, calibration): a dense-only, convolutional or residual model with random weights."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["dense", "conv", "residual"]))
    acts = st.sampled_from(["relu", "none", "relu6"])
    layers, weights = [], {}
    if kind == "dense":
        width = draw(st.integers(2, 16))
        shape = [batch, width]
        for i in range(draw(st.integers(1, 3))):
            units = draw(st.integers(2, 16))
            layer, w = _dense(rng, f"fc{i}", width, units, draw(acts))
            layers.append(layer)
            weights.update(w)
            width = units
    else:
        h, w_, c = draw(st.integers(4, 8)), draw(st.integers(4, 8)), draw(st.integers(1, 3))
        shape = [batch, h, w_, c]
        f = draw(st.integers(2, 6))
        k = draw(st.sampled_from([1, 3]))
        layers.append({"name": "conv0", "type": "conv2d", "filters": f, "kernel_size": k, "padding": "same",
                       "activation": "relu"})
        weights["conv0/kernel"] = (rng.standard_normal((k, k, c, f)) / np.sqrt(k * k * c)).astype(np.float32)
        weights["conv0/bias"] = (rng.standard_normal(f) * 0.1).astype(np.float32)
        if kind == "residual":
            layers.append({"name": "conv1", "type": "conv2d", "filters": f, "kernel_size": 3, "padding": "same",
                           "activation": draw(acts)})
            weights["conv1/kernel"] = (rng.standard_normal((3, 3, f, f)) / np.sqrt(9 * f)).astype(np.float32)
            weights["conv1/bias"] = (rng.standard_normal(f) * 0.1).astype(np.float32)
            layers.append({"name": "res", "type": "add", "inputs": ["conv0", "conv1"]})
        if draw(st.booleans()):
            layers.append({"name": "pool", "type": "max_pool2d", "pool_size": 2, "padding": "same"})
        layers.append({"name": "gap", "type": "global_avg_pool2d"})
        layer, w = _dense(rng, "head", f, draw(st.integers(2, 6)), "none")
        layers.append(layer)
        weights.update(w)
    if draw(st.booleans()):
        layers.append({"name": "probs", "type": "softmax"})
    spec = parse_spec({"name": kind, "input": {"name": "x", "shape": shape}, "layers": layers}, weights)
    calibration = rng.standard_normal((32, *shape[1:])).astype(np.float32)
    return spec, calibration


@st.composite
def plans(draw, spec: ModelSpec) -> SlotPlan:
    candidates = [layer for layer in spec.layers if layer.type in ("dense", "conv2d", "add")]
    chosen = draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=len(candidates), unique_by=lambda l: l.name))
    targets = []
    for layer in chosen:
        kind = "bottleneck" if layer.type == "add" else draw(st.sampled_from(["lora", "bottleneck"]))
        targets.append(SlotTarget(layer.name, kind, draw(st.integers(1, 4)), draw(st.sampled_from([0.25, 0.5]))))
    return SlotPlan(targets=tuple(targets), num_slots=draw(st.integers(2, 3)),
                    alignment=draw(st.sampled_from([16, 64, 4096])), gate_max=1.0)
