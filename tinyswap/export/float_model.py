"""Float reference of a `ModelSpec`: shape inference and a NumPy forward pass.

Used to calibrate activation ranges for quantization and as the float side of fidelity
reports. Float64 throughout; TensorFlow's SAME padding convention (extra pad at the end).
"""

from __future__ import annotations

import math

import numpy as np

from tinyswap.export.spec import LayerSpec, ModelSpec, SpecError


def conv_out_size(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    effective = (kernel - 1) * dilation + 1
    if padding == "same":
        return math.ceil(size / stride)
    return (size - effective) // stride + 1


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow SAME: total = max((out - 1) * stride + effective - size, 0), before = total // 2."""
    effective = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _layer_shape(layer: LayerSpec, ins: list[tuple[int, ...]]) -> tuple[int, ...]:
    where = f"layer {layer.name!r}"
    x = ins[0]
    if layer.type == "dense":
        return (*x[:-1], layer.units)  # type: ignore[return-value]
    if layer.type in ("conv2d", "depthwise_conv2d", "max_pool2d", "avg_pool2d"):
        if len(x) != 4:
            raise SpecError(f"{where}: needs a 4-D [batch, h, w, c] input, got {x}")
        kh, kw = layer.kernel_size
        sh, sw = layer.strides
        dh, dw = layer.dilation
        pad = layer.padding if layer.type in ("conv2d", "depthwise_conv2d") else layer.padding
        oh = conv_out_size(x[1], kh, sh, dh, pad)
        ow = conv_out_size(x[2], kw, sw, dw, pad)
        if oh < 1 or ow < 1:
            raise SpecError(f"{where}: a {kh}x{kw} window does not fit the {x[1]}x{x[2]} input")
        c = {"conv2d": layer.filters, "depthwise_conv2d": x[3] * layer.depth_multiplier}.get(layer.type, x[3])
        return (x[0], oh, ow, c)  # type: ignore[return-value]
    if layer.type in ("global_avg_pool2d", "global_max_pool2d"):
        if len(x) != 4:
            raise SpecError(f"{where}: needs a 4-D input, got {x}")
        return (x[0], x[3])
    if layer.type == "global_avg_pool1d":
        if len(x) != 3:
            raise SpecError(f"{where}: needs a 3-D [batch, steps, channels] input, got {x}")
        return (x[0], x[2])
    if layer.type == "pad":
        if len(x) != 4:
            raise SpecError(f"{where}: needs a 4-D [batch, h, w, c] input, got {x}")
        (top, bottom), (left, right) = layer.paddings
        return (x[0], x[1] + top + bottom, x[2] + left + right, x[3])
    if layer.type == "concat":
        axis = layer.axis % len(x)
        if axis == 0 or any(len(s) != len(x) or s[:axis] + s[axis + 1:] != x[:axis] + x[axis + 1:] for s in ins):
            raise SpecError(f"{where}: cannot concatenate shapes {ins} on axis {layer.axis}")
        return (*x[:axis], sum(s[axis] for s in ins), *x[axis + 1:])
    if layer.type == "flatten":
        return (x[0], int(np.prod(x[1:])))
    if layer.type == "reshape":
        assert layer.shape is not None
        if int(np.prod(layer.shape)) != int(np.prod(x[1:])):
            raise SpecError(f"{where}: cannot reshape {x[1:]} into {layer.shape}")
        return (x[0], *layer.shape)
    if layer.type in ("add", "sub", "mul"):
        if ins[0] != ins[1]:
            raise SpecError(f"{where}: adds shapes {ins[0]} and {ins[1]}; they must be equal")
        return x
    return x  # affine and the activations


def infer_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    shapes = {spec.input_name: tuple(spec.input_shape)}
    for layer in spec.layers:
        shapes[layer.name] = _layer_shape(layer, [shapes[i] for i in layer.inputs])
    return shapes


def hard_swish(x: np.ndarray) -> np.ndarray:
    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


def activate(x: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        return np.maximum(x, 0.0)
    if activation == "relu6":
        return np.clip(x, 0.0, 6.0)
    return x


def _windows(x: np.ndarray, layer: LayerSpec, pad_value: float = 0.0) -> np.ndarray:
    """[batch, oh, ow, kh, kw, c] patches of x (NHWC) with the layer's padding applied."""
    kh, kw = layer.kernel_size
    sh, sw = layer.strides
    dh, dw = layer.dilation
    if layer.padding == "same":
        ph = same_padding(x.shape[1], kh, sh, dh)
        pw = same_padding(x.shape[2], kw, sw, dw)
        x = np.pad(x, ((0, 0), ph, pw, (0, 0)), constant_values=pad_value)
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    win = np.lib.stride_tricks.sliding_window_view(x, (eh, ew), axis=(1, 2))  # b, oh', ow', c, eh, ew
    win = win[:, ::sh, ::sw, :, ::dh, ::dw]
    return np.moveaxis(win, 3, -1)  # b, oh, ow, kh, kw, c


def layer_forward(layer: LayerSpec, spec: ModelSpec, ins: list[np.ndarray], pre_activation: bool = False) -> np.ndarray:
    """One layer in float64. `pre_activation=True` returns the value before the activation."""
    x = ins[0]
    if layer.type == "dense":
        y = x @ spec.kernel(layer.name).astype(np.float64)
    elif layer.type == "conv2d":
        k = spec.kernel(layer.name).astype(np.float64)  # kh, kw, cin, cout
        y = np.tensordot(_windows(x, layer), k, axes=([3, 4, 5], [0, 1, 2]))
    elif layer.type == "depthwise_conv2d":
        k = spec.kernel(layer.name).astype(np.float64)  # kh, kw, cin, m
        win = _windows(x, layer)  # b, oh, ow, kh, kw, cin
        y = np.einsum("bhwijc,ijcm->bhwcm", win, k).reshape(*win.shape[:3], -1)
    elif layer.type == "max_pool2d":
        return _windows(x, layer, -np.inf).max(axis=(3, 4))
    elif layer.type == "avg_pool2d":
        win = _windows(x, layer, np.nan)
        return np.nanmean(win, axis=(3, 4))  # TF averages over the in-bounds taps only
    elif layer.type == "global_avg_pool2d":
        return x.mean(axis=(1, 2))
    elif layer.type == "global_max_pool2d":
        return x.max(axis=(1, 2))
    elif layer.type == "global_avg_pool1d":
        return x.mean(axis=1)
    elif layer.type == "pad":
        return np.pad(x, ((0, 0), *layer.paddings, (0, 0)))
    elif layer.type == "concat":
        return np.concatenate(ins, axis=layer.axis)
    elif layer.type == "sub":
        return ins[0] - ins[1]
    elif layer.type == "mul":
        return ins[0] * ins[1]
    elif layer.type == "affine":
        return x * spec.weights[f"{layer.name}/scale"].astype(np.float64) + spec.weights[f"{layer.name}/offset"]
    elif layer.type == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    elif layer.type == "tanh":
        return np.tanh(x)
    elif layer.type == "hard_swish":
        return hard_swish(x)
    elif layer.type == "leaky_relu":
        return np.where(x >= 0, x, layer.alpha * x)
    elif layer.type in ("flatten", "reshape"):
        return x.reshape(x.shape[0], *(layer.shape or (-1,)))
    elif layer.type == "add":
        y = ins[0] + ins[1]
    elif layer.type == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    elif layer.type == "relu":
        return np.maximum(x, 0.0)
    elif layer.type == "relu6":
        return np.clip(x, 0.0, 6.0)
    else:  # pragma: no cover - parse_layer refuses unknown types
        raise SpecError(f"layer {layer.name!r}: no float implementation of {layer.type}")
    if layer.weighted and layer.use_bias:
        y = y + spec.bias(layer.name).astype(np.float64)
    return y if pre_activation else activate(y, layer.activation)


def forward(spec: ModelSpec, x: np.ndarray, capture_pre_activation: bool = False) -> dict[str, np.ndarray]:
    """Every layer's float64 output (and `<name>:pre` before its activation, if asked)."""
    values: dict[str, np.ndarray] = {spec.input_name: np.asarray(x, dtype=np.float64)}
    for layer in spec.layers:
        ins = [values[i] for i in layer.inputs]
        if capture_pre_activation and layer.weighted:
            pre = layer_forward(layer, spec, ins, pre_activation=True)
            values[f"{layer.name}:pre"] = pre
            values[layer.name] = activate(pre, layer.activation)
        else:
            values[layer.name] = layer_forward(layer, spec, ins)
    return values
