"""Read a Keras model into a `ModelSpec` (needs the `training` extra: tensorflow-cpu).

Takes Sequential and functional models as users write them. Spec layers keep the Keras layer
names, so a slot plan names Keras layers; helper layers the lowering adds are named
`<keras name>__<role>`. How each Keras layer is taken:

- Dense, Conv2D, DepthwiseConv2D: one weighted layer. A relu/relu6 activation is fused into it;
  any other supported activation becomes a layer of its own after it.
- SeparableConv2D: `<name>__depthwise` (depthwise_conv2d) then `<name>` (1x1 conv2d, its bias
  and activation), as the TensorFlow converter emits it.
- Conv1D, MaxPooling1D, AveragePooling1D, ZeroPadding1D, GlobalMaxPooling1D: the TensorFlow
  converter's lowering, `[batch, steps, c]` viewed as `[batch, 1, steps, c]` (a reshape where
  it writes EXPAND_DIMS: the same bytes), the 2-D operator with a `1 x k` window, and a
  reshape back. GlobalAveragePooling1D: MEAN over the steps axis.
- BatchNormalization: folded into the weighted layer before it (kernel and bias rescaled per
  output channel) when that layer has no activation, nothing else reads it and it takes no
  LoRA slot (`keep_unfolded`); otherwise a per-channel `affine` layer. Rescaling and Normalization: `affine` layers.
- ZeroPadding2D: `pad`. GlobalMaxPooling2D: `global_max_pool2d`. Add, Subtract, Multiply,
  Concatenate: `add`, `sub`, `mul` (chained over more than two inputs), `concat`.
- Activation, ReLU, LeakyReLU, Softmax: relu, relu6, sigmoid, tanh, hard_swish (Keras
  `hard_silu`), leaky_relu, softmax layers; a ReLU straight after a weighted layer with no
  activation of its own, read by nothing else, is fused into it.
- Dropout, SpatialDropout, GaussianNoise, GaussianDropout, AlphaDropout, ActivityRegularization,
  Identity: inference no-ops, dropped.

Every layer the import cannot take is listed in one `KerasImportError`, each with what to do.
A layer with LoRA enabled (`layer.enable_lora(rank)`) is read with its frozen base kernel and
its LoRA returned separately (`KerasImport.lora`), never merged silently.
TensorFlow is imported by the caller (the model object is Keras'); this module only reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection

import numpy as np

from tinyswap.export.adapter_source import Lora
from tinyswap.export.errors import KerasImportError
from tinyswap.export.folding import batch_norm_affine, fold_into
from tinyswap.export.spec import ModelSpec, parse_spec


#: Keras activation function name -> spec activation layer type ("none" for linear).
_ACTIVATION_TYPES = {
    "linear": "none", "relu": "relu", "relu6": "relu6", "softmax": "softmax", "sigmoid": "sigmoid",
    "tanh": "tanh", "hard_swish": "hard_swish", "hard_silu": "hard_swish", "leaky_relu": "leaky_relu",
}
_FUSABLE = ("relu", "relu6")
_NO_OPS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
           "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity")
_WEIGHTED = ("dense", "conv2d", "depthwise_conv2d")
_KERAS_LEAKY_DEFAULT = 0.2  # keras.activations.leaky_relu's default negative_slope
_ADVICE = {
    "Conv2DTranspose": "replace it with UpSampling2D + Conv2D, or export the int8 .tflite the converter makes",
    "LSTM": "recurrent layers have no int8 TFLite Micro kernel here; use Conv1D over time",
    "GRU": "recurrent layers have no int8 TFLite Micro kernel here; use Conv1D over time",
    "SimpleRNN": "recurrent layers have no int8 TFLite Micro kernel here; use Conv1D over time",
    "Embedding": "embed outside the model and feed the vectors as the input",
    "LayerNormalization": "use BatchNormalization (folded into the layer before it) instead",
    "Lambda": "write the computation with built-in Keras layers",
}


@dataclass(frozen=True)
class KerasImport:
    """The spec, and the LoRA of every layer with LoRA enabled (layer -> factors, `adapter_source.Lora`)."""

    spec: ModelSpec
    lora: dict[str, Lora]


def _class(layer: Any) -> str:
    return type(layer).__name__


def _activation_name(fn: Any) -> str:
    return str(getattr(fn, "__name__", fn))


class _Reader:
    def __init__(self, model: Any, batch: int, keep_unfolded: frozenset[str]) -> None:
        self.model = model
        self.batch = batch
        self.keep_unfolded = keep_unfolded
        self.entries: list[dict[str, Any]] = []
        self.weights: dict[str, np.ndarray] = {}
        self.lora: dict[str, Lora] = {}
        self.alias: dict[str, str] = {}  # Keras name -> the spec layer that holds its output
        self.problems: list[str] = []
        self.consumers: dict[str, int] = {}
        self.nodes: dict[str, Any] = {}  # layer name -> its call in this model's graph

    # -- graph ----------------------------------------------------------------------------
    def source_names(self, layer: Any) -> list[str]:
        return [t._keras_history.operation.name for t in self.nodes[layer.name].input_tensors]

    def resolve(self, name: str) -> str:
        return self.alias.get(name, name)

    def shape(self, layer: Any, which: str = "output") -> tuple[int, ...]:
        node = self.nodes[layer.name]
        t = (node.output_tensors if which == "output" else node.input_tensors)[0]
        return (self.batch, *(int(d) for d in t.shape[1:]))

    def entry(self, layer: Any, inputs: list[str], **fields: Any) -> dict[str, Any]:
        e = {"inputs": inputs, **fields}
        self.entries.append(e)
        return e

    def produced(self, keras_name: str, spec_name: str) -> None:
        if spec_name != keras_name:
            self.alias[keras_name] = spec_name

    def unsupported(self, layer: Any, advice: str) -> None:
        self.problems.append(f"{layer.name} ({_class(layer)}): {advice}")

    # -- helpers for lowerings -------------------------------------------------------------
    def view(self, name: str, source: str, shape: tuple[int, ...]) -> str:
        self.entry(None, [source], name=name, type="reshape", shape=list(shape[1:]))
        return name

    def activation_after(self, layer: Any, entry: dict[str, Any], fn_name: str) -> str:
        """Fuse relu/relu6 into `entry`; any other activation becomes its own layer. Returns
        the spec layer holding the Keras layer's output."""
        kind = _ACTIVATION_TYPES.get(fn_name)
        if kind is None:
            self.unsupported(layer, f"activation {fn_name!r} is not supported; use one of "
                             f"{sorted(k for k in _ACTIVATION_TYPES if k != 'linear')}")
            return entry["name"]
        if kind == "none":
            return entry["name"]
        if kind in _FUSABLE:
            entry["activation"] = kind
            return entry["name"]
        name = f"{entry['name']}__{kind}"
        fields: dict[str, Any] = {"name": name, "type": kind}
        if kind == "leaky_relu":
            fields["alpha"] = _KERAS_LEAKY_DEFAULT
        self.entry(None, [entry["name"]], **fields)
        return name

    def kernel_and_bias(self, layer: Any, name: str, kernel: np.ndarray, bias: Any) -> None:
        self.weights[f"{name}/kernel"] = np.asarray(kernel, np.float32)
        if bias is not None:
            self.weights[f"{name}/bias"] = np.asarray(bias, np.float32)

    def base_kernel(self, layer: Any, name: str) -> np.ndarray:
        """The frozen kernel; a layer with LoRA enabled also records its LoRA factors."""
        if getattr(layer, "lora_enabled", False):
            a = np.asarray(layer.lora_kernel_a.numpy(), np.float64)  # [..., rank]
            b = np.asarray(layer.lora_kernel_b.numpy(), np.float64)  # [rank, out]
            rank = int(layer.lora_rank)
            alpha = float(getattr(layer, "lora_alpha", rank))
            self.lora[name] = Lora(a.reshape(-1, rank).T.copy(), b.T.copy(), alpha / rank)
            return np.asarray(layer._kernel.numpy(), np.float32)
        return np.asarray(layer.kernel.numpy(), np.float32)

    # -- layers ----------------------------------------------------------------------------
    def read(self) -> ModelSpec:
        model = self.model
        inputs = getattr(model, "inputs", None)
        if not inputs:
            raise KerasImportError(f"the Keras model {model.name!r} is not built: give it an input shape "
                                   "(keras.Input(...) as its first layer, or call model.build((None, ...)))")
        if len(inputs) != 1:
            raise KerasImportError(f"the Keras model has {len(inputs)} inputs; tinyswap models take one")
        if len(model.outputs) != 1:
            raise KerasImportError(f"the Keras model has {len(model.outputs)} outputs; tinyswap models have one")
        input_name = inputs[0]._keras_history.operation.name
        input_shape = [self.batch, *[int(d) for d in inputs[0].shape[1:]]]
        # The model's own call graph (a Sequential keeps it in `_functional`): a layer object may
        # also carry nodes from other models it was called in (a reloaded Sequential does).
        graph = getattr(model, "_functional", None) or model
        calls: dict[str, list[Any]] = {}
        for depth in getattr(graph, "_nodes_by_depth", {}).values():
            for node in depth:
                calls.setdefault(node.operation.name, []).append(node)
        self.nodes = {name: nodes[0] for name, nodes in calls.items()}
        layers = [layer for layer in model.layers if _class(layer) != "InputLayer"]
        for layer in layers:
            if len(calls.get(layer.name, ())) != 1:
                self.unsupported(layer, "a layer called more than once (shared weights) is not supported; "
                                 "use a separate layer per call")
                continue
            for src in self.source_names(layer):
                self.consumers[src] = self.consumers.get(src, 0) + 1
        self.consumers[model.outputs[0]._keras_history.operation.name] = 1 << 30  # the output is read
        for layer in layers:
            if any(p.startswith(f"{layer.name} (") for p in self.problems):
                continue
            self.layer(layer)
        if self.problems:
            raise KerasImportError("the Keras model has layers tinyswap cannot export:\n  "
                                   + "\n  ".join(self.problems))
        output = self.resolve(model.outputs[0]._keras_history.operation.name)
        if self.entries and self.entries[-1]["name"] != output:
            # The model's output is an earlier spec layer (e.g. a dropped trailing no-op).
            raise KerasImportError(f"the model's output {output!r} is not its last layer; reorder the model")
        return parse_spec({"name": model.name, "input": {"name": input_name, "shape": input_shape},
                           "layers": self.entries}, self.weights)

    def layer(self, layer: Any) -> None:  # noqa: C901 - one branch per Keras class, on purpose
        kind = _class(layer)
        name = layer.name
        srcs = [self.resolve(s) for s in self.source_names(layer)]
        if getattr(layer, "lora_enabled", False) and kind not in ("Dense", "Conv2D", "Conv1D"):
            self.unsupported(layer, "LoRA is supported on Dense, Conv1D and Conv2D layers")
            return
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            self.unsupported(layer, "only data_format='channels_last' is supported (TFLite is NHWC)")
            return
        if kind in _NO_OPS:
            self.alias[name] = srcs[0]
        elif kind == "Dense":
            in_shape = self.shape(layer, "input")
            if len(in_shape) != 2:
                self.unsupported(layer, f"Dense on a {len(in_shape)}-D input is not supported; put a Flatten (or "
                                 "a global pooling) before it")
                return
            e = self.entry(layer, srcs, name=name, type="dense", units=int(layer.units), use_bias=bool(layer.use_bias))
            self.kernel_and_bias(layer, name, self.base_kernel(layer, name), layer.bias.numpy() if layer.use_bias else None)
            self.produced(name, self.activation_after(layer, e, _activation_name(layer.activation)))
        elif kind in ("Conv2D", "DepthwiseConv2D"):
            if kind == "Conv2D" and int(getattr(layer, "groups", 1)) != 1:
                self.unsupported(layer, "grouped convolutions are not supported; use groups=1 or DepthwiseConv2D")
                return
            if layer.padding not in ("same", "valid"):
                self.unsupported(layer, f"padding {layer.padding!r}; use 'same' or 'valid'")
                return
            fields = dict(kernel_size=list(layer.kernel_size), strides=list(layer.strides),
                          dilation_rate=list(layer.dilation_rate), padding=layer.padding, use_bias=bool(layer.use_bias))
            if kind == "Conv2D":
                e = self.entry(layer, srcs, name=name, type="conv2d", filters=int(layer.filters), **fields)
                kernel = self.base_kernel(layer, name)
            else:
                e = self.entry(layer, srcs, name=name, type="depthwise_conv2d",
                               depth_multiplier=int(layer.depth_multiplier), **fields)
                kernel = layer.kernel.numpy()
            self.kernel_and_bias(layer, name, kernel, layer.bias.numpy() if layer.use_bias else None)
            self.produced(name, self.activation_after(layer, e, _activation_name(layer.activation)))
        elif kind == "SeparableConv2D":
            if layer.padding not in ("same", "valid"):
                self.unsupported(layer, f"padding {layer.padding!r}; use 'same' or 'valid'")
                return
            dw = f"{name}__depthwise"
            self.entry(layer, srcs, name=dw, type="depthwise_conv2d", depth_multiplier=int(layer.depth_multiplier),
                       kernel_size=list(layer.kernel_size), strides=list(layer.strides),
                       dilation_rate=list(layer.dilation_rate), padding=layer.padding, use_bias=False)
            self.weights[f"{dw}/kernel"] = np.asarray(layer.depthwise_kernel.numpy(), np.float32)
            e = self.entry(layer, [dw], name=name, type="conv2d", filters=int(layer.filters), kernel_size=[1, 1],
                           use_bias=bool(layer.use_bias))
            self.kernel_and_bias(layer, name, layer.pointwise_kernel.numpy(),
                                 layer.bias.numpy() if layer.use_bias else None)
            self.produced(name, self.activation_after(layer, e, _activation_name(layer.activation)))
        elif kind == "Conv1D":
            if layer.padding not in ("same", "valid") or int(getattr(layer, "groups", 1)) != 1:
                self.unsupported(layer, f"padding {layer.padding!r} / groups; use 'same' or 'valid' and groups=1 "
                                 "(for 'causal', put a ZeroPadding1D((k - 1) * dilation, 0) before a 'valid' Conv1D)")
                return
            in_shape, out_shape = self.shape(layer, "input"), self.shape(layer, "output")
            x = self.view(f"{name}__expand", srcs[0], (self.batch, 1, *in_shape[1:]))
            e = self.entry(layer, [x], name=name, type="conv2d", filters=int(layer.filters),
                           kernel_size=[1, int(layer.kernel_size[0])], strides=[1, int(layer.strides[0])],
                           dilation_rate=[1, int(layer.dilation_rate[0])], padding=layer.padding,
                           use_bias=bool(layer.use_bias))
            kernel = self.base_kernel(layer, name)
            self.kernel_and_bias(layer, name, kernel[None], layer.bias.numpy() if layer.use_bias else None)
            top = self.activation_after(layer, e, _activation_name(layer.activation))
            self.produced(name, self.view(f"{name}__squeeze", top, out_shape))
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            self.entry(layer, srcs, name=name, type="max_pool2d" if kind.startswith("Max") else "avg_pool2d",
                       pool_size=list(layer.pool_size), strides=list(layer.strides), padding=layer.padding)
        elif kind in ("MaxPooling1D", "AveragePooling1D"):
            in_shape, out_shape = self.shape(layer, "input"), self.shape(layer, "output")
            x = self.view(f"{name}__expand", srcs[0], (self.batch, 1, *in_shape[1:]))
            pooled = f"{name}__pool"
            self.entry(layer, [x], name=pooled, type="max_pool2d" if kind.startswith("Max") else "avg_pool2d",
                       pool_size=[1, int(layer.pool_size[0])], strides=[1, int(layer.strides[0])],
                       padding=layer.padding)
            self.produced(name, self.view(name, pooled, out_shape))
        elif kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling1D", "GlobalMaxPooling1D"):
            in_shape, out_shape = self.shape(layer, "input"), self.shape(layer, "output")
            pooled = f"{name}__pool" if getattr(layer, "keepdims", False) else name
            src = srcs[0]
            if kind == "GlobalMaxPooling1D":
                src = self.view(f"{name}__expand", src, (self.batch, 1, *in_shape[1:]))
            kinds = {"GlobalAveragePooling2D": "global_avg_pool2d", "GlobalMaxPooling2D": "global_max_pool2d",
                     "GlobalAveragePooling1D": "global_avg_pool1d", "GlobalMaxPooling1D": "global_max_pool2d"}
            self.entry(layer, [src], name=pooled, type=kinds[kind])
            if pooled != name:
                self.view(name, pooled, out_shape)
        elif kind in ("Flatten", "Reshape"):
            self.entry(layer, srcs, name=name, type="reshape", shape=list(self.shape(layer)[1:]))
        elif kind in ("ZeroPadding2D", "ZeroPadding1D"):
            if kind == "ZeroPadding2D":
                pads = [list(map(int, p)) for p in layer.padding]
                self.entry(layer, srcs, name=name, type="pad", paddings=pads)
            else:
                in_shape = self.shape(layer, "input")
                x = self.view(f"{name}__expand", srcs[0], (self.batch, 1, *in_shape[1:]))
                self.entry(layer, [x], name=f"{name}__pad", type="pad", paddings=[[0, 0], list(map(int, layer.padding))])
                self.produced(name, self.view(f"{name}__squeeze", f"{name}__pad", self.shape(layer)))
        elif kind in ("Add", "Subtract", "Multiply"):
            op = {"Add": "add", "Subtract": "sub", "Multiply": "mul"}[kind]
            current = srcs[0]
            for i, other in enumerate(srcs[1:]):
                last = i == len(srcs) - 2
                step = name if last else f"{name}__{i}"
                self.entry(layer, [current, other], name=step, type=op)
                current = step
        elif kind == "Concatenate":
            self.entry(layer, srcs, name=name, type="concat", axis=int(layer.axis))
        elif kind == "BatchNormalization":
            self.batch_norm(layer, srcs[0])
        elif kind == "Rescaling":
            channels = self.shape(layer)[-1]
            scale = np.broadcast_to(np.asarray(layer.scale, np.float64), (channels,))
            offset = np.broadcast_to(np.asarray(layer.offset, np.float64), (channels,))
            self.affine(layer, srcs[0], scale, offset)
        elif kind == "Normalization":
            if getattr(layer, "invert", False) or tuple(np.atleast_1d(layer.axis)) not in ((-1,), (len(self.shape(layer)) - 1,)):
                self.unsupported(layer, "only Normalization(axis=-1, invert=False) is supported")
                return
            channels = self.shape(layer)[-1]
            mean = np.broadcast_to(np.asarray(layer.mean, np.float64).reshape(-1), (channels,))
            var = np.broadcast_to(np.asarray(layer.variance, np.float64).reshape(-1), (channels,))
            std = np.maximum(np.sqrt(var), 1e-7)  # keras.layers.Normalization's epsilon floor
            self.affine(layer, srcs[0], 1.0 / std, -mean / std)
        elif kind == "Softmax":
            axis = np.atleast_1d(getattr(layer, "axis", -1))
            if tuple(axis) not in ((-1,), (len(self.shape(layer)) - 1,)):
                self.unsupported(layer, "only a softmax over the last axis is supported")
                return
            self.entry(layer, srcs, name=name, type="softmax")
        elif kind == "ReLU":
            self.relu(layer, srcs[0])
        elif kind == "LeakyReLU":
            slope = float(getattr(layer, "negative_slope", getattr(layer, "alpha", 0.3)))
            self.entry(layer, srcs, name=name, type="leaky_relu", alpha=slope)
        elif kind == "Activation":
            fn = _activation_name(layer.activation)
            act = _ACTIVATION_TYPES.get(fn)
            if act is None:
                self.unsupported(layer, f"activation {fn!r} is not supported; use one of "
                                 f"{sorted(k for k in _ACTIVATION_TYPES if k != 'linear')}")
            elif act == "none":
                self.alias[name] = srcs[0]
            elif act in _FUSABLE and self.fuse(srcs[0], act):
                self.alias[name] = srcs[0]
            else:
                fields = {"alpha": _KERAS_LEAKY_DEFAULT} if act == "leaky_relu" else {}
                self.entry(layer, srcs, name=name, type=act, **fields)
        elif kind in ("Functional", "Sequential", "Model"):
            self.unsupported(layer, "a nested model: build the outer model from its layers (or call "
                             "keras.Model(inner.inputs, inner.outputs) on the whole)")
        else:
            self.unsupported(layer, _ADVICE.get(kind, "no int8 lowering; replace it with a supported layer "
                                                "(see tinyswap.export.keras_import)"))

    def relu(self, layer: Any, src: str) -> None:
        max_value = layer.max_value
        slope = float(getattr(layer, "negative_slope", 0.0) or 0.0)
        threshold = float(getattr(layer, "threshold", 0.0) or 0.0)
        if threshold != 0.0 or (slope and max_value is not None) or (max_value is not None and float(max_value) != 6.0):
            self.unsupported(layer, "only ReLU(), ReLU(6) and ReLU(negative_slope=a) are supported")
            return
        if slope:
            self.entry(layer, [src], name=layer.name, type="leaky_relu", alpha=slope)
            return
        act = "relu6" if max_value is not None else "relu"
        if self.fuse(src, act):
            self.alias[layer.name] = src
        else:
            self.entry(layer, [src], name=layer.name, type=act)

    def foldable(self, src: str) -> dict[str, Any] | None:
        """The weighted spec layer `src`, if its output feeds only the layer being read and it
        has no activation yet (so something may be folded or fused into it)."""
        if not self.entries or self.entries[-1]["name"] != src:
            return None
        e = self.entries[-1]
        if src.endswith("__squeeze") and len(self.entries) > 1:  # a Conv1D: its conv2d is one back
            e = self.entries[-2]
        keras_name = next((k for k, v in self.alias.items() if v == src), src)
        if e["type"] not in _WEIGHTED or e.get("activation", "none") != "none":
            return None
        if self.consumers.get(keras_name, 0) != 1 or self.consumers.get(src, 0) > 1:
            return None
        return e

    def fuse(self, src: str, act: str) -> bool:
        e = self.foldable(src)
        if e is None:
            return False
        e["activation"] = act
        return True

    def batch_norm(self, layer: Any, src: str) -> None:
        rank = len(self.shape(layer))
        if tuple(np.atleast_1d(layer.axis)) not in ((-1,), (rank - 1,)):
            self.unsupported(layer, "only BatchNormalization over the last (channel) axis is supported")
            return
        scale, offset = batch_norm_affine(
            layer.moving_mean.numpy(), layer.moving_variance.numpy(),
            layer.gamma.numpy() if layer.scale else 1.0, layer.beta.numpy() if layer.center else 0.0, layer.epsilon)
        e = self.foldable(src)
        if e is None or e["name"] in self.keep_unfolded:
            self.affine(layer, src, scale, offset)
            return
        target = e["name"]
        fold_into(e, self.weights, scale, offset)
        if target in self.lora:  # the LoRA delta passes through the folded scale too
            lora = self.lora[target]
            self.lora[target] = Lora(lora.a, lora.b * scale[:, None], lora.scaling)
        self.alias[layer.name] = src

    def affine(self, layer: Any, src: str, scale: np.ndarray, offset: np.ndarray) -> None:
        self.entry(layer, [src], name=layer.name, type="affine")
        self.weights[f"{layer.name}/scale"] = np.asarray(scale, np.float32)
        self.weights[f"{layer.name}/offset"] = np.asarray(offset, np.float32)


