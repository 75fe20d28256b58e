"""The static-graph compiler: float spec + slot plan + calibration -> INT8 `.tflite` with slots.

Every adapter slot exists from the start as zero-initialised INT8 constants, so a swap only
writes bytes at offsets recorded in the slot map. Per targeted layer and slot:

- LoRA on dense/conv2d `y = act(W x + b)`: `pre = W x + b` (no activation), then for each
  slot `a = A_s x` (FULLY_CONNECTED, or CONV_2D with the layer's window), `u = B_s a`
  (FULLY_CONNECTED or 1x1 CONV_2D), `g = u * gate_s` (MUL), `pre = pre + g` (ADD), the last
  ADD carrying the layer's activation.
- Bottleneck on a layer's output h: `d = relu(D_s h + bD)`, `u = U_s d + bU`, `g = u * gate_s`,
  `h = h + g`.

Zero-gate identity (headroom off): every ADD's output has input 1's scale and zero point,
input 1's scale is at least input 2's, and a zero gate puts input 2 at its zero point, so TFLite's
int8 ADD returns input 1 bit for bit (docs/architecture.md, "Slots"). The pre-activation tensor then uses the
layer's output quantization, and the last ADD's fused activation clamps exactly as the
layer's fused activation did.

Slot scale policy "weight_relative" (fixed at compile time, read by the packer):
  A entries up to 4 / sqrt(K) (K = fan-in), B entries (alpha / r folded in) up to
  2 * delta_ratio * max|W| * sqrt(K / r_max); a = A x within 8 * max|x|; the B output within
  delta_ratio * max|pre|;
  D, U likewise on the feature width; gates run over [0, gate_max] (int8, zero point -128).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tinyswap.export.float_model import conv_out_size, forward, infer_shapes
from tinyswap.export.quantize import ActQuant, activation_quant, quantize_bias, quantize_weights, symmetric_quant
from tinyswap.export.errors import SlotPlanError
from tinyswap.export.slot_plan import SlotBranches, SlotPlan, SlotTarget
from tinyswap.export.spec import LayerSpec, ModelSpec, SpecError
from tinyswap.export.tflite_builder import BuiltModel, Model, Operator, Quant, Subgraph, Tensor, build_model_with_layout

_ACT = {"none": 0, "relu": 1, "relu6": 3}
_UNARY_OPS = {"sigmoid": "LOGISTIC", "tanh": "TANH", "hard_swish": "HARD_SWISH", "leaky_relu": "LEAKY_RELU"}
# Outputs whose int8 quantization TFLite fixes: LOGISTIC and SOFTMAX in units of 1/256 from
# -128, TANH in units of 1/128 around zero.
_FIXED_OUTPUT_QUANT = {"softmax": ActQuant(float(np.float32(1 / 256)), -128),
                       "sigmoid": ActQuant(float(np.float32(1 / 256)), -128),
                       "tanh": ActQuant(float(np.float32(1 / 128)), 0)}


def _q(aq: ActQuant) -> Quant:
    return Quant(aq.scale, aq.zero_point)


@dataclass
class SlotTensor:
    slot: int
    layer: str
    kind: str
    role: str  # "A", "B", "D", "U", "bias_D", "bias_U", "bias_A", "bias_B"
    tensor: Tensor


@dataclass
class Compiled:
    built: BuiltModel
    spec: ModelSpec | None  # None for slots injected into an existing `.tflite` (`source_name` names it)
    plan: SlotPlan | None
    gates: list[Tensor]
    slot_tensors: list[SlotTensor] = field(default_factory=list)
    input_quant: ActQuant | None = None
    output_quant: ActQuant | None = None
    # The description the bytes were built from (operators by reference): what a back end that
    # re-partitions the graph (the Ethos-U stitcher, `tinyswap.export.npu`) walks.
    model: Model | None = None
    source_name: str | None = None

    @property
    def data(self) -> bytes:
        return self.built.data

    @property
    def name(self) -> str:
        """The model's name for the manifest: the spec's, or the injected file's `source_name`."""
        return self.spec.name if self.spec is not None else (self.source_name or "model")


