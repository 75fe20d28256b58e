"""Write the small example specs `tinyswap export` is demonstrated and tested with.

Random but seeded float weights (NumPy only): a dense MLP and a small CNN, each with a slot plan
and calibration data. Regenerate with `python models/examples/make_examples.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def write(name: str, spec: dict, weights: dict[str, np.ndarray], plan: dict, calibration: np.ndarray) -> None:
    (HERE / f"{name}.json").write_text(json.dumps(spec, indent=2) + "\n")
    np.savez(HERE / f"{name}.npz", **weights)
    (HERE / f"{name}.plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    np.save(HERE / f"{name}.calibration.npy", calibration)


def main() -> None:
    rng = np.random.default_rng(2026)
    dims = [64, 128, 64, 10]
    layers, weights = [], {}
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        name = f"fc{i + 1}"
        layers.append({"name": name, "type": "dense", "units": b, "activation": "relu" if i < 2 else "none"})
        weights[f"{name}/kernel"] = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        weights[f"{name}/bias"] = (rng.standard_normal(b) * 0.05).astype(np.float32)
    layers.append({"name": "probs", "type": "softmax"})
    write("mlp", {"name": "mlp", "input": {"name": "x", "shape": [1, 64]}, "layers": layers}, weights,
          {"num_slots": 2, "alignment": 16, "targets": [
              {"layer": "fc1", "kind": "lora", "max_rank": 8}, {"layer": "fc2", "kind": "lora", "max_rank": 8},
              {"layer": "fc3", "kind": "lora", "max_rank": 4}]},
          rng.standard_normal((128, 64)).astype(np.float32))

    cnn_layers = [
        {"name": "conv1", "type": "conv2d", "filters": 8, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "relu"},
        {"name": "dw1", "type": "depthwise_conv2d", "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"name": "conv2", "type": "conv2d", "filters": 16, "kernel_size": 1, "activation": "relu"},
        {"name": "gap", "type": "global_avg_pool2d"},
        {"name": "head", "type": "dense", "units": 4},
    ]
    w = {
        "conv1/kernel": (rng.standard_normal((3, 3, 1, 8)) / 3).astype(np.float32),
        "conv1/bias": np.zeros(8, np.float32),
        "dw1/kernel": (rng.standard_normal((3, 3, 8, 1)) / 3).astype(np.float32),
        "dw1/bias": np.zeros(8, np.float32),
        "conv2/kernel": (rng.standard_normal((1, 1, 8, 16)) / np.sqrt(8)).astype(np.float32),
        "conv2/bias": np.zeros(16, np.float32),
        "head/kernel": (rng.standard_normal((16, 4)) / 4).astype(np.float32),
        "head/bias": np.zeros(4, np.float32),
    }
    write("cnn", {"name": "cnn", "input": {"name": "image", "shape": [1, 16, 16, 1]}, "layers": cnn_layers}, w,
          {"num_slots": 2, "alignment": 4096, "targets": [
              {"layer": "conv2", "kind": "lora", "max_rank": 4}, {"layer": "dw1", "kind": "bottleneck", "max_rank": 4}]},
          rng.standard_normal((64, 16, 16, 1)).astype(np.float32))


if __name__ == "__main__":
    main()