def import_keras(model: Any, batch: int = 1, keep_unfolded: Collection[str] = ()) -> KerasImport:
    """The spec of a built Keras model, and the LoRA factors of its LoRA-enabled layers.

    A BatchNormalization after a layer named in `keep_unfolded` stays an `affine` layer: an
    adapter trained later on that layer adds its delta before the BatchNormalization, and a
    folded kernel would put it after (the front door passes the plan's LoRA targets)."""
    reader = _Reader(model, batch, frozenset(keep_unfolded))
    spec = reader.read()
    return KerasImport(spec, dict(reader.lora))


def spec_from_keras(model: Any, batch: int = 1) -> ModelSpec:
    """The spec of a Keras model without LoRA; a model with LoRA enabled is refused (use
    `import_keras`, or `tinyswap.export.front_door.export_model(..., lora_out=DIR)`)."""
    result = import_keras(model, batch)
    if result.lora:
        raise KerasImportError(
            f"layers {sorted(result.lora)} have LoRA enabled; their kernels here would be the frozen base only. "
            "Export with lora_out=DIR (tinyswap export --lora-out DIR) to write the LoRA as an adapter directory "
            "for `tinyswap pack`, or merge it into the kernels first")
    return result.spec


__all__ = ["KerasImport", "KerasImportError", "import_keras", "spec_from_keras"]