@dataclass(frozen=True)
class LoraSite:
    """Where a LoRA branch attaches and what fixes its scales: the layer's input `x`, its shapes,
    `window` (None for FULLY_CONNECTED; else the base's CONV_2D/DEPTHWISE_CONV_2D padding,
    strides and dilation, which A repeats with a `kernel_size` window), the largest |x|, |W| and
    |pre-activation| (from calibration for a compiled spec, from the file's own quantization for
    an injected `.tflite`)."""

    layer: str
    x: Tensor
    x_scale: float
    x_abs: float
    in_shape: tuple[int, ...]  # for FULLY_CONNECTED: (rows, fan-in)
    out_shape: tuple[int, ...]
    window: dict | None
    kernel_size: tuple[int, int]
    w_abs: float
    pre_abs: float


class SlotEmitter:
    """Emits slot branches (LoRA, bottleneck), their gates and gated ADDs into `ops`.

    Shared by the compiler (a float spec) and slot injection into an existing `.tflite`
    (`tinyswap.export.inject`), so both make the same branches with the same scale policy.

    With conditional branches (`SlotBranches.CONDITIONAL`) each slot's branch on each layer is a
    subgraph of its own (`subgraphs`, file indices from 1) that an IF runs when the slot's gate
    is above zero (`gate_s > off`, one GREATER per slot); otherwise a pass-through subgraph (one
    per layer, no operators) hands the running sum on unchanged. The slot's constants live in
    its branch subgraph, still one buffer group per slot. A LoRA layer's activation (and, with
    headroom, the requantization to the layer's output) then follows the last IF as its own
    RELU/RELU6 (QUANTIZE) operator, since no branch is sure to run."""

    def __init__(self, plan: SlotPlan | None, batch: int, first_subgraph: int = 1) -> None:
        self.plan, self.batch = plan, batch
        self.first_subgraph = first_subgraph  # the file index the first branch subgraph gets
        self.ops: list[Operator] = []
        self.slot_tensors: list[SlotTensor] = []
        self.gates: list[Tensor] = []
        self.gate_views: dict[tuple[int, int], Tensor] = {}
        self.subgraphs: list[Subgraph] = []
        self.conditions: dict[int, Tensor] = {}
        self.gate_off: Tensor | None = None
        self.passthroughs: dict[str, int] = {}  # layer -> its pass-through subgraph's file index
        self._main_ops: list[Operator] | None = None  # the primary subgraph's, while a branch is emitted

    @property
    def conditional(self) -> bool:
        return self.plan is not None and self.plan.branches == SlotBranches.CONDITIONAL

    # -- helpers ------------------------------------------------------------------------------
    def act(self, name: str, shape: tuple[int, ...], aq: ActQuant) -> Tensor:
        return Tensor(name, tuple(shape), np.int8, quant=_q(aq))

    def const(self, name: str, data: np.ndarray, scales: np.ndarray, axis: int = 0, alignment: int = 16) -> Tensor:
        zp = np.zeros(np.asarray(scales).size, np.int64)
        return Tensor(name, data.shape, data.dtype, data=data, quant=Quant(np.asarray(scales, np.float32), zp, axis),
                      alignment=alignment)

    def make_gates(self) -> list[Tensor]:
        """One gate input per slot, shape (batch, 1): int8, scale gate_max / 255, gate 0.0 exactly -128."""
        assert self.plan is not None
        if self.conditional and self.batch != 1:
            raise SlotPlanError(f"conditional branches need a batch-1 model (an IF reads one condition per invoke); "
                                f"this model's batch is {self.batch}")
        gq = ActQuant(float(np.float32(self.plan.gate_max / 255.0)), -128)
        self.gates = [self.act(f"gate_{s}", (self.batch, 1), gq) for s in range(self.plan.num_slots)]
        return self.gates

    # -- conditional branches -----------------------------------------------------------------
    def condition(self, slot: int) -> Tensor:
        """`gate_slot > off` as the one-element bool an IF reads (emitted once, where first used)."""
        if slot not in self.conditions:
            gate = self.gates[slot]
            if self.gate_off is None:  # gate 0.0, shared by every slot's comparison
                self.gate_off = Tensor("gates/off", gate.shape, np.int8, data=np.full(gate.shape, -128, np.int8),
                                       quant=gate.quant)
            on = Tensor(f"gate_{slot}/on", gate.shape, np.bool_)
            self.ops.append(Operator("GREATER", [gate, self.gate_off], [on]))
            self.conditions[slot] = on
        return self.conditions[slot]

    def open_branch(self, slot: int, layer: str, main_inputs: list[Tensor]) -> list[Tensor]:
        """Start slot `slot`'s branch subgraph on `layer`: returns its own copies of `main_inputs`
        (what the IF will pass it); operators go to the branch until `close_branch`."""
        assert self._main_ops is None, "branches do not nest"
        self._main_ops, self.ops = self.ops, []
        return [Tensor(f"slot{slot}/{layer}/in{i}", t.shape, t.dtype, quant=t.quant)
                for i, t in enumerate(main_inputs)]

    def close_branch(self, slot: int, layer: str, main_inputs: list[Tensor], branch_inputs: list[Tensor],
                     result: Tensor, main_out: Tensor) -> None:
        """End the branch (its output: `result`) and emit `main_out = IF(gate on, branch, pass-through)`."""
        assert self._main_ops is not None
        then_index = self.first_subgraph + len(self.subgraphs)
        self.subgraphs.append(Subgraph(self.ops, branch_inputs, [result], f"slot{slot}/{layer}"))
        self.ops, self._main_ops = self._main_ops, None
        current = main_inputs[0]
        if layer not in self.passthroughs:
            # TFLM's IF passes every input to either branch; this one hands input 0 on untouched.
            through = [Tensor(f"{layer}/passthrough/in{i}", t.shape, t.dtype, quant=t.quant)
                       for i, t in enumerate(main_inputs)]
            self.passthroughs[layer] = self.first_subgraph + len(self.subgraphs)
            self.subgraphs.append(Subgraph([], through, through[:1], f"{layer}/passthrough"))
        self.ops.append(Operator("IF", [self.condition(slot), *main_inputs], [main_out],
                                 {"then_subgraph_index": then_index, "else_subgraph_index": self.passthroughs[layer]}))

    def slot_groups(self) -> list[list[Tensor]]:
        """Each slot's constants, one buffer group per slot, the first starting on the plan's alignment."""
        groups = []
        if self.plan is not None:
            for s in range(self.plan.num_slots):
                group = [st.tensor for st in self.slot_tensors if st.slot == s]
                group[0].alignment = self.plan.alignment  # the slot's range starts on its own boundary
                groups.append(group)
        return groups

    def gate(self, slot: int, rank: int) -> Tensor:
        """The slot's gate input, reshaped to broadcast against a rank-`rank` tensor."""
        if rank == 2:
            return self.gates[slot]
        key = (slot, rank)
        if key not in self.gate_views:
            g = self.gates[slot]
            view = Tensor(f"gate_{slot}_rank{rank}", (self.batch,) + (1,) * (rank - 1), np.int8, quant=g.quant)
            shape = Tensor(f"gate_{slot}_rank{rank}/shape", (rank,), np.int32,
                           data=np.array((-1,) + (1,) * (rank - 1), np.int32))
            self.ops.append(Operator("RESHAPE", [g, shape], [view]))
            self.gate_views[key] = view
        return self.gate_views[key]

    # -- slot branches ------------------------------------------------------------------------
    def lora_branch(self, site: LoraSite, target: SlotTarget, pre: Tensor, pq: ActQuant, out: Tensor,
                    act: str) -> None:
        """`out = act(pre + sum_s gate_s * B_s (A_s x))`, one zero-filled (A_s, B_s) per slot."""
        assert self.plan is not None
        r = target.max_rank
        in_shape, out_shape, name = site.in_shape, site.out_shape, site.layer
        kh, kw = site.kernel_size
        fan_in = in_shape[-1] * kh * kw
        # A entries up to 4 / sqrt(K): a Kaiming- or Gaussian-initialised LoRA A with margin.
        # B entries (alpha / r folded in) up to 2 * delta_ratio * max|W| * sqrt(K / r): then
        # B @ A, whose typical entry is ~ sqrt(r) * rms(A) * rms(B), reaches delta_ratio * max|W|.
        a_scale = np.float32(4.0 / math.sqrt(fan_in) / 127.0)
        b_scale = np.float32(2.0 * target.delta_ratio * site.w_abs * math.sqrt(fan_in / r) / 127.0)
        # a = A x: ~ rms(x) for a unit-norm row of A, with room for 8x the input range.
        aq = symmetric_quant(8.0 * site.x_abs)
        uq = symmetric_quant(target.delta_ratio * site.pre_abs)
        current = pre
        joined = self.conditional and (act != "none" or not _same_quant(pq, out))
        for s in range(self.plan.num_slots):
            last = s == self.plan.num_slots - 1
            # (always: the view is made where the gated ADD needs it, keeping those files as they were)
            gate = self.gate(s, len(out_shape)) if self.conditional else None
            main_inputs: list = [current, site.x, gate]
            cur, x, gate = self.open_branch(s, name, main_inputs) if self.conditional else main_inputs
            if site.window is None:
                a_w = self.const(f"slot{s}/{name}/A", np.zeros((r, in_shape[-1]), np.int8), [a_scale])
                b_w = self.const(f"slot{s}/{name}/B", np.zeros((out_shape[-1], r), np.int8), [b_scale])
                a_t = self.act(f"slot{s}/{name}/a", (*in_shape[:-1], r), aq)
                u_t = self.act(f"slot{s}/{name}/u", out_shape, uq)
                self.ops.append(Operator("FULLY_CONNECTED", [x, a_w], [a_t]))
                self.ops.append(Operator("FULLY_CONNECTED", [a_t, b_w], [u_t]))
                group = [a_w, b_w]
            else:
                a_w = self.const(f"slot{s}/{name}/A", np.zeros((r, kh, kw, in_shape[-1]), np.int8), [a_scale])
                b_w = self.const(f"slot{s}/{name}/B", np.zeros((out_shape[-1], 1, 1, r), np.int8), [b_scale])
                # LiteRT's int8 CONV_2D requires a bias: zero int32 biases live in the slot too.
                a_b = self.const(f"slot{s}/{name}/bias_A", np.zeros(r, np.int32), [np.float32(site.x_scale) * a_scale])
                b_b = self.const(f"slot{s}/{name}/bias_B", np.zeros(out_shape[-1], np.int32),
                                 [np.float32(aq.scale) * b_scale])
                a_t = self.act(f"slot{s}/{name}/a", (*out_shape[:-1], r), aq)
                u_t = self.act(f"slot{s}/{name}/u", out_shape, uq)
                self.ops.append(Operator("CONV_2D", [x, a_w, a_b], [a_t], site.window))
                self.ops.append(Operator("CONV_2D", [a_t, b_w, b_b], [u_t],
                                         {"padding": 1, "stride_h": 1, "stride_w": 1, "fused_activation_function": 0}))
                group = [a_w, b_w, a_b, b_b]
            summed = out if last and not joined else self.act(f"slot{s}/{name}/sum", current.shape, pq)
            if self.conditional:
                result = self.act(f"slot{s}/{name}/branch_sum", current.shape, pq)
                self.gated_add(name, s, u_t, uq, cur, pq, gate, result, "none")
                self.close_branch(s, name, main_inputs, [cur, x, gate], result, summed)
            else:
                self.gated_add(name, s, u_t, uq, cur, pq, self.gate(s, len(out_shape)), summed, act if last else "none")
            current = summed
            roles = ["A", "B", "bias_A", "bias_B"]
            self.slot_tensors += [SlotTensor(s, name, "lora", role, t) for role, t in zip(roles, group)]
        if joined:
            self.join(name, current, pq, out, act)

    def join(self, name: str, summed: Tensor, pq: ActQuant, out: Tensor, act: str) -> None:
        """The layer's output from the conditional branches' sum: requantized to the output's
        scale when headroom gave the sum its own (QUANTIZE), then the activation (RELU/RELU6 in
        one quantization: TFLM's int8 RELU6 never rescales). Without headroom RELU maps the sum
        exactly as the fused activation of the slot-free layer does (multiplier 1: a clamp)."""
        if not _same_quant(pq, out):
            requantized = out if act == "none" else Tensor(f"{name}/requantized", out.shape, np.int8, quant=out.quant)
            self.ops.append(Operator("QUANTIZE", [summed], [requantized]))
            summed = requantized
        if act != "none":
            self.ops.append(Operator(act.upper(), [summed], [out]))

    def bottleneck_branch(self, name: str, target: SlotTarget, h: Tensor, hq: ActQuant, out: Tensor) -> None:
        """`out = h + sum_s gate_s * (U_s relu(D_s h + bD_s) + bU_s)` on the activation `h`."""
        assert self.plan is not None
        r = target.max_rank
        shape = h.shape
        c = shape[-1]
        h_abs = max(abs(v) for v in hq.real_range)
        d_scale = np.float32(4.0 / (127.0 * math.sqrt(c)))
        dq = activation_quant(0.0, 4.0 * h_abs)  # post-ReLU
        uq = symmetric_quant(target.delta_ratio * h_abs)
        u_scale = np.float32(uq.scale * 127.0 / (4.0 * h_abs * math.sqrt(r)) / 127.0)
        current = h
        conv = len(shape) == 4
        for s in range(self.plan.num_slots):
            last = s == self.plan.num_slots - 1
            # (always: the view is made where the gated ADD needs it, keeping those files as they were)
            gate = self.gate(s, len(shape)) if self.conditional else None
            main_inputs: list = [current, gate]
            cur, gate = self.open_branch(s, name, main_inputs) if self.conditional else main_inputs
            d_shape, u_shape = ((r, 1, 1, c), (c, 1, 1, r)) if conv else ((r, c), (c, r))
            d_w = self.const(f"slot{s}/{name}/D", np.zeros(d_shape, np.int8), [d_scale])
            u_w = self.const(f"slot{s}/{name}/U", np.zeros(u_shape, np.int8), [u_scale])
            d_b = self.const(f"slot{s}/{name}/bias_D", np.zeros(r, np.int32), [np.float32(hq.scale) * d_scale])
            u_b = self.const(f"slot{s}/{name}/bias_U", np.zeros(c, np.int32), [np.float32(dq.scale) * u_scale])
            d_t = self.act(f"slot{s}/{name}/d", (*shape[:-1], r), dq)
            u_t = self.act(f"slot{s}/{name}/u", shape, uq)
            if conv:
                one = {"padding": 1, "stride_h": 1, "stride_w": 1}
                self.ops.append(Operator("CONV_2D", [cur, d_w, d_b], [d_t], {**one, "fused_activation_function": 1}))
                self.ops.append(Operator("CONV_2D", [d_t, u_w, u_b], [u_t], {**one, "fused_activation_function": 0}))
            else:
                self.ops.append(Operator("FULLY_CONNECTED", [cur, d_w, d_b], [d_t], {"fused_activation_function": 1}))
                self.ops.append(Operator("FULLY_CONNECTED", [d_t, u_w, u_b], [u_t]))
            summed = out if last else self.act(f"slot{s}/{name}/sum", current.shape, hq)
            if self.conditional:
                result = self.act(f"slot{s}/{name}/branch_sum", current.shape, hq)
                self.gated_add(name, s, u_t, uq, cur, hq, gate, result, "none")
                self.close_branch(s, name, main_inputs, [cur, gate], result, summed)
            else:
                self.gated_add(name, s, u_t, uq, cur, hq, self.gate(s, len(shape)), summed, "none")
            current = summed
            self.slot_tensors += [SlotTensor(s, name, "bottleneck", role, t)
                                  for role, t in zip(["D", "U", "bias_D", "bias_U"], [d_w, u_w, d_b, u_b])]

    def gated_add(self, name: str, s: int, u_t: Tensor, uq: ActQuant, current: Tensor, cq: ActQuant,
                  gate: Tensor, target: Tensor, act: str) -> None:
        """`target = act(current + u_t * gate)`."""
        assert self.plan is not None
        # The gated branch's scale never exceeds input 1's: the zero-gate identity needs it.
        gq = ActQuant(float(np.float32(min(uq.scale * self.plan.gate_max, cq.scale))), 0)
        g_t = self.act(f"slot{s}/{name}/gated", u_t.shape, gq)
        self.ops.append(Operator("MUL", [u_t, gate], [g_t]))
        self.ops.append(Operator("ADD", [current, g_t], [target], {"fused_activation_function": _ACT[act]}))


