"""Fidelity: INT8 vs float outputs of base models and of base plus a LoRA written into a slot
through the packer's quantizer (`tinyswap.export.adapter_quant`), with the bounds we hold.

Measured on models/examples/mlp (64-128-64-10 MLP, softmax output, 512 N(0, 1) inputs,
headroom on, rank-4 LoRA on every dense layer with alpha/r = 2, B ~ N(0, 0.05**2)):
base max |p_int8 - p_float| 0.080, top-1 agreement 0.951; adapted 0.106 and 0.932 (headroom
off: 0.80 top-1, because negative pre-activations clip at the base's post-ReLU range).
Bounds held here: max abs probability error <= 0.15 for base and adapted; top-1 agreement
>= 0.90 base and >= 0.88 adapted; the adapter's delta error after quantization <= 5%.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tinyswap.export.adapter_quant import quantize_lora
from tinyswap.export.bundle import slot_map
from tinyswap.export.compiler import compile_model
from tinyswap.export.float_model import forward
from tinyswap.export.slot_plan import SlotPlan, SlotTarget
from tinyswap.export.spec import parse_spec
from tinyswap import Interpreter
from tinyswap.quantize import quantize_int8


def random_mlp(seed: int):
    rng = np.random.default_rng(seed)
    dims = [32, 64, 32, 8]
    layers, weights = [], {}
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        name = f"fc{i}"
        layers.append({"name": name, "type": "dense", "units": b, "activation": "relu" if i < 2 else "none"})
        weights[f"{name}/kernel"] = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        weights[f"{name}/bias"] = (rng.standard_normal(b) * 0.05).astype(np.float32)
    layers.append({"name": "probs", "type": "softmax"})
    spec = parse_spec({"name": "mlp", "input": {"shape": [1, 32]}, "layers": layers}, weights)
    return spec, rng


def int8_probabilities(compiled, data, x, gates) -> np.ndarray:
    q, oq = compiled.input_quant, compiled.output_quant
    xq = quantize_int8(x, q.scale, q.zero_point)
    g = [np.full((len(x), 1), v, np.int8) for v in gates]
    y = Interpreter(model_content=data).run(xq, *g)[0].astype(np.float64)
    return (y - oq.zero_point) * oq.scale


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_base_and_adapted_fidelity(seed: int) -> None:
    spec, rng = random_mlp(seed)
    plan = SlotPlan(targets=tuple(SlotTarget(f"fc{i}", "lora", 4) for i in range(3)), num_slots=2, headroom=True)
    calibration = rng.standard_normal((256, 32)).astype(np.float32)
    compiled = compile_model(spec, plan, calibration)
    x = rng.standard_normal((512, 32)).astype(np.float32)
    weights = dict(spec.weights)
    data = bytearray(compiled.data)
    tensors = {(t["layer"], t["role"]): t for t in slot_map(compiled).to_json()["slots"][0]["tensors"]}
    for i in range(3):
        k = spec.kernel(f"fc{i}")
        a = rng.standard_normal((4, k.shape[0])) / np.sqrt(k.shape[0])
        b = rng.standard_normal((k.shape[1], 4)) * 0.05
        weights[f"fc{i}/kernel"] = (k + (2.0 * b @ a).T).astype(np.float32)
        ta, tb = tensors[(f"fc{i}", "A")], tensors[(f"fc{i}", "B")]
        a_q, b_q, report = quantize_lora(a, b, 2.0, ta["scales"][0], tb["scales"][0], ta["shape"][0])
        assert report.delta_relative_error <= 0.05 and report.clipped_a == report.clipped_b == 0.0
        data[ta["offset"] : ta["offset"] + ta["length"]] = a_q.tobytes()
        data[tb["offset"] : tb["offset"] + tb["length"]] = b_q.tobytes()
    adapted = dataclasses.replace(spec, weights=weights)
    base_float, adapted_float = forward(spec, x)["probs"], forward(adapted, x)["probs"]
    base_int8 = int8_probabilities(compiled, data, x, [-128, -128])  # gates off
    adapted_int8 = int8_probabilities(compiled, data, x, [127, -128])  # slot 0 at gate 1.0
    assert np.abs(base_int8 - base_float).max() <= 0.15
    assert np.abs(adapted_int8 - adapted_float).max() <= 0.15
    assert np.mean(base_int8.argmax(1) == base_float.argmax(1)) >= 0.90
    assert np.mean(adapted_int8.argmax(1) == adapted_float.argmax(1)) >= 0.88
    # ... and the adapter really changed the model (complaint: "loads but has no effect").
    assert np.mean(adapted_int8.argmax(1) != base_int8.argmax(1)) > 0.02


def test_over_rank_adapter_is_reduced_by_svd_with_the_error_reported() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((12, 40)) / 6, rng.standard_normal((20, 12)) * 0.1
    a_q, b_q, report = quantize_lora(a, b, 1.0, 4 / np.sqrt(40) / 127, 0.5 / 127, r_max=8)
    s = np.linalg.svd(b @ a, compute_uv=False)
    assert a_q.shape == (8, 40) and b_q.shape == (20, 8)
    assert report.rank_in == 12 and report.rank_slot == 8
    np.testing.assert_allclose(report.svd_relative_error, np.sqrt((s[8:] ** 2).sum() / (s**2).sum()), rtol=1e-9)


def test_smaller_rank_is_zero_padded() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 16)) / 4, rng.standard_normal((8, 2)) * 0.1
    a_q, b_q, report = quantize_lora(a, b, 1.0, 4 / 4 / 127, 0.5 / 127, r_max=6)
    assert not a_q[2:].any() and not b_q[:, 2:].any()
    assert report.svd_relative_error == 0.0 and report.delta_relative_error < 0.05
