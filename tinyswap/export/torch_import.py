"""Read a PyTorch `nn.Module` into a `ModelSpec` by tracing it (`torch.fx`); needs torch.

Spec layers are named by the module paths PyTorch and PEFT use (`features.0`, `head.fc`), so
a PEFT `target_modules` list names slot-plan layers as they are, without a layer map. Function
calls (`x + y`, `torch.cat`, `F.relu`) take the traced node's name. Helper layers the lowering
adds are named `<path>__<role>`.

Layout: PyTorch is channels-first (NCHW, NCL), TFLite channels-last (NHWC). A 4-D input
`[batch, C, H, W]` becomes `[batch, H, W, C]`, a 3-D input `[batch, C, L]` becomes
`[batch, L, C]` (`TorchImport.to_spec_layout` converts calibration data); every channels-first
tensor is kept channels-last in the spec, with `dim` arguments mapped. A flatten of a
channels-last map orders its values (h, w, c), not PyTorch's (c, h, w): the Linear that reads
it gets its input columns permuted to match (as converters from PyTorch do), and is recorded in
`TorchImport.permuted_inputs` (its LoRA fan-in order differs from PEFT's, so it cannot take a
LoRA slot).

Taken, and how:
- Linear -> dense; Conv2d (groups 1) -> conv2d; Conv2d with groups == in_channels ->
  depthwise_conv2d; Conv1d -> reshape to `[batch, 1, L, C]`, conv2d with a `1 x k` window,
  reshape back (the TensorFlow converter's Conv1D lowering). Padding equal to TensorFlow's
  SAME is SAME; any other zero padding is a `pad` layer before a VALID convolution.
- BatchNorm1d/2d: folded into the Linear/Conv before it when nothing else reads that layer's
  output and it takes no LoRA slot (`keep_unfolded`), else a per-channel `affine` layer.
- MaxPool1d/2d, AvgPool1d/2d (no padding, no ceil mode), AdaptiveAvgPool1d/2d(1),
  AdaptiveMaxPool2d(1) -> pooling layers; Flatten / flatten / view / reshape -> reshape.
- ReLU, ReLU6 (and Hardtanh(0, 6)), Sigmoid, Tanh, LeakyReLU, Hardswish, Softmax over the last
  axis (modules, `torch.*`, `F.*` and tensor methods); a ReLU/ReLU6 straight after a
  Linear/Conv read by nothing else is fused into it.
- `+`, `-`, `*` of two tensors of one shape (residual connections), `torch.cat`.
- Dropout and Identity: dropped.
Everything else is listed in one `TorchImportError`, each with what to do.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Collection

import numpy as np

from tinyswap.export.errors import TorchImportError
from tinyswap.export.folding import batch_norm_affine, fold_into
from tinyswap.export.float_model import same_padding
from tinyswap.export.spec import ModelSpec, parse_spec


@dataclass(frozen=True)
class TorchImport:
    spec: ModelSpec
    input_permutation: tuple[int, ...]  # torch input axes in spec order
    permuted_inputs: frozenset[str] = field(default_factory=frozenset)

    def to_spec_layout(self, x: np.ndarray) -> np.ndarray:
        """Data in the module's layout (NCHW / NCL) in the spec's (NHWC / NLC)."""
        x = np.asarray(x, np.float32)
        if x.ndim != len(self.input_permutation):
            raise TorchImportError(f"data of shape {x.shape} does not have the module input's "
                                   f"{len(self.input_permutation)} dimensions")
        return np.ascontiguousarray(np.transpose(x, self.input_permutation))


@dataclass
class _Value:
    """A traced tensor: the spec layer holding it, its PyTorch shape, and whether the spec
    keeps it channels-last (PyTorch `[b, C, *spatial]` as `[b, *spatial, C]`)."""

    name: str
    shape: tuple[int, ...]
    channels_last: bool
    permutation: np.ndarray | None = None  # flattened channels-last map: spec index -> torch index


def _torch_dim_to_spec(dim: int, v: _Value) -> int:
    rank = len(v.shape)
    dim %= rank
    if not v.channels_last or dim == 0:
        return dim
    return rank - 1 if dim == 1 else dim - 1


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


_ACT_MODULES = {"ReLU": "relu", "ReLU6": "relu6", "Sigmoid": "sigmoid", "Tanh": "tanh", "Hardswish": "hard_swish",
                "LeakyReLU": "leaky_relu", "Softmax": "softmax", "Hardtanh": "relu6"}
_NO_OP_MODULES = ("Dropout", "Dropout1d", "Dropout2d", "AlphaDropout", "Identity")
_FUSABLE = ("relu", "relu6")
_WEIGHTED = ("dense", "conv2d", "depthwise_conv2d")


class _Reader:
    def __init__(self, module: Any, example_input: Any, batch: int, keep_unfolded: frozenset[str]) -> None:
        import torch
        from torch import fx
        from torch.fx.passes.shape_prop import ShapeProp

        self.torch = torch
        try:
            self.graph = fx.symbolic_trace(module)
        except Exception as exc:  # torch raises many types for untraceable code
            raise TorchImportError(f"torch.fx cannot trace the module ({type(exc).__name__}: {exc}); keep "
                                   "data-dependent Python control flow out of forward()") from None
        ShapeProp(self.graph).propagate(example_input)
        self.modules = dict(self.graph.named_modules())
        self.batch = batch
        self.keep_unfolded = keep_unfolded
        self.entries: list[dict[str, Any]] = []
        self.weights: dict[str, np.ndarray] = {}
        self.values: dict[str, _Value] = {}
        self.problems: list[str] = []
        self.readers: dict[str, int] = {}
        self.permuted: set[str] = set()
        for node in self.graph.graph.nodes:
            for arg in node.all_input_nodes:
                self.readers[arg.name] = self.readers.get(arg.name, 0) + 1

    # -- helpers ---------------------------------------------------------------------------
    def shape(self, node: Any) -> tuple[int, ...]:
        meta = node.meta.get("tensor_meta")
        return (self.batch, *(int(d) for d in meta.shape[1:]))

    def spec_shape(self, v: _Value) -> tuple[int, ...]:
        if v.channels_last:
            return (v.shape[0], *v.shape[2:], v.shape[1])
        return v.shape

    def add(self, name: str, inputs: list[str], **fields: Any) -> str:
        self.entries.append({"name": name, "inputs": inputs, **fields})
        return name

    def problem(self, node: Any, what: str, advice: str) -> None:
        self.problems.append(f"{node.target if node.op == 'call_module' else node.name} ({what}): {advice}")
        # A stand-in for the refused value, so that the operations after it are read (and any
        # of them that cannot be taken is listed too) instead of skipped.
        args = self.tensor_args(node)
        if node.meta.get("tensor_meta") is not None and node.name not in self.values:
            shape = self.shape(node)
            self.values[node.name] = _Value(node.name, shape, bool(args and args[0].channels_last) and len(shape) > 2)

    def tensor_args(self, node: Any) -> list[_Value]:
        return [self.values[a.name] for a in node.all_input_nodes if a.name in self.values]

    def foldable(self, v: _Value, node_arg: Any) -> dict[str, Any] | None:
        """The weighted spec layer producing `v`, if only the current node reads it and it has no activation."""
        if self.readers.get(node_arg.name, 0) != 1 or not self.entries:
            return None
        e = self.entries[-1]
        if v.name.endswith("__squeeze") and len(self.entries) > 1 and e["name"] == v.name:
            e = self.entries[-2]
        elif e["name"] != v.name:
            return None
        if e["type"] not in _WEIGHTED or e.get("activation", "none") != "none":
            return None
        return e

    # -- reading ---------------------------------------------------------------------------
    def read(self) -> TorchImport:
        input_name, input_shape, permutation, output = None, None, (), None
        for node in self.graph.graph.nodes:
            if node.op == "placeholder":
                if input_name is not None:
                    self.problem(node, "second input", "tinyswap models take one input tensor")
                    continue
                shape = self.shape(node)
                v = _Value(node.name, shape, len(shape) in (3, 4))
                input_name, input_shape = node.name, self.spec_shape(v)
                permutation = (0, *range(2, len(shape)), 1) if v.channels_last else tuple(range(len(shape)))
                self.values[node.name] = v
            elif node.op == "output":
                out = node.args[0]
                if not hasattr(out, "name") or out.name not in self.values:
                    self.problem(node, "output", "return one tensor from forward()")
                else:
                    output = self.values[out.name]
            elif node.op == "get_attr":
                self.problem(node, "parameter used directly", "use the parameter inside a module (nn.Linear, ...)")
            else:
                if any(a.name not in self.values for a in node.all_input_nodes if a.op != "call_method"
                       or a.target != "size"):
                    continue  # its input was refused already
                self.node(node)
        if input_name is None:
            raise TorchImportError("the module's forward() takes no tensor")
        if self.problems:
            raise TorchImportError("the PyTorch module has operations tinyswap cannot export:\n  "
                                   + "\n  ".join(self.problems))
        assert output is not None
        if output.channels_last and len(output.shape) > 2:
            raise TorchImportError("the module's output is a channels-first feature map; end it with pooling and "
                                   "a Linear (tinyswap models output [batch, features])")
        if not self.entries or self.entries[-1]["name"] != output.name:
            raise TorchImportError(f"the module's output {output.name!r} is not its last operation")
        spec = parse_spec({"name": type(self.graph).__name__, "input": {"name": input_name, "shape": list(input_shape)},
                           "layers": self.entries}, self.weights)
        return TorchImport(spec, permutation, frozenset(self.permuted))

    def node(self, node: Any) -> None:  # noqa: C901 - one branch per supported call
        F = self.torch.nn.functional
        torch = self.torch
        if node.op == "call_module":
            self.module(node, self.modules[node.target])
            return
        target = node.target
        if node.op == "call_method" and target == "size":
            return  # a shape query feeding view/reshape: read through the traced shapes instead
        args = self.tensor_args(node)
        name = node.name
        acts = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
                torch.tanh: "tanh", F.tanh: "tanh", F.hardswish: "hard_swish", F.leaky_relu: "leaky_relu",
                F.softmax: "softmax", torch.softmax: "softmax"}
        method_acts = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax"}
        if node.op == "call_function" and target in acts:
            self.activation(node, acts[target], args[0],
                            alpha=float(node.kwargs.get("negative_slope", node.args[1] if len(node.args) > 1 else 0.01)))
        elif node.op == "call_method" and target in method_acts:
            self.activation(node, method_acts[target], args[0])
        elif target in (operator.add, torch.add, operator.iadd, operator.sub, torch.sub, operator.mul, torch.mul):
            if len(args) != 2 or len(node.args) != 2:
                self.problem(node, str(getattr(target, "__name__", target)),
                             "only the sum, difference or product of two tensors (no constants) is supported")
                return
            a, b = args
            if a.shape != b.shape or a.channels_last != b.channels_last:
                self.problem(node, "broadcast", f"operands {a.shape} and {b.shape} must have one shape")
                return
            kind = {operator.add: "add", torch.add: "add", operator.iadd: "add", operator.sub: "sub",
                    torch.sub: "sub", operator.mul: "mul", torch.mul: "mul"}[target]
            self.values[name] = _Value(self.add(name, [a.name, b.name], type=kind), a.shape, a.channels_last)
        elif target in (torch.cat, torch.concat):
            tensors = node.args[0]
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
            vals = [self.values[t.name] for t in tensors]
            if len({v.channels_last for v in vals}) != 1 or dim % len(vals[0].shape) == 0:
                self.problem(node, "cat", "concatenate tensors of one layout along a non-batch dimension")
                return
            axis = _torch_dim_to_spec(dim, vals[0])
            self.values[name] = _Value(self.add(name, [v.name for v in vals], type="concat", axis=axis),
                                       self.shape(node), vals[0].channels_last)
        elif target in (torch.flatten,) or (node.op == "call_method" and target in ("flatten", "view", "reshape")):
            self.reshape(node, args[0])
        elif target is F.dropout or (node.op == "call_method" and target == "contiguous"):
            self.values[name] = args[0]
        else:
            self.problem(node, str(getattr(target, "__name__", target)),
                         "no int8 lowering; write it with the supported modules (see tinyswap.export.torch_import)")

    def activation(self, node: Any, kind: str, v: _Value, alpha: float = 0.01) -> None:
        name = node.target if node.op == "call_module" else node.name
        if kind == "softmax":
            if node.op == "call_module":
                dim = self.modules[node.target].dim
            else:
                dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
            if dim is None or len(v.shape) != 2 or dim % 2 != 1:
                self.problem(node, "softmax", "only a softmax over the last dimension of [batch, features] is supported")
                return
        if kind in _FUSABLE:
            arg = node.all_input_nodes[0]
            e = self.foldable(v, arg)
            if e is not None:
                e["activation"] = kind
                self.values[node.name] = v
                return
        fields = {"alpha": alpha} if kind == "leaky_relu" else {}
        self.values[node.name] = _Value(self.add(name, [v.name], type=kind, **fields), v.shape, v.channels_last,
                                        v.permutation)

    def reshape(self, node: Any, v: _Value) -> None:
        out = self.shape(node)
        name = node.target if node.op == "call_module" else node.name
        if len(out) == len(v.shape) and out == v.shape:
            self.values[node.name] = v
            return
        if len(out) != 2:
            if v.channels_last:
                self.problem(node, "reshape", "reshaping a channels-first feature map other than flattening it is "
                             "not supported")
                return
            self.values[node.name] = _Value(self.add(name, [v.name], type="reshape", shape=list(out[1:])), out, False)
            return
        permutation = None
        if v.channels_last:
            spatial = v.shape[2:]
            if int(np.prod(spatial)) > 1:
                # spec index (spatial..., c) -> torch index (c, spatial...)
                torch_index = np.arange(int(np.prod(v.shape[1:]))).reshape(v.shape[1:])
                permutation = np.moveaxis(torch_index, 0, -1).reshape(-1)
        spec_in = self.spec_shape(v)
        if len(spec_in) == 2 and spec_in == out:
            self.values[node.name] = _Value(v.name, out, False, permutation)
            return
        self.values[node.name] = _Value(self.add(name, [v.name], type="flatten"), out, False, permutation)

    def module(self, node: Any, m: Any) -> None:  # noqa: C901
        kind = type(m).__name__
        path = node.target
        args = self.tensor_args(node)
        v = args[0] if args else None
        assert v is not None
        if kind in _NO_OP_MODULES:
            self.values[node.name] = v
        elif kind == "Linear":
            if len(v.shape) != 2:
                self.problem(node, kind, "a Linear on a tensor that is not [batch, features]; flatten or pool first")
                return
            w = m.weight.detach().cpu().numpy().astype(np.float64).T  # [in, out]
            if v.permutation is not None:
                w = w[v.permutation]
                self.permuted.add(path)
            self.add(path, [v.name], type="dense", units=int(m.out_features), use_bias=m.bias is not None)
            self.weights[f"{path}/kernel"] = w.astype(np.float32)
            if m.bias is not None:
                self.weights[f"{path}/bias"] = m.bias.detach().cpu().numpy().astype(np.float32)
            self.values[node.name] = _Value(path, self.shape(node), False)
        elif kind in ("Conv2d", "Conv1d"):
            self.conv(node, m, v, kind == "Conv1d")
        elif kind in ("BatchNorm1d", "BatchNorm2d"):
            self.batch_norm(node, m, v)
        elif kind in _ACT_MODULES:
            if kind == "Hardtanh" and (m.min_val, m.max_val) != (0.0, 6.0):
                self.problem(node, kind, "only Hardtanh(0, 6) (ReLU6) is supported")
                return
            self.activation(node, _ACT_MODULES[kind], v, alpha=float(getattr(m, "negative_slope", 0.01)))
        elif kind in ("MaxPool2d", "AvgPool2d", "MaxPool1d", "AvgPool1d"):
            self.pool(node, m, v, kind)
        elif kind in ("AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "AdaptiveAvgPool1d"):
            size = m.output_size
            if size not in (1, (1, 1), (1,), [1, 1]):
                self.problem(node, kind, "only output_size 1 (global pooling) is supported")
                return
            src = v.name
            if kind == "AdaptiveAvgPool1d":
                layer = self.add(path, [src], type="global_avg_pool1d")
            else:
                layer = self.add(path, [src], type="global_avg_pool2d" if "Avg" in kind else "global_max_pool2d")
            # PyTorch keeps [b, C, 1, 1]; the spec holds [b, C], which a flatten then leaves alone.
            self.values[node.name] = _Value(layer, self.shape(node), True)
        elif kind == "Flatten":
            if m.start_dim != 1 or m.end_dim != -1:
                self.problem(node, kind, "only Flatten(start_dim=1) is supported")
                return
            self.reshape(node, v)
        else:
            self.problem(node, kind, "no int8 lowering; use Linear, Conv1d/Conv2d, BatchNorm, pooling and the "
                         "supported activations (see tinyswap.export.torch_import)")

    def conv(self, node: Any, m: Any, v: _Value, one_d: bool) -> None:
        path = node.target
        if m.padding_mode != "zeros":
            self.problem(node, type(m).__name__, "only padding_mode='zeros' is supported")
            return
        w = m.weight.detach().cpu().numpy().astype(np.float64)
        if one_d:
            w = w[:, :, None, :]  # [out, in, 1, k]
        cin, cout = int(m.in_channels), int(m.out_channels)
        kernel = (1, int(m.kernel_size[0])) if one_d else _pair(m.kernel_size)
        stride = (1, int(m.stride[0])) if one_d else _pair(m.stride)
        dilation = (1, int(m.dilation[0])) if one_d else _pair(m.dilation)
        padding = m.padding if isinstance(m.padding, str) else ((0, int(m.padding[0])) if one_d else _pair(m.padding))
        src = v.name
        if one_d:
            src = self.add(f"{path}__expand", [src], type="reshape", shape=[1, v.shape[2], v.shape[1]])
        pad_mode, src = self._padding(node, v, kernel, stride, dilation, padding, src, path)
        fields = dict(kernel_size=list(kernel), strides=list(stride), dilation_rate=list(dilation), padding=pad_mode,
                      use_bias=m.bias is not None)
        if m.groups == 1:
            self.add(path, [src], type="conv2d", filters=cout, **fields)
            self.weights[f"{path}/kernel"] = np.transpose(w, (2, 3, 1, 0)).astype(np.float32)  # kh, kw, in, out
        elif m.groups == cin and cout % cin == 0 and not one_d:
            mult = cout // cin
            self.add(path, [src], type="depthwise_conv2d", depth_multiplier=mult, **fields)
            # [cin * m, 1, kh, kw] -> [kh, kw, cin, m]
            self.weights[f"{path}/kernel"] = np.transpose(w.reshape(cin, mult, *kernel), (2, 3, 0, 1)).astype(np.float32)
        else:
            self.problem(node, type(m).__name__, "grouped convolutions other than depthwise (groups == in_channels) "
                         "are not supported")
            return
        if m.bias is not None:
            self.weights[f"{path}/bias"] = m.bias.detach().cpu().numpy().astype(np.float32)
        out = self.shape(node)
        layer = path
        if one_d:
            layer = self.add(f"{path}__squeeze", [path], type="reshape", shape=[out[2], out[1]])
        self.values[node.name] = _Value(layer, out, True)

    def _padding(self, node: Any, v: _Value, kernel: tuple[int, int], stride: tuple[int, int],
                 dilation: tuple[int, int], padding: Any, src: str, prefix: str) -> tuple[str, str]:
        """(spec padding, input layer): SAME where PyTorch's zero padding equals TensorFlow's
        SAME for this input, else a pad layer before a VALID window."""
        if isinstance(padding, str):
            return padding, src  # PyTorch's "same" pads as TensorFlow's (extra at the end)
        ph, pw = padding
        if ph == 0 and pw == 0:
            return "valid", src
        spec_in = self.spec_shape(v) if len(v.shape) == 4 else (v.shape[0], 1, v.shape[2], v.shape[1])
        tf_pads = [same_padding(spec_in[1 + i], kernel[i], stride[i], dilation[i]) for i in range(2)]
        if tf_pads == [(ph, ph), (pw, pw)]:
            return "same", src
        return "valid", self.add(f"{prefix}__pad", [src], type="pad", paddings=[[ph, ph], [pw, pw]])

    def pool(self, node: Any, m: Any, v: _Value, kind: str) -> None:
        path = node.target
        one_d = kind.endswith("1d")
        k = (1, int(_pair(m.kernel_size)[0])) if one_d else _pair(m.kernel_size)
        s = m.stride if m.stride is not None else m.kernel_size
        s = (1, int(_pair(s)[0])) if one_d else _pair(s)
        pad = _pair(m.padding)
        if pad != (0, 0) or getattr(m, "ceil_mode", False) or _pair(getattr(m, "dilation", 1)) != (1, 1):
            self.problem(node, kind, "only pooling without padding, dilation or ceil_mode is supported")
            return
        src = v.name
        if one_d:
            src = self.add(f"{path}__expand", [src], type="reshape", shape=[1, v.shape[2], v.shape[1]])
        layer = self.add(f"{path}__pool" if one_d else path, [src],
                         type="max_pool2d" if "Max" in kind else "avg_pool2d", pool_size=list(k), strides=list(s),
                         padding="valid")
        out = self.shape(node)
        if one_d:
            layer = self.add(path, [layer], type="reshape", shape=[out[2], out[1]])
        self.values[node.name] = _Value(layer, out, True)

    def batch_norm(self, node: Any, m: Any, v: _Value) -> None:
        def array(t: Any) -> np.ndarray:
            return t.detach().cpu().numpy()

        scale, offset = batch_norm_affine(array(m.running_mean), array(m.running_var),
                                          array(m.weight) if m.affine else 1.0, array(m.bias) if m.affine else 0.0,
                                          m.eps)
        e = self.foldable(v, node.all_input_nodes[0])
        if e is None or e["name"] in self.keep_unfolded:
            layer = self.add(node.target, [v.name], type="affine")
            self.weights[f"{layer}/scale"] = scale.astype(np.float32)
            self.weights[f"{layer}/offset"] = offset.astype(np.float32)
            self.values[node.name] = _Value(layer, v.shape, v.channels_last, v.permutation)
            return
        fold_into(e, self.weights, scale, offset)
        self.values[node.name] = v


def import_torch(module: Any, example_input: Any, batch: int = 1, keep_unfolded: Collection[str] = ()) -> TorchImport:
    """Trace `module` (in eval mode) on `example_input` (a tensor in the module's own layout).

    A BatchNorm after a layer named in `keep_unfolded` stays a layer of its own: an adapter
    trained on the module (a PEFT LoRA) adds its delta before the BatchNorm, and a folded
    kernel would put it after (the front door passes the plan's LoRA targets)."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise TorchImportError(f"expected a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(example_input, torch.Tensor):
        raise TorchImportError("example_input must be a torch.Tensor shaped like one batch of the module's input")
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            return _Reader(module, example_input.detach().float(), batch, frozenset(keep_unfolded)).read()
    finally:
        module.train(was_training)


__all__ = ["TorchImport", "TorchImportError", "import_torch"]
