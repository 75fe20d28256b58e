"""Slot injection: adapter slots added to an int8 `.tflite` someone else made (the TensorFlow
Lite converter, a model zoo), keeping the base model as it is.

The file is read (`tinyswap.reader`), described again as a `tinyswap.export.tflite_graph.Model`
with every tensor, scale, constant and operator option of the original, and the slot branches
of `tinyswap.export.compiler.SlotEmitter` (the compiler's own) are added after each targeted
operator:

- LoRA on FULLY_CONNECTED, CONV_2D or DEPTHWISE_CONV_2D `y = act(W x + b)`: the operator writes
  `pre` (its fused activation removed), the slots add `gate_s * B_s (A_s x)`, and the last ADD
  carries the activation and writes the original output tensor. A is a FULLY_CONNECTED, or a
  CONV_2D with the operator's window (padding, strides, dilation); on a depthwise operator the
  low-rank delta is a full convolution (as a PEFT LoRA on a Conv2d is), B a 1x1 CONV_2D.
- Bottleneck on any int8 operator's output `h` (rank 2 or 4): `h + gate_s * U_s relu(D_s h)`.

Scales come from the file: `x`'s and `y`'s own quantization give the ranges the compiler would
calibrate (max |x|, max |pre|), the weights are dequantized from the file for max |W|. With
calibration data, the ranges are what the base model actually sees on it (our interpreter runs
the unmodified graph with the target tensors as extra outputs). With headroom off, `pre` has
`y`'s quantization, so all gates at zero give the original outputs bit for bit (the ADD identity,
docs/architecture.md "Slots").

A stateful model's other subgraphs (the CALL_ONCE initialiser of a converter's resource
variables) are kept as they are, with their indices; conditional branches are numbered after
them. Models with IF operators of their own are refused.

Targets are named by the operator's output tensor name or `#<operator index>`, as
`tinyswap inspect MODEL.tflite` lists them. Unchanged: operator order (slot operators are
inserted after their target), tensor names, shapes, shape signatures, quantization, constants
and the file's metadata. Not kept: tensor indices (the builder numbers tensors in first-use
order), tensors no operator uses, and an out-of-range `quantized_dimension` on a 1-D per-channel
bias (written as 0, the only axis it has).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tinyswap.export.compiler import Compiled, LoraSite, SlotEmitter
from tinyswap.export.errors import BuilderError, InjectError, UnknownTargetError
from tinyswap.export.quantize import ActQuant, activation_quant
from tinyswap.export.slot_plan import SlotPlan, SlotTarget
from tinyswap.export.tflite_builder import Model, Operator, Quant, Subgraph, Tensor, build_model_with_layout
from tinyswap.interpreter import Interpreter
from tinyswap.quantize import quantize_int8
from tinyswap.reader import ModelDef, OperatorDef, OperatorName, TensorDef, operator_names, read_model
from tinyswap.schema import Activation, TensorType

LORA_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")
_ACTIVATIONS = {Activation.NONE: "none", Activation.RELU: "relu", Activation.RELU6: "relu6"}
_WINDOW_FIELDS = ("padding", "stride_h", "stride_w", "dilation_h_factor", "dilation_w_factor")
MAX_CALIBRATION_ROWS = 4096  # the calibration pass runs our interpreter once per row


# --------------------------------------------------------------------------------------------
# Reading the file back into a graph description
# --------------------------------------------------------------------------------------------


def _tensor(model: ModelDef, t: TensorDef) -> Tensor:
    if t.type == TensorType.RESOURCE and not t.has_sparsity and not t.is_variable and t.quantization is None:
        return Tensor(t.name, t.shape, np.uint8, resource=True)  # a variable's handle (VAR_HANDLE)
    if t.has_sparsity:
        raise InjectError(f"tensor {t.name!r} is sparse; convert the model without sparsity to inject slots")
    if t.is_variable:
        raise InjectError(f"tensor {t.name!r} is a variable tensor (stateful operators); slots cannot be injected")
    if t.dtype is None:
        raise InjectError(f"tensor {t.name!r} has type {t.type.name}, which tinyswap cannot write back")
    data = model.tensor_data(t)
    quant = None
    if t.quantization is not None:
        q = t.quantization
        axis = q.quantized_dimension
        if q.scale.size > 1 and axis >= len(t.shape) and len(t.shape) == 1 and t.shape[0] == q.scale.size:
            # person_detect's 1-D biases carry the filters' axis 3; along a 1-D tensor it can only
            # mean axis 0 (TFLite Micro never reads it for a bias), which the writer requires.
            axis = 0
        quant = Quant(q.scale, q.zero_point, axis)
    return Tensor(t.name, t.shape, t.dtype, data=None if data is None else np.array(data), quant=quant,
                  shape_signature=t.shape_signature)


def _operator(op: OperatorDef, tensors: dict[int, Tensor]) -> Operator:
    if op.op_name == "CUSTOM" or op.has_custom_options:
        raise InjectError(f"operator #{op.index} ({op.op_name}) has custom options; slots can be injected only "
                          "into models of builtin operators")
    if op.intermediates:
        raise InjectError(f"operator #{op.index} ({op.op_name}) has intermediate tensors; not supported")
    options = {k: v for k, v in op.options.items() if v is not None}
    return Operator(op.op_name, [None if i < 0 else tensors[i] for i in op.inputs],
                    [tensors[i] for i in op.outputs], options, op.version)


@dataclass
class _Graph:
    """The base model as a description: operators in file order, graph inputs and outputs, and
    its other subgraphs (a stateful model's CALL_ONCE initialiser) kept as they are."""

    model: ModelDef
    ops: list[Operator]
    inputs: list[Tensor]
    outputs: list[Tensor]
    tensors: dict[int, Tensor]
    others: list[Subgraph]


def _read_subgraph(model: ModelDef, index: int) -> tuple[list[Operator], list[Tensor], list[Tensor], dict[int, Tensor]]:
    sg = model.subgraphs[index]
    used = set(sg.inputs) | set(sg.outputs)
    for op in sg.operators:
        if op.op_name == "IF":  # slots would land in the middle of its subgraph numbering
            raise InjectError(f"subgraph {index} operator #{op.index} is an IF; slots are injected into models "
                              "without control flow of their own")
        used |= {i for i in op.inputs if i >= 0} | set(op.outputs)
    tensors = {i: _tensor(model, sg.tensors[i]) for i in sorted(used)}
    ops = [_operator(op, tensors) for op in sg.operators]
    return ops, [tensors[i] for i in sg.inputs], [tensors[i] for i in sg.outputs], tensors


def _read_graph(data: bytes) -> _Graph:
    model = read_model(data)
    ops, inputs, outputs, tensors = _read_subgraph(model, 0)
    others = []
    for index in range(1, len(model.subgraphs)):
        sub_ops, sub_inputs, sub_outputs, _ = _read_subgraph(model, index)
        others.append(Subgraph(sub_ops, sub_inputs, sub_outputs, model.subgraphs[index].name or f"subgraph{index}"))
    return _Graph(model, ops, inputs, outputs, tensors, others)


# --------------------------------------------------------------------------------------------
# Targets and their ranges
# --------------------------------------------------------------------------------------------


def _resolve_targets(graph: _Graph, plan: SlotPlan) -> dict[int, SlotTarget]:
    names = operator_names(graph.model)
    by_name: dict[str, int] = {}
    for n in names:
        by_name[n.ref] = n.index
        by_name.setdefault(n.output, n.index)
    unknown = [t.layer for t in plan.targets if t.layer not in by_name]
    if unknown:
        valid = ", ".join(f"{n.ref} {n.output!r} ({n.op})" for n in names if n.op in LORA_OPS)
        raise UnknownTargetError(
            f"slot plan targets {unknown} name no operator of this model; name a target by '#<operator index>' or "
            f"its output tensor name (`tinyswap inspect MODEL.tflite` lists them); LoRA-capable operators: {valid}")
    resolved: dict[int, SlotTarget] = {}
    for t in plan.targets:
        index = by_name[t.layer]
        if index in resolved:
            raise InjectError(f"slot plan targets operator #{index} twice ({resolved[index].layer!r} and {t.layer!r})")
        resolved[index] = t
    return resolved


def _check_target(graph: _Graph, index: int, target: SlotTarget) -> None:
    op = graph.ops[index]
    where = f"slot plan target {target.layer!r} (operator #{index}, {op.op})"
    out = op.outputs[0]
    if out.dtype != np.int8 or out.quant is None or out.quant.scale.size != 1:
        raise InjectError(f"{where}: its output is not a per-tensor int8 tensor; slots need an int8 model")
    if target.kind == "bottleneck":
        if len(out.shape) not in (2, 4):
            raise InjectError(f"{where}: a bottleneck needs a rank-2 or rank-4 output, this one is {out.shape}")
        return
    if op.op not in LORA_OPS:
        raise InjectError(f"{where}: LoRA slots go on {', '.join(LORA_OPS)}; use kind 'bottleneck' on its output")
    x, w = op.inputs[0], op.inputs[1]
    if x is None or x.dtype != np.int8 or x.quant is None or w is None or w.dtype != np.int8 or not w.is_constant:
        raise InjectError(f"{where}: needs an int8 input and constant int8 weights (a full-integer int8 model)")
    if op.options.get("fused_activation_function", Activation.NONE) not in _ACTIVATIONS:
        raise InjectError(f"{where}: fused activation {op.options['fused_activation_function']!r} cannot move after "
                          "the slots' sum (NONE, RELU and RELU6 can)")
    if op.op == "FULLY_CONNECTED" and op.options.get("keep_num_dims"):
        raise InjectError(f"{where}: keep_num_dims is set; LoRA slots need the converter's default (false)")


def _real_absmax(t: Tensor) -> float:
    """max |value| an int8 per-tensor-quantized tensor can hold."""
    aq = _act_quant(t)
    assert aq is not None
    return max(*(abs(v) for v in aq.real_range), 1e-6)


def _dequantized_absmax(w: Tensor) -> float:
    """max |W| of a constant weight, dequantized with its own (per-channel) scales."""
    return max(float(np.abs(_dequantize(w)).max()), 1e-6)


def _observed_absmax(graph: _Graph, tensors: list[Tensor], calibration: np.ndarray) -> dict[Tensor, float]:
    """max |real value| of `tensors` over `calibration`, running the unmodified base graph with
    them as extra outputs in our interpreter."""
    x_in = graph.inputs[0]
    extra = [t for t in dict.fromkeys(tensors) if t not in graph.outputs]
    probe = build_model_with_layout(Model(graph.ops, graph.inputs, graph.outputs + extra, subgraphs=graph.others)).data
    interpreter = Interpreter(model_content=probe)
    watched = graph.outputs + extra
    result = {t: 1e-6 for t in tensors}
    for row in calibration:
        value = row[None]
        if x_in.dtype == np.int8:
            assert x_in.quant is not None
            value = quantize_int8(value, float(x_in.quant.scale[0]), int(x_in.quant.zero_point[0]))
        else:
            value = value.astype(x_in.dtype)
        outputs = interpreter.run(value)
        for t, got in zip(watched, outputs):
            if t in result:
                assert t.quant is not None
                real = (got.astype(np.float64) - float(t.quant.zero_point[0])) * float(t.quant.scale[0])
                result[t] = max(result[t], float(np.abs(real).max()))
    return result


def _check_calibration(graph: _Graph, calibration: np.ndarray) -> np.ndarray:
    x_in = graph.inputs[0]
    values = np.asarray(calibration, dtype=np.float32)
    if values.ndim != len(x_in.shape) or values.shape[1:] != tuple(x_in.shape[1:]) or not 1 <= len(values) <= MAX_CALIBRATION_ROWS:
        raise InjectError(f"calibration data of shape {values.shape} does not fit the model input {x_in.shape} "
                          f"(batch first, 1..{MAX_CALIBRATION_ROWS} rows, real values)")
    if not np.all(np.isfinite(values)):
        raise InjectError("calibration data holds NaN or infinite values")
    return values


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------


def inject_slots(model: bytes, plan: SlotPlan, calibration: np.ndarray | None = None, *,
                 name: str | None = None) -> Compiled:
    """`model` (an int8 `.tflite`) with `plan`'s slots added; the same `Compiled` record the
    compiler returns, so bundles, slot maps, packing and the device work on it unchanged.

    Raises `ModelError` for a malformed file, `UnknownTargetError` for plan targets the model does
    not have (listing the valid names), `InjectError` for what cannot take slots. `name` names the
    model in the manifest (default: the file's description)."""
    if not isinstance(plan, SlotPlan):
        raise InjectError(f"plan must be a SlotPlan, got {type(plan).__name__}")
    try:
        graph = _read_graph(bytes(model))
    except BuilderError as exc:  # a value the file holds that the writer cannot hold
        raise InjectError(f"this model cannot be written back: {exc}") from exc
    if len(graph.inputs) != 1 and calibration is not None:
        raise InjectError(f"the model has {len(graph.inputs)} inputs; calibration data describes one input, so "
                          "inject slots into a multi-input model without it (its scales come from the file)")
    targets = _resolve_targets(graph, plan)
    for index, target in targets.items():
        _check_target(graph, index, target)
    observed: dict[Tensor, float] = {}
    if calibration is not None:
        values = _check_calibration(graph, calibration)
        watch = [t for i in targets for t in (graph.ops[i].inputs[0], graph.ops[i].outputs[0]) if t is not None]
        observed = _observed_absmax(graph, watch, values)

    def absmax(t: Tensor) -> float:
        return observed.get(t, _real_absmax(t))

    batch = graph.inputs[0].shape[0] if graph.inputs[0].shape else 1
    emitter = SlotEmitter(plan, batch, first_subgraph=1 + len(graph.others))
    gates = emitter.make_gates()
    for index, base in enumerate(graph.ops):
        target = targets.get(index)
        if target is None:
            emitter.ops.append(base)
            continue
        out = base.outputs[0]
        assert out.quant is not None
        oq = ActQuant(float(out.quant.scale[0]), int(out.quant.zero_point[0]))
        if target.kind == "bottleneck":
            h = Tensor(f"{target.layer}/h", out.shape, np.int8, quant=out.quant, shape_signature=out.shape_signature)
            emitter.ops.append(Operator(base.op, base.inputs, [h, *base.outputs[1:]], base.options, base.version))
            emitter.bottleneck_branch(target.layer, target, h, oq, out)
            continue
        act = _ACTIVATIONS[Activation(base.options.get("fused_activation_function", Activation.NONE))]
        y_abs = absmax(out)
        pq = activation_quant(-y_abs, y_abs) if plan.headroom else oq
        pre = Tensor(f"{target.layer}/pre", out.shape, np.int8, quant=Quant(pq.scale, pq.zero_point),
                     shape_signature=out.shape_signature)
        emitter.ops.append(Operator(base.op, base.inputs, [pre], {**base.options, "fused_activation_function": 0},
                                    base.version))
        emitter.lora_branch(_lora_site(base, target, absmax(base.inputs[0]), y_abs), target, pre, pq, out, act)
    x_in, y_out = graph.inputs[0], graph.outputs[0]
    description = graph.model.description or "tflite"
    metadata = {key: bytes(graph.model.metadata_bytes(key) or b"") for key in graph.model.metadata}
    # The gates follow every input the model has (a streaming model's state inputs included).
    built_model = Model(emitter.ops, [*graph.inputs, *gates], graph.outputs, description=description, metadata=metadata,
                        buffer_groups=emitter.slot_groups(), subgraphs=graph.others + emitter.subgraphs)
    try:
        built = build_model_with_layout(built_model)
    except BuilderError as exc:
        raise InjectError(f"the model with slots cannot be written: {exc}") from exc
    return Compiled(built, None, plan, gates, emitter.slot_tensors, _act_quant(x_in), _act_quant(y_out),
                    model=built_model, source_name=name or description)


def _lora_site(op: Operator, target: SlotTarget, x_abs: float, pre_abs: float) -> LoraSite:
    x, w, out = op.inputs[0], op.inputs[1], op.outputs[0]
    assert x is not None and w is not None and x.quant is not None
    if op.op == "FULLY_CONNECTED":
        fan_in = w.shape[1]
        rows = math.prod(x.shape) // fan_in
        in_shape, window, kernel = (rows, fan_in), None, (1, 1)
    else:
        in_shape, kernel = x.shape, (w.shape[1], w.shape[2])
        window = {f: op.options[f] for f in _WINDOW_FIELDS if f in op.options}
        window["fused_activation_function"] = 0
    return LoraSite(target.layer, x, float(x.quant.scale[0]), x_abs, tuple(in_shape), out.shape, window, kernel,
                    _dequantized_absmax(w), pre_abs)


@dataclass(frozen=True)
class BaseWeights:
    """A weighted operator's constants dequantized from the file (real = scale * (q - zero point)),
    in the file's layouts: FULLY_CONNECTED [out, in], CONV_2D [out, kh, kw, in],
    DEPTHWISE_CONV_2D [1, kh, kw, in * multiplier]; `bias` None when the operator has none.

    What a float mirror of the model needs (to train a PEFT LoRA on the very base the slots sit
    on) and what the packer's fan-in and output checks are made against."""

    ref: str  # "#<operator index>"
    op: str
    kernel: np.ndarray  # float64
    bias: np.ndarray | None  # float64


def _dequantize(t: Tensor) -> np.ndarray:
    assert t.data is not None
    values = t.data.astype(np.float64)
    if t.quant is None:
        return values
    scale = t.quant.scale.astype(np.float64)
    zero = t.quant.zero_point.astype(np.float64)
    if scale.size > 1:
        shape = [1] * values.ndim
        shape[t.quant.quantized_dimension] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (values - zero) * scale


def base_weights(model: bytes, target: str) -> BaseWeights:
    """The dequantized kernel and bias of the FULLY_CONNECTED, CONV_2D or DEPTHWISE_CONV_2D
    operator `target` names (`#<index>` or its output tensor name)."""
    graph = _read_graph(bytes(model))
    index = next(iter(_resolve_targets(graph, SlotPlan((SlotTarget(target),)))))
    op = graph.ops[index]
    if op.op not in LORA_OPS or op.inputs[1] is None or not op.inputs[1].is_constant:
        raise InjectError(f"operator #{index} ({op.op}) has no constant weights; base weights are read from "
                          f"{', '.join(LORA_OPS)}")
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    return BaseWeights(f"#{index}", op.op, _dequantize(op.inputs[1]),
                       None if bias is None or not bias.is_constant else _dequantize(bias))


def _act_quant(t: Tensor) -> ActQuant | None:
    if t.quant is None or t.quant.scale.size != 1:
        return None
    return ActQuant(float(t.quant.scale[0]), int(t.quant.zero_point[0]))


__all__ = ["BaseWeights", "InjectError", "LORA_OPS", "OperatorName", "UnknownTargetError", "base_weights", "inject_slots",
           "operator_names"]