def _same_quant(aq: ActQuant, t: Tensor) -> bool:
    assert t.quant is not None
    return bool(np.float32(aq.scale) == t.quant.scale[0]) and aq.zero_point == int(t.quant.zero_point[0])


class _Emitter(SlotEmitter):
    def __init__(self, spec: ModelSpec, plan: SlotPlan | None, calibration: np.ndarray) -> None:
        super().__init__(plan, spec.input_shape[0])
        self.spec = spec
        self.shapes = infer_shapes(spec)
        values = forward(spec, calibration, capture_pre_activation=True)
        self.ranges = {k: (float(v.min()), float(v.max())) for k, v in values.items()}
        self.targets = {t.layer: t for t in (plan.targets if plan else ())}

    def absmax(self, key: str) -> float:
        lo, hi = self.ranges[key]
        return max(abs(lo), abs(hi), 1e-6)

    # -- base layers --------------------------------------------------------------------------
    def weighted(self, layer: LayerSpec, x: Tensor, xq: ActQuant, out: Tensor, act: str, bias_needed: bool) -> None:
        spec = self.spec
        k = spec.kernel(layer.name).astype(np.float64)
        b = spec.bias(layer.name)
        if layer.type == "dense":
            w, axis = k.T, 0  # [units, in]
            op, opts = "FULLY_CONNECTED", {"fused_activation_function": _ACT[act]}
        elif layer.type == "conv2d":
            w, axis = np.transpose(k, (3, 0, 1, 2)), 0  # [out, kh, kw, in]
            op, opts = "CONV_2D", self.window_opts(layer, act)
        else:
            w, axis = k.reshape(1, *k.shape[:2], -1), 3  # [1, kh, kw, in * m]
            op, opts = "DEPTHWISE_CONV_2D", {**self.window_opts(layer, act), "depth_multiplier": layer.depth_multiplier}
        wq, ws = quantize_weights(w, axis)
        wt = self.const(f"{layer.name}/kernel", wq, ws, axis)
        inputs = [x, wt]
        channels = ws.size
        if b is not None or bias_needed:
            bq, bs = quantize_bias(b if b is not None else np.zeros(channels), xq.scale, ws)
            inputs.append(self.const(f"{layer.name}/bias", bq, bs))
        self.ops.append(Operator(op, inputs, [out], opts))

    @staticmethod
    def window_opts(layer: LayerSpec, act: str) -> dict:
        return {"padding": 0 if layer.padding == "same" else 1, "stride_h": layer.strides[0],
                "stride_w": layer.strides[1], "dilation_h_factor": layer.dilation[0],
                "dilation_w_factor": layer.dilation[1], "fused_activation_function": _ACT[act]}

    # -- layer kinds lowered to more than one operator, or to a differently named one ---------
    def lower(self, layer: LayerSpec, xs: list[Tensor], qs: list[ActQuant], out: Tensor, oq: ActQuant) -> None:
        x, xq = xs[0], qs[0]
        name = layer.name
        if layer.type in ("sub", "mul"):
            opts = {"fused_activation_function": 0}
            self.ops.append(Operator(layer.type.upper(), [x, xs[1]], [out], opts))
        elif layer.type in _UNARY_OPS:
            opts = {"alpha": layer.alpha} if layer.type == "leaky_relu" else {}
            self.ops.append(Operator(_UNARY_OPS[layer.type], [x], [out], opts))
        elif layer.type == "global_avg_pool1d":
            axes = Tensor(f"{name}/axes", (1,), np.int32, data=np.array([1], np.int32))
            self.ops.append(Operator("MEAN", [x, axes], [out], {"keep_dims": False}))
        elif layer.type == "global_max_pool2d":
            # MAX_POOL_2D over the whole map: the same int8 maximum the converter's REDUCE_MAX
            # takes, with a kernel TFLite Micro and tinyswap already have.
            _, h, w, c = x.shape
            pooled = self.act(f"{name}/pooled", (x.shape[0], 1, 1, c), xq)
            self.ops.append(Operator("MAX_POOL_2D", [x], [pooled], {
                "padding": 1, "stride_h": 1, "stride_w": 1, "filter_height": h, "filter_width": w}))
            self.reshape(pooled, out)
        elif layer.type == "pad":
            pads = np.array(((0, 0), *layer.paddings, (0, 0)), np.int32)
            self.ops.append(Operator("PAD", [x, Tensor(f"{name}/paddings", pads.shape, np.int32, data=pads)], [out]))
        elif layer.type == "concat":
            # TFLite Micro concatenates bytes: every input must carry the output's quantization,
            # so an input quantized otherwise is requantized first (int8 QUANTIZE).
            same = []
            for i, (t, q) in enumerate(zip(xs, qs)):
                if q != oq:
                    r = self.act(f"{name}/input{i}", t.shape, oq)
                    self.ops.append(Operator("QUANTIZE", [t], [r]))
                    t = r
                same.append(t)
            self.ops.append(Operator("CONCATENATION", same, [out],
                                     {"axis": layer.axis % len(out.shape), "fused_activation_function": 0}))
        elif layer.type == "affine":
            self.affine(layer, x, xq, out)
        else:  # pragma: no cover - parse_layer refuses unknown types
            raise SpecError(f"layer {name!r}: the compiler has no lowering for {layer.type}")

    def reshape(self, x: Tensor, out: Tensor) -> None:
        shape = Tensor(f"{out.name}/shape", (len(out.shape),), np.int32, data=np.array((-1, *out.shape[1:]), np.int32))
        self.ops.append(Operator("RESHAPE", [x, shape], [out]))

    def affine(self, layer: LayerSpec, x: Tensor, xq: ActQuant, out: Tensor) -> None:
        """`x * scale + offset` per channel as a 1x1 DEPTHWISE_CONV_2D: per-channel int8 scales
        and an int32 bias keep each channel's precision (a MUL by a per-tensor int8 constant
        would not); inputs that are not 4-D are viewed as [batch, 1, positions, channels]."""
        scale = self.spec.weights[f"{layer.name}/scale"].astype(np.float64)
        offset = self.spec.weights[f"{layer.name}/offset"]
        wq, ws = quantize_weights(scale.reshape(1, 1, 1, -1), 3)
        bq, bs = quantize_bias(offset, xq.scale, ws)
        c = scale.size
        four_d = len(x.shape) == 4
        view = (x.shape[0], 1, int(np.prod(x.shape[1:-1], dtype=np.int64)), c)
        src, dst = x, out
        if not four_d:
            src = self.act(f"{layer.name}/view", view, xq)
            self.reshape(x, src)
            dst = Tensor(f"{layer.name}/affine", view, np.int8, quant=out.quant)
        self.ops.append(Operator("DEPTHWISE_CONV_2D", [src, self.const(f"{layer.name}/scale", wq, ws, 3),
                                                       self.const(f"{layer.name}/offset", bq, bs)], [dst],
                                 {"padding": 1, "stride_h": 1, "stride_w": 1, "depth_multiplier": 1,
                                  "fused_activation_function": 0}))
        if not four_d:
            self.reshape(dst, out)

    # -- slots --------------------------------------------------------------------------------
    def lora(self, layer: LayerSpec, target: SlotTarget, x: Tensor, xq: ActQuant, pre: Tensor,
             pq: ActQuant, out: Tensor, act: str) -> None:
        in_shape = self.shapes[layer.inputs[0]]
        conv = layer.type == "conv2d"
        site = LoraSite(
            layer.name, x, xq.scale, max(abs(v) for v in xq.real_range), in_shape, self.shapes[layer.name],
            self.window_opts(layer, "none") if conv else None, tuple(layer.kernel_size) if conv else (1, 1),
            max(float(np.abs(self.spec.kernel(layer.name)).max()), 1e-6), self.absmax(f"{layer.name}:pre"))
        self.lora_branch(site, target, pre, pq, out, act)

    def bottleneck(self, layer: LayerSpec, target: SlotTarget, h: Tensor, hq: ActQuant, out: Tensor) -> None:
        self.bottleneck_branch(layer.name, target, h, hq, out)


