"""Read a Keras model into a `ModelSpec` (needs the `training` extra: tensorflow-cpu).

Supported layers: InputLayer, Dense, Conv2D, DepthwiseConv2D, MaxPooling2D,
AveragePooling2D, GlobalAveragePooling2D, Flatten, Reshape, Add, Softmax, ReLU (max_value
None or 6) and Activation("relu" | "relu6" | "softmax" | "linear"). Anything else raises a
`SpecError` naming the layer and its class. TensorFlow is imported only here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyswap.export.spec import ModelSpec, SpecError, parse_spec

_ACTIVATIONS = {"relu": "relu", "relu6": "relu6", "linear": "none", None: "none"}


def _activation(layer: Any) -> str:
    fn = getattr(layer, "activation", None)
    name = getattr(fn, "__name__", fn)
    if name not in _ACTIVATIONS:
        raise SpecError(f"layer {layer.name!r}: activation {name!r} is not supported")
    return _ACTIVATIONS[name]


def _inputs(layer: Any) -> list[str]:
    tensors = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
    return [t._keras_history.operation.name for t in tensors]


def spec_from_keras(model: Any, batch: int = 1) -> ModelSpec:
    layers: list[dict[str, Any]] = []
    weights: dict[str, np.ndarray] = {}
    input_name, input_shape = None, None
    for layer in model.layers:
        kind = type(layer).__name__
        name = layer.name
        if kind == "InputLayer":
            input_name = name
            input_shape = [batch, *[int(d) for d in layer.batch_shape[1:]]] if hasattr(layer, "batch_shape") else None
            continue
        entry: dict[str, Any] = {"name": name, "inputs": _inputs(layer)}
        if kind == "Dense":
            entry.update(type="dense", units=int(layer.units), activation=_activation(layer))
        elif kind in ("Conv2D", "DepthwiseConv2D"):
            entry.update(type="conv2d" if kind == "Conv2D" else "depthwise_conv2d",
                         kernel_size=list(layer.kernel_size), strides=list(layer.strides),
                         dilation_rate=list(layer.dilation_rate), padding=layer.padding, activation=_activation(layer))
            if kind == "Conv2D":
                entry["filters"] = int(layer.filters)
            else:
                entry["depth_multiplier"] = int(layer.depth_multiplier)
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            entry.update(type="max_pool2d" if kind == "MaxPooling2D" else "avg_pool2d",
                         pool_size=list(layer.pool_size), strides=list(layer.strides), padding=layer.padding)
        elif kind == "GlobalAveragePooling2D":
            entry["type"] = "global_avg_pool2d"
        elif kind == "Flatten":
            entry["type"] = "flatten"
        elif kind == "Reshape":
            entry.update(type="reshape", shape=[int(d) for d in layer.target_shape])
        elif kind == "Add":
            entry["type"] = "add"
        elif kind == "Softmax":
            entry["type"] = "softmax"
        elif kind == "ReLU":
            if layer.max_value not in (None, 6, 6.0):
                raise SpecError(f"layer {name!r}: ReLU(max_value={layer.max_value}) is not supported")
            entry["type"] = "relu6" if layer.max_value else "relu"
        elif kind == "Activation":
            fn = getattr(layer.activation, "__name__", layer.activation)
            if fn == "softmax":
                entry["type"] = "softmax"
            elif fn in ("relu", "relu6"):
                entry["type"] = fn
            else:
                raise SpecError(f"layer {name!r}: Activation({fn!r}) is not supported")
        else:
            raise SpecError(f"layer {name!r}: Keras {kind} is not supported")
        if entry.get("type") in ("dense", "conv2d", "depthwise_conv2d"):
            params = layer.get_weights()
            kernel = params[0]
            weights[f"{name}/kernel"] = np.asarray(kernel, np.float32)
            if getattr(layer, "use_bias", False):
                weights[f"{name}/bias"] = np.asarray(params[1], np.float32)
            else:
                entry["use_bias"] = False
        layers.append(entry)
    if input_name is None or input_shape is None:
        raise SpecError("the Keras model has no InputLayer with a known shape")
    return parse_spec({"name": model.name, "input": {"name": input_name, "shape": input_shape}, "layers": layers},
                      weights)
