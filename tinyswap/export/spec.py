"""The float model description the compiler reads: a JSON spec plus an `.npz` of weights.

A spec is a small layer graph. Each layer names its inputs (default: the previous layer), so
residual connections are explicit. Weights are float32 arrays in the `.npz`, in Keras layouts:
Dense kernel `[in, units]`, Conv2D kernel `[kh, kw, in, out]`, DepthwiseConv2D kernel
`[kh, kw, in, multiplier]`, biases `[units]`.

```json
{
  "name": "mlp",
  "input": {"name": "x", "shape": [1, 64]},
  "layers": [
    {"name": "fc1", "type": "dense", "units": 128, "activation": "relu"},
    {"name": "fc2", "type": "dense", "units": 10},
    {"name": "probs", "type": "softmax"}
  ]
}
```

Weights: `fc1/kernel`, `fc1/bias`, ... (`<layer>/kernel`, `<layer>/bias`).

Layer types beyond the weighted ones: pooling (`max_pool2d`, `avg_pool2d`, `global_avg_pool2d`,
`global_avg_pool1d` over the time axis of `[batch, steps, channels]`, `global_max_pool2d`),
`flatten`, `reshape`, element-wise `add`, `sub`, `mul` (two inputs of one shape), `concat`
(two or more inputs, `axis`, default the last), `pad` (zeros; `paddings` `[[top, bottom],
[left, right]]` of a 4-D input), `affine` (`y = x * scale + offset` per channel of the last
axis: a BatchNormalization with no layer to fold into, Rescaling, Normalization; weights
`<layer>/scale` and `<layer>/offset`) and the activations `softmax`, `relu`, `relu6`,
`sigmoid`, `tanh`, `hard_swish` and `leaky_relu` (`alpha`, default 0.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyswap.export.errors import SpecError
from tinyswap.files import read_json, read_npz


ACTIVATIONS = ("none", "relu", "relu6")
LAYER_TYPES = (
    "dense", "conv2d", "depthwise_conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool2d",
    "flatten", "reshape", "add", "softmax", "relu", "relu6",
    "global_avg_pool1d", "global_max_pool2d", "sub", "mul", "concat", "pad", "affine",
    "sigmoid", "tanh", "hard_swish", "leaky_relu",
)
BINARY_TYPES = ("add", "sub", "mul")  # two inputs of one shape
_WEIGHTED = ("dense", "conv2d", "depthwise_conv2d")


@dataclass(frozen=True)
class LayerSpec:
    name: str
    type: str
    inputs: tuple[str, ...]
    units: int | None = None  # dense
    filters: int | None = None  # conv2d
    depth_multiplier: int = 1  # depthwise_conv2d
    kernel_size: tuple[int, int] = (1, 1)  # conv and pooling window
    strides: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: str = "valid"  # "same" | "valid"
    activation: str = "none"
    use_bias: bool = True
    shape: tuple[int, ...] | None = None  # reshape target without the batch dimension
    alpha: float = 0.2  # leaky_relu: the slope below zero
    axis: int = -1  # concat
    paddings: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))  # pad: (top, bottom), (left, right)

    @property
    def weighted(self) -> bool:
        return self.type in _WEIGHTED


@dataclass(frozen=True)
class ModelSpec:
    name: str
    input_name: str
    input_shape: tuple[int, ...]  # with the batch dimension first
    layers: tuple[LayerSpec, ...]
    weights: dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise SpecError(f"no layer named {name!r}; layers are {[l.name for l in self.layers]}")

    @property
    def output(self) -> str:
        return self.layers[-1].name

    def kernel(self, layer: str) -> np.ndarray:
        return self.weights[f"{layer}/kernel"]

    def bias(self, layer: str) -> np.ndarray | None:
        return self.weights.get(f"{layer}/bias")


def _pair(value: Any, where: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
        raise SpecError(f"{where}: expected a positive int or a pair of them, got {value!r}")
    return int(value[0]), int(value[1])


def _positive_int(raw: dict, key: str, where: str) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SpecError(f"{where}: {key!r} must be a positive integer, got {value!r}")
    return value


def parse_layer(raw: Any, index: int, previous: str) -> LayerSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"layers[{index}]: expected an object, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise SpecError(f"layers[{index}]: 'name' must be a non-empty string without '/', got {name!r}")
    where = f"layer {name!r}"
    kind = raw.get("type")
    if kind not in LAYER_TYPES:
        raise SpecError(f"{where}: unknown type {kind!r}; known: {', '.join(LAYER_TYPES)}")
    inputs = raw.get("inputs", [previous])
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise SpecError(f"{where}: 'inputs' must be a list of layer names, got {inputs!r}")
    if kind == "concat":
        if len(inputs) < 2:
            raise SpecError(f"{where}: a concat layer takes two or more inputs, got {inputs}")
    elif len(inputs) != (2 if kind in BINARY_TYPES else 1):
        raise SpecError(f"{where}: a {kind} layer takes {2 if kind in BINARY_TYPES else 1} inputs, got {inputs}")
    activation = raw.get("activation", "none")
    if activation not in ACTIVATIONS:
        raise SpecError(f"{where}: activation {activation!r} is not one of {ACTIVATIONS}")
    padding = raw.get("padding", "valid")
    if padding not in ("same", "valid"):
        raise SpecError(f"{where}: padding {padding!r} must be 'same' or 'valid'")
    known = {"name", "type", "inputs", "units", "filters", "depth_multiplier", "kernel_size", "pool_size",
             "strides", "dilation_rate", "padding", "activation", "use_bias", "shape", "alpha", "axis", "paddings"}
    unknown = set(raw) - known
    if unknown:
        raise SpecError(f"{where}: unknown fields {sorted(unknown)}")
    args: dict[str, Any] = dict(name=name, type=kind, inputs=tuple(inputs), activation=activation, padding=padding)
    if kind == "dense":
        args["units"] = _positive_int(raw, "units", where)
    if kind == "conv2d":
        args["filters"] = _positive_int(raw, "filters", where)
    if kind == "depthwise_conv2d":
        args["depth_multiplier"] = _positive_int({"d": raw.get("depth_multiplier", 1)}, "d", where)
    if kind in ("conv2d", "depthwise_conv2d"):
        args["kernel_size"] = _pair(raw.get("kernel_size"), f"{where} kernel_size")
        args["dilation"] = _pair(raw.get("dilation_rate", 1), f"{where} dilation_rate")
    if kind in ("max_pool2d", "avg_pool2d"):
        args["kernel_size"] = _pair(raw.get("pool_size", 2), f"{where} pool_size")
        args["strides"] = _pair(raw.get("strides", raw.get("pool_size", 2)), f"{where} strides")
    elif kind in ("conv2d", "depthwise_conv2d"):
        args["strides"] = _pair(raw.get("strides", 1), f"{where} strides")
    if kind in _WEIGHTED:
        use_bias = raw.get("use_bias", True)
        if not isinstance(use_bias, bool):
            raise SpecError(f"{where}: use_bias must be true or false")
        args["use_bias"] = use_bias
    if kind == "reshape":
        shape = raw.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 1 for d in shape):
            raise SpecError(f"{where}: 'shape' must list positive dimensions (without batch), got {shape!r}")
        args["shape"] = tuple(shape)
    if kind == "leaky_relu":
        alpha = raw.get("alpha", 0.2)
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not np.isfinite(alpha):
            raise SpecError(f"{where}: 'alpha' must be a finite number, got {alpha!r}")
        args["alpha"] = float(alpha)
    if kind == "concat":
        axis = raw.get("axis", -1)
        if not isinstance(axis, int) or isinstance(axis, bool) or axis == 0:
            raise SpecError(f"{where}: 'axis' must be a non-batch axis (an int other than 0), got {axis!r}")
        args["axis"] = axis
    if kind == "pad":
        pads = raw.get("paddings")
        if (not isinstance(pads, list) or len(pads) != 2
                or not all(isinstance(p, list) and len(p) == 2 for p in pads)
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for p in pads for v in p)):
            raise SpecError(f"{where}: 'paddings' must be [[top, bottom], [left, right]] of non-negative ints, "
                            f"got {pads!r}")
        args["paddings"] = (tuple(pads[0]), tuple(pads[1]))
    return LayerSpec(**args)


def parse_spec(raw: Any, weights: dict[str, np.ndarray]) -> ModelSpec:
    if not isinstance(raw, dict):
        raise SpecError("a model spec must be a JSON object")
    name = raw.get("name", "model")
    inp = raw.get("input")
    if not isinstance(inp, dict) or not isinstance(inp.get("shape"), list) or not inp["shape"]:
        raise SpecError("'input' must be an object with a non-empty 'shape' list (batch first)")
    shape = inp["shape"]
    if not all(isinstance(d, int) and d >= 1 for d in shape):
        raise SpecError(f"input shape {shape} must hold positive integers")
    input_name = inp.get("name", "input")
    layers_raw = raw.get("layers")
    if not isinstance(layers_raw, list) or not layers_raw:
        raise SpecError("'layers' must be a non-empty list")
    layers: list[LayerSpec] = []
    seen = {input_name}
    previous = input_name
    for i, lr in enumerate(layers_raw):
        layer = parse_layer(lr, i, previous)
        if layer.name in seen:
            raise SpecError(f"layer name {layer.name!r} is used twice")
        for src in layer.inputs:
            if src not in seen:
                raise SpecError(f"layer {layer.name!r} reads {src!r}, which is not an earlier layer or the input")
        seen.add(layer.name)
        layers.append(layer)
        previous = layer.name
    spec = ModelSpec(str(name), input_name, tuple(shape), tuple(layers), dict(weights))
    _check_weights(spec)
    return spec


def _check_weights(spec: ModelSpec) -> None:
    from tinyswap.export.float_model import infer_shapes

    shapes = infer_shapes(spec)  # raises SpecError on impossible shapes
    expected_keys = set()
    for layer in spec.layers:
        if layer.type == "affine":
            channels = shapes[layer.inputs[0]][-1]
            for key in (f"{layer.name}/scale", f"{layer.name}/offset"):
                expected_keys.add(key)
                _check_array(spec, key, (channels,))
            continue
        if not layer.weighted:
            continue
        in_shape = shapes[layer.inputs[0]]
        cin = in_shape[-1]
        kh, kw = layer.kernel_size
        if layer.type == "dense":
            kshape: tuple[int, ...] = (cin, layer.units)  # type: ignore[assignment]
            cout = layer.units
        elif layer.type == "conv2d":
            kshape, cout = (kh, kw, cin, layer.filters), layer.filters  # type: ignore[assignment]
        else:
            kshape, cout = (kh, kw, cin, layer.depth_multiplier), cin * layer.depth_multiplier
        for key, want in ((f"{layer.name}/kernel", kshape), (f"{layer.name}/bias", (cout,))):
            if key.endswith("bias") and not layer.use_bias:
                continue
            expected_keys.add(key)
            _check_array(spec, key, want)
    extra = set(spec.weights) - expected_keys
    if extra:
        raise SpecError(f"weights file has arrays no layer uses: {sorted(extra)}")


def _check_array(spec: ModelSpec, key: str, want: tuple[int, ...]) -> None:
    if key not in spec.weights:
        raise SpecError(f"weights file lacks {key!r} (shape {want})")
    arr = spec.weights[key]
    if tuple(arr.shape) != tuple(want):
        raise SpecError(f"{key!r} has shape {tuple(arr.shape)}, layer needs {want}")
    if not np.all(np.isfinite(arr)):
        raise SpecError(f"{key!r} holds NaN or infinity")


def load_spec(spec_path: str | Path, weights_path: str | Path | None = None) -> ModelSpec:
    """Read `spec.json` and its weights (default: the `.npz` of the same stem beside it)."""
    spec_path = Path(spec_path)
    raw = read_json(spec_path, "spec")
    weights_path = Path(weights_path) if weights_path else spec_path.with_suffix(".npz")
    weights = {k: np.asarray(v, dtype=np.float32) for k, v in read_npz(weights_path, "weights").items()}
    return parse_spec(raw, weights)
