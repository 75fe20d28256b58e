"""Train the digits base models and their domain adapters: NumPy, manual backprop, seeded.

Data: scikit-learn's bundled 8x8 digits (`sklearn.datasets.load_digits`, 1797 images, pixel
values 0..16, no download). Split: `train_test_split(test_size=0.3, stratify=labels,
random_state=0)`, 1257 training and 540 test images. Model input: pixels / 16 (float32).

Domains (real shifts of the input, each a function of the uint8 0..16 images):
  original  the digits as they are
  rot90     rotated 90 degrees counter-clockwise (a sensor mounted sideways)
  mirror    mirrored left-right (a camera seeing the digits through the back of the glass)
  invert    inverted contrast, 16 - x (light digits on a dark ground)
  thick     thick strokes: grey dilation with a 3x3 cross (a broader pen)
  sensor    a cheaper sensor: half gain, black level raised by 6, Gaussian noise sigma 2.5,
            rounded and clipped to 0..16 (seeded: the noise is part of the data)
  shift     translated 2 pixels down and 2 right, zero fill (a misaligned camera)

Base models (spec + Keras-layout weights, written beside this script):
  mlp  64 -> fc1 64 relu -> fc2 32 relu -> fc3 10 -> softmax
  cnn  8x8x1 -> conv1 3x3x8 relu -> conv2 3x3x16 relu -> 2x2 max pool -> flatten -> fc 10 -> softmax
Calibration (<model>.calibration.npy): 40 training images from each domain, so the INT8 base's
activation ranges cover the shifted inputs the adapters will see.
Adapters (adapters/<model>/<domain>/adapter.json + adapter.npz, tinyswap format): one per
domain, trained on the shifted training split with the base frozen, in the shape of the
model's slot plan (LoRA ranks and bottleneck widths equal to the slots'). Slot-aware: the plan
is compiled first (export.compiler) and the training forward clips where the INT8 graph
saturates (`slot_limits`), with a squared penalty on the excess, and the adapter weights stay
inside their slot tensors' int8 ranges (`BOX`), so that the packed INT8 adapter matches the
float one.

    python models/digits/train.py             # (re)write specs, plans, data; train only what is missing
    python models/digits/train.py --retrain   # retrain the bases and every adapter from scratch

Needs the `training` extra (scikit-learn) but not TensorFlow. Deterministic: every random
choice comes from seeded `numpy.random.default_rng` generators. Tests and the demo never train:
they use the committed files (evaluate.py measures them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

# One BLAS thread: these matrices are tiny, so threads only contend (a busy 2-core machine ran
# the CNN up to 10x slower with two; the files came out identical either way).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))  # the repository: export/ and tinyswap/

from nn import Adam, Net  # noqa: E402

SPLIT_SEED = 0
TEST_SIZE = 0.3
TRAIN_SEED = 2026
CALIBRATION_PER_DOMAIN = 40
PENALTY = 1.0  # weight of the squared excess over the INT8 graph's ranges (see nn.Net)
BOX = 0.95  # adapter weights stay within this fraction of their slot tensor's int8 range
BATCH = 32


# -- domains -----------------------------------------------------------------------------------
def _dilate(x: np.ndarray) -> np.ndarray:
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    return np.maximum.reduce([p[:, 1:9, 1:9], p[:, 0:8, 1:9], p[:, 2:10, 1:9], p[:, 1:9, 0:8], p[:, 1:9, 2:10]])


def _sensor(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.round(0.5 * x + 6.0 + rng.normal(0.0, 2.5, x.shape)), 0, 16)


def _shift(x: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    out[:, 2:, 2:] = x[:, :6, :6]
    return out


DOMAINS: dict[str, tuple[Callable[[np.ndarray, np.random.Generator], np.ndarray], str]] = {
    "original": (lambda x, rng: x, "the digits as they are"),
    "rot90": (lambda x, rng: np.rot90(x, 1, axes=(1, 2)), "rotated 90 degrees counter-clockwise"),
    "mirror": (lambda x, rng: x[:, :, ::-1], "mirrored left-right"),
    "invert": (lambda x, rng: 16 - x, "inverted contrast (16 - x)"),
    "thick": (lambda x, rng: _dilate(x), "thick strokes (grey dilation, 3x3 cross)"),
    "sensor": (_sensor, "cheap sensor: half gain, black level +6, Gaussian noise sigma 2.5"),
    "shift": (lambda x, rng: _shift(x), "translated 2 px down and 2 px right"),
}


def apply_domain(name: str, images: np.ndarray, part: str) -> np.ndarray:
    """uint8 [N, 8, 8] (0..16) -> the same images in domain `name`; noise seeded per domain and part."""
    seed = [TRAIN_SEED, list(DOMAINS).index(name), 0 if part == "train" else 1]
    out = DOMAINS[name][0](images.astype(np.int64), np.random.default_rng(seed))
    return np.ascontiguousarray(out).astype(np.uint8)


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.uint8)
    return tuple(train_test_split(images, digits.target.astype(np.int64), test_size=TEST_SIZE,
                                  stratify=digits.target, random_state=SPLIT_SEED))  # type: ignore[return-value]


def model_input(images: np.ndarray, model: str) -> np.ndarray:
    x = images.astype(np.float32) / 16.0
    return x.reshape(len(x), 64) if model == "mlp" else x.reshape(len(x), 8, 8, 1)


# -- models, plans, adapters ------------------------------------------------------------------
SPECS: dict[str, dict[str, Any]] = {
    "mlp": {"name": "digits-mlp", "input": {"name": "pixels", "shape": [1, 64]}, "layers": [
        {"name": "fc1", "type": "dense", "units": 64, "activation": "relu"},
        {"name": "fc2", "type": "dense", "units": 32, "activation": "relu"},
        {"name": "fc3", "type": "dense", "units": 10},
        {"name": "probs", "type": "softmax"},
    ]},
    "cnn": {"name": "digits-cnn", "input": {"name": "image", "shape": [1, 8, 8, 1]}, "layers": [
        {"name": "conv1", "type": "conv2d", "filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"name": "conv2", "type": "conv2d", "filters": 16, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"name": "pool", "type": "max_pool2d", "pool_size": 2},
        {"name": "flatten", "type": "flatten"},
        {"name": "fc", "type": "dense", "units": 10},
        {"name": "probs", "type": "softmax"},
    ]},
}

PLANS: dict[str, dict[str, Any]] = {
    "mlp": {"num_slots": 2, "alignment": 4096, "headroom": True, "gate_max": 1.0, "targets": [
        {"layer": "fc1", "kind": "lora", "max_rank": 8, "delta_ratio": 0.5},
        {"layer": "fc2", "kind": "bottleneck", "max_rank": 16, "delta_ratio": 4.0},
        {"layer": "fc3", "kind": "lora", "max_rank": 4, "delta_ratio": 0.5},
    ]},
    "cnn": {"num_slots": 2, "alignment": 4096, "headroom": True, "gate_max": 1.0, "targets": [
        {"layer": "conv1", "kind": "bottleneck", "max_rank": 8, "delta_ratio": 4.0},
        {"layer": "conv2", "kind": "lora", "max_rank": 8, "delta_ratio": 0.5},
        {"layer": "fc", "kind": "lora", "max_rank": 8, "delta_ratio": 0.5},
    ]},
}

#: (domain, kind) per model; every adapter uses all of the plan's slots of its kind.
ADAPTERS: dict[str, list[tuple[str, str]]] = {
    "mlp": [("rot90", "lora"), ("mirror", "lora"), ("shift", "lora"), ("thick", "lora"),
            ("invert", "bottleneck"), ("sensor", "bottleneck")],
    "cnn": [("rot90", "lora"), ("mirror", "lora"), ("shift", "lora"), ("invert", "lora"),
            ("sensor", "lora"), ("thick", "bottleneck")],
}

BASE_EPOCHS = {"mlp": 60, "cnn": 40}
ADAPTER_EPOCHS = {"mlp": 40, "cnn": 25}


def _shapes(spec: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Output shape (without batch) of every layer: enough for init and adapter widths."""
    shape: tuple[int, ...] = tuple(spec["input"]["shape"][1:])
    out = {}
    for layer in spec["layers"]:
        t = layer["type"]
        if t == "dense":
            shape = (*shape[:-1], layer["units"])
        elif t == "conv2d":
            shape = (*shape[:-1], layer["filters"])  # SAME padding, stride 1
        elif t == "max_pool2d":
            shape = (shape[0] // 2, shape[1] // 2, shape[2])
        elif t == "flatten":
            shape = (int(np.prod(shape)),)
        out[layer["name"]] = shape
    return out


def init_weights(spec: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """He-normal kernels in Keras layouts, zero biases."""
    weights = {}
    shape: tuple[int, ...] = tuple(spec["input"]["shape"][1:])
    shapes = _shapes(spec)
    for layer in spec["layers"]:
        name, t = layer["name"], layer["type"]
        if t == "dense":
            weights[f"{name}/kernel"] = rng.normal(0.0, np.sqrt(2.0 / shape[-1]), (shape[-1], layer["units"]))
            weights[f"{name}/bias"] = np.zeros(layer["units"])
        elif t == "conv2d":
            k = layer["kernel_size"]
            fan_in = k * k * shape[-1]
            weights[f"{name}/kernel"] = rng.normal(0.0, np.sqrt(2.0 / fan_in), (k, k, shape[-1], layer["filters"]))
            weights[f"{name}/bias"] = np.zeros(layer["filters"])
        shape = shapes[name]
    return weights


def fit(net: Net, x: np.ndarray, y: np.ndarray, params: dict[str, np.ndarray], epochs: int, lr: float,
        weight_decay: float, rng: np.random.Generator, adapter: dict[str, Any] | None = None,
        box: dict[str, float] | None = None) -> float:
    """Mini-batch AdamW with a cosine learning-rate schedule; returns the last epoch's mean loss."""
    opt = Adam(params, lr, weight_decay)
    want = "adapter" if adapter else "base"
    loss = float("nan")
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        lr_now = lr * 0.5 * (1.0 + np.cos(np.pi * epoch / epochs))
        losses = []
        for i in range(0, len(x), BATCH):
            batch = order[i : i + BATCH]
            loss_b, grads = net.loss_and_grads(x[batch], y[batch], adapter, want)
            opt.step(grads, lr_now)
            for k, bound in (box or {}).items():
                np.clip(params[k], -bound, bound, out=params[k])
            losses.append(loss_b)
        loss = float(np.mean(losses))
    return loss


def accuracy(net: Net, x: np.ndarray, y: np.ndarray, adapter: dict[str, Any] | None = None) -> float:
    return float((net.logits(x, adapter).argmax(1) == y).mean())


def train_base(model: str, x: np.ndarray, y: np.ndarray) -> Net:
    spec = SPECS[model]
    rng = np.random.default_rng([TRAIN_SEED, 1, ["mlp", "cnn"].index(model)])
    net = Net(spec["layers"], init_weights(spec, rng))
    fit(net, x, y, net.w, BASE_EPOCHS[model], lr=3e-3, weight_decay=1e-4, rng=rng)
    return net


def new_adapter(model: str, kind: str, rng: np.random.Generator) -> dict[str, Any]:
    """Standard initialisation: LoRA A ~ N(0, 1/K), B = 0 (alpha = rank, so scaling 1);
    bottleneck D ~ N(0, 1/C), U = 0, zero biases. The adapter starts as the identity."""
    spec = SPECS[model]
    shapes = _shapes(spec)
    inputs = {layer["name"]: prev for layer, prev in zip(spec["layers"], [None, *[l["name"] for l in spec["layers"]]])}
    targets = {}
    for t in PLANS[model]["targets"]:
        if t["kind"] != kind:
            continue
        name, r = t["layer"], t["max_rank"]
        layer = next(l for l in spec["layers"] if l["name"] == name)
        width = shapes[name][-1]
        if kind == "lora":
            cin = shapes[inputs[name]][-1] if inputs[name] else spec["input"]["shape"][-1]
            fan_in = cin * (layer["kernel_size"] ** 2 if layer["type"] == "conv2d" else 1)
            targets[name] = {"A": rng.normal(0.0, 1.0 / np.sqrt(fan_in), (r, fan_in)), "B": np.zeros((width, r)),
                             "scaling": 1.0}
        else:
            targets[name] = {"D": rng.normal(0.0, 1.0 / np.sqrt(width), (r, width)), "bias_D": np.zeros(r),
                             "U": np.zeros((width, r)), "bias_U": np.zeros(width)}
    return {"kind": kind, "targets": targets}


def calibration_images(x_train: np.ndarray, model: str) -> np.ndarray:
    """Calibration data: CALIBRATION_PER_DOMAIN seeded training images from every domain, so the
    base's activation ranges cover what the device will see (the shifted inputs too)."""
    rng = np.random.default_rng([TRAIN_SEED, 3])
    parts = [apply_domain(d, x_train, "train")[np.sort(rng.choice(len(x_train), CALIBRATION_PER_DOMAIN, replace=False))]
             for d in DOMAINS]
    return model_input(np.concatenate(parts), model)


def slot_limits(model: str) -> tuple[dict[str, dict[str, tuple[float, float]]], dict[str, float]]:
    """Compile the committed spec with its plan and calibration (export.compiler) and read back
    where the INT8 graph saturates (for nn.Net's `limits`) and each slot tensor's largest
    representable entry (for the adapter weights' box)."""
    from tinyswap.export.build import build_bundle
    from tinyswap.export.slot_plan import SlotPlan
    from tinyswap.export.spec import load_spec
    from tinyswap import Interpreter

    built = build_bundle(load_spec(HERE / f"{model}.json"), SlotPlan.load(HERE / f"{model}.plan.json"),
                         np.load(HERE / f"{model}.calibration.npy"))
    ranges = {}
    for d in Interpreter(model_content=built.data).get_tensor_details():
        scale, zp = d["quantization"]
        if d["dtype"] is np.int8 and scale > 0:
            ranges[d["name"]] = (scale * (-128 - zp), scale * (127 - zp))

    def both(a: str, b: str) -> tuple[float, float]:
        return max(ranges[a][0], ranges[b][0]), min(ranges[a][1], ranges[b][1])

    limits: dict[str, dict[str, tuple[float, float]]] = {}
    for layer in SPECS[model]["layers"]:
        if layer["type"] in ("dense", "conv2d"):
            limits[layer["name"]] = {"out": ranges[layer["name"]]}
    for t in PLANS[model]["targets"]:
        name, lim = t["layer"], limits.setdefault(t["layer"], {})
        if t["kind"] == "lora":
            lim.update(pre=ranges[f"{name}/pre"], u=both(f"slot0/{name}/u", f"slot0/{name}/gated"),
                       sum=ranges[f"slot0/{name}/sum"])
        else:
            lim.update(d=ranges[f"slot0/{name}/d"], bn_u=both(f"slot0/{name}/u", f"slot0/{name}/gated"),
                       adapted=ranges[f"{name}/adapted"])
    boxes = {f"{t['layer']}/{t['role']}": BOX * 127 * t["scales"][0]
             for t in built.slotmap["slots"][0]["tensors"] if t["role"] in ("A", "B", "D", "U")}
    return limits, boxes


def train_adapter(net: Net, model: str, domain: str, kind: str, x: np.ndarray, y: np.ndarray,
                  boxes: dict[str, float]) -> dict[str, Any]:
    """Base frozen; the adapter's weights are kept inside their slot tensors' int8 ranges (box)."""
    rng = np.random.default_rng([TRAIN_SEED, 2, ["mlp", "cnn"].index(model), list(DOMAINS).index(domain)])
    adapter = new_adapter(model, kind, rng)
    params = {f"{layer}/{role}": v for layer, t in adapter["targets"].items() for role, v in t.items() if role != "scaling"}
    box = {k: boxes[k] for k in params if k in boxes}
    fit(net, x, y, params, ADAPTER_EPOCHS[model], lr=1e-2, weight_decay=1e-3, rng=rng, adapter=adapter, box=box)
    return adapter


# -- files -------------------------------------------------------------------------------------
def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def save_weights(path: Path, weights: dict[str, np.ndarray]) -> None:
    np.savez(path, **{k: np.asarray(v, np.float32) for k, v in sorted(weights.items())})


def save_adapter(out: Path, model: str, domain: str, adapter: dict[str, Any], acc: float, base_acc: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    kind = adapter["kind"]
    targets, arrays = {}, {}
    for layer, t in adapter["targets"].items():
        if kind == "lora":
            r = t["A"].shape[0]
            targets[layer] = {"rank": r, "alpha": float(r * t["scaling"])}
            arrays[f"{layer}/A"], arrays[f"{layer}/B"] = t["A"], t["B"]
        else:
            targets[layer] = {"rank": t["D"].shape[0]}
            for role in ("D", "bias_D", "U", "bias_U"):
                arrays[f"{layer}/{role}"] = t[role]
    write_json(out / "adapter.json", {
        "name": f"{model}-{domain}", "version": "1.0.0", "sequence": 1, "kind": kind,
        "tags": {"task": "digits", "model": model, "domain": domain},
        "accuracy": round(acc, 4),
        "domain": DOMAINS[domain][1],
        "base_accuracy": round(base_acc, 4),
        "note": "accuracy: float, this adapter on the domain's test split (models/digits/digits_test.npz); "
                "base_accuracy: the float base model on the same images",
        "targets": targets,
    })
    np.savez(out / "adapter.npz", **{k: np.asarray(v, np.float32) for k, v in sorted(arrays.items())})


def load_adapter_arrays(path: Path) -> dict[str, Any]:
    config = json.loads((path / "adapter.json").read_text())
    with np.load(path / "adapter.npz") as npz:
        arrays = {k: npz[k].astype(np.float64) for k in npz.files}
    targets = {}
    for layer, t in config["targets"].items():
        if config["kind"] == "lora":
            targets[layer] = {"A": arrays[f"{layer}/A"], "B": arrays[f"{layer}/B"],
                              "scaling": float(t.get("alpha", t["rank"])) / t["rank"]}
        else:
            targets[layer] = {r: arrays[f"{layer}/{r}"] for r in ("D", "bias_D", "U", "bias_U")}
    return {"kind": config["kind"], "targets": targets}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--retrain", action="store_true", help="retrain the base models and every adapter")
    parser.add_argument("--retrain-adapters", action="store_true", help="keep the bases, retrain every adapter")
    parser.add_argument("--models", default="mlp,cnn", help="comma-separated subset of mlp,cnn")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    x_train, x_test, y_train, y_test = load_split()
    # Evaluation data: the test split in every domain, uint8 0..16, for tests and the demo.
    test_sets = {d: apply_domain(d, x_test, "test") for d in DOMAINS}
    np.savez_compressed(HERE / "digits_test.npz", labels=y_test.astype(np.uint8), **test_sets)
    log = {}
    for model in args.models.split(","):
        spec = SPECS[model]
        write_json(HERE / f"{model}.json", spec)
        write_json(HERE / f"{model}.plan.json", PLANS[model])
        weights_path = HERE / f"{model}.npz"
        t0 = time.perf_counter()
        if args.retrain or not weights_path.exists():
            net = train_base(model, model_input(x_train, model), y_train)
            save_weights(weights_path, net.w)
            print(f"{model}: trained base in {time.perf_counter() - t0:.1f} s")
        with np.load(weights_path) as npz:
            net = Net(spec["layers"], {k: npz[k] for k in npz.files})  # the float32 weights as committed
        np.save(HERE / f"{model}.calibration.npy", calibration_images(x_train, model))
        limits, boxes = slot_limits(model)
        print(f"{model}: float test accuracy {accuracy(net, model_input(x_test, model), y_test):.4f}")
        for domain, kind in ADAPTERS[model]:
            out = HERE / "adapters" / model / domain
            xs_train = model_input(apply_domain(domain, x_train, "train"), model)
            xs_test = model_input(test_sets[domain], model)
            base_acc = accuracy(net, xs_test, y_test)
            t1 = time.perf_counter()
            if args.retrain or args.retrain_adapters or not (out / "adapter.npz").exists():
                net.limits, net.penalty = limits, PENALTY
                adapter = train_adapter(net, model, domain, kind, xs_train, y_train, boxes)
                net.limits, net.penalty = {}, 0.0
                for t in adapter["targets"].values():  # record the accuracy of what is saved (float32)
                    t.update({k: v.astype(np.float32).astype(np.float64) for k, v in t.items() if k != "scaling"})
                save_adapter(out, model, domain, adapter, accuracy(net, xs_test, y_test, adapter), base_acc)
            adapter = load_adapter_arrays(out)  # as committed (float32)
            acc = accuracy(net, xs_test, y_test, adapter)
            print(f"{model}/{domain} ({kind}): float base {base_acc:.4f} -> adapted {acc:.4f} "
                  f"[{time.perf_counter() - t1:.1f} s]")
        log[model] = round(time.perf_counter() - t0, 1)
    print(f"done in {time.perf_counter() - started:.1f} s ({log})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