def compile_model(spec: ModelSpec, plan: SlotPlan | None, calibration: np.ndarray) -> Compiled:
    """Quantize `spec` with `calibration` (float32, batch first) and emit it with `plan`'s slots."""
    calibration = np.asarray(calibration, dtype=np.float32)
    if calibration.ndim != len(spec.input_shape) or calibration.shape[1:] != tuple(spec.input_shape[1:]):
        raise SpecError(f"calibration data of shape {calibration.shape} does not fit input {spec.input_shape}")
    if plan is not None:
        for t in plan.targets:
            layer = spec.layer(t.layer)  # raises with the known names
            if t.kind == "lora" and layer.type not in ("dense", "conv2d"):
                raise SpecError(f"slot plan targets {t.layer!r} ({layer.type}) with LoRA; only dense and conv2d")
    e = _Emitter(spec, plan, calibration)
    iq = activation_quant(*e.ranges[spec.input_name])
    x_in = e.act(spec.input_name, spec.input_shape, iq)
    graph_inputs = [x_in]
    if plan is not None:
        graph_inputs += e.make_gates()
    tensors: dict[str, tuple[Tensor, ActQuant]] = {spec.input_name: (x_in, iq)}
    for layer in spec.layers:
        ins = [tensors[i] for i in layer.inputs]
        x, xq = ins[0]
        shape = e.shapes[layer.name]
        target = e.targets.get(layer.name)
        if layer.type in _FIXED_OUTPUT_QUANT:
            oq = _FIXED_OUTPUT_QUANT[layer.type]
        elif layer.type in ("max_pool2d", "avg_pool2d", "flatten", "reshape", "relu6", "global_max_pool2d", "pad"):
            oq = xq  # byte-moving ops (and TFLM's RELU6) keep the input quantization
        else:
            oq = activation_quant(*e.ranges[layer.name])
        out = e.act(layer.name, shape, oq)
        if layer.weighted:
            if target is not None and target.kind == "lora":
                pq = activation_quant(*e.ranges[f"{layer.name}:pre"]) if plan.headroom else oq  # type: ignore[union-attr]
                pre = e.act(f"{layer.name}/pre", shape, pq)
                e.weighted(layer, x, xq, pre, "none", bias_needed=True)
                e.lora(layer, target, x, xq, pre, pq, out, layer.activation)
            else:
                e.weighted(layer, x, xq, out, layer.activation, bias_needed=layer.type != "dense")
        elif layer.type in ("max_pool2d", "avg_pool2d"):
            op = "MAX_POOL_2D" if layer.type == "max_pool2d" else "AVERAGE_POOL_2D"
            e.ops.append(Operator(op, [x], [out], {
                "padding": 0 if layer.padding == "same" else 1, "stride_h": layer.strides[0], "stride_w": layer.strides[1],
                "filter_height": layer.kernel_size[0], "filter_width": layer.kernel_size[1]}))
        elif layer.type == "global_avg_pool2d":
            axes = Tensor(f"{layer.name}/axes", (2,), np.int32, data=np.array([1, 2], np.int32))
            e.ops.append(Operator("MEAN", [x, axes], [out], {"keep_dims": False}))
        elif layer.type in ("flatten", "reshape"):
            target_shape = Tensor(f"{layer.name}/shape", (len(shape),), np.int32, data=np.array((-1, *shape[1:]), np.int32))
            e.ops.append(Operator("RESHAPE", [x, target_shape], [out]))
        elif layer.type == "add":
            e.ops.append(Operator("ADD", [x, ins[1][0]], [out], {"fused_activation_function": 0}))
        elif layer.type == "softmax":
            e.ops.append(Operator("SOFTMAX", [x], [out], {"beta": 1.0}))
        elif layer.type in ("relu", "relu6"):
            e.ops.append(Operator(layer.type.upper(), [x], [out]))
        else:
            e.lower(layer, [t for t, _ in ins], [q for _, q in ins], out, oq)
        if target is not None and target.kind == "bottleneck":
            adapted = e.act(f"{layer.name}/adapted", shape, oq)
            e.bottleneck(layer, target, out, oq, adapted)
            out = adapted
        tensors[layer.name] = (out, oq)
    y, yq = tensors[spec.output]
    model = Model(e.ops, graph_inputs, [y], description=f"tinyswap:{spec.name}", buffer_groups=e.slot_groups(),
                  subgraphs=e.subgraphs)
    built = build_model_with_layout(model)
    return Compiled(built, spec, plan, e.gates, e.slot_tensors, iq, yq, model)


__all__ = ["Compiled", "LoraSite", "SlotEmitter", "SlotTensor", "compile_model", "conv_out_size"]
