"""On-device training of a LoRA adapter for one slot, with the base frozen: the maths and its RAM.

What is trained, and why that one: the LoRA on the dense layer that produces the logits (the
layer whose slot sum feeds the SOFTMAX; the digits CNN's `fc`). Its input is the base's own
int8 activation, so a sample's forward pass up to the adapter is exactly the INT8 base the
device runs (`personalise.py` reads it from the interpreter with every gate off) and is saved
once per sample, as int8, 256 bytes for the digits CNN. A LoRA on an earlier layer would save
its input instead (conv2's: 512 bytes a sample, 38 KB for 75 samples) and backpropagate
through everything after it (straight through the dequantized base weights); within a 64 KB budget the logits layer is what fits, so other
slot layers stay zero (inert) in a trained package and a plan without such a layer is refused.

The forward pass of training is the slot branch as the int8 graph computes it, over the exact
int8 base logits: `a = fq_a(A x)`, `u = fq_u(B a)`, `z = fq_sum(pre + u)`, where `fq` rounds
to the graph tensor's scale and clips to its int8 range (the slot's fixed quantization), and
gradients pass through the rounding as a straight-through estimate (zero where the value was
clipped). Between the slot's sum and the loss there is only the softmax, so no base weight
lies on the backward path. Factors train in float32, as a Cortex-M7/M55 FPU would, with Adam; the packer's core
(`tinyswap.slot_quant`) then fits them into the slot's int8 scales.

RAM: every array the trainer holds is allocated once, up front, in `TrainerBuffers` (what
firmware would place statically), and `plan_ram` computes the same bytes from the shapes
alone, so the step is refused before anything is allocated when it would not fit
(`TrainingMemoryError`). Time: `TrainingWork` counts forward and backward multiply-accumulates
and optimizer updates; `TrainingWork.seconds` turns them into seconds on a device profile.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np

from tinyswap.firmware_sim.errors import TrainingConfigError, TrainingMemoryError, TrainingPlanError
from tinyswap.firmware_sim.profiles import DeviceProfile
from tinyswap.reader import read_model

F32 = np.dtype(np.float32)

# Float32 cost on the FPU. ASSUMED (no measured CMSIS-DSP figure at hand for these shapes): a
# single-precision multiply-accumulate in a Cortex-M7 loop issues one VFMA.F32 and one VLDR per
# operand pair, about 2 cycles a MAC; one Adam update (two moment updates, a square root, a
# divide and the step, VSQRT/VDIV 14 cycles each on the M7) about 40 cycles a parameter.
FLOAT_CYCLES_PER_MAC = 2.0
ADAM_CYCLES_PER_PARAMETER = 40.0
ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8


@dataclass(frozen=True)
class TrainingConfig:
    """How one adaptation trains: passes over the local training samples, the LoRA rank (at most
    the slot's), the minibatch, Adam's learning rate, and the seed of the initial A and the
    sample order (the same seed and samples give the same package: a restart after a power cut
    reproduces it)."""

    epochs: int = 60
    rank: int = 4
    batch: int = 8
    learning_rate: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        limits = {"epochs": (1, 1000), "rank": (1, 64), "batch": (1, 256)}
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise TrainingConfigError(f"training {name} must be an integer in [{lo}, {hi}], got {value!r}")
        lr = self.learning_rate
        if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not 0 < lr <= 1:
            raise TrainingConfigError(f"training learning_rate must be a number in (0, 1], got {lr!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise TrainingConfigError(f"training seed must be a non-negative integer, got {self.seed!r}")


@dataclass(frozen=True)
class Quant:
    """An int8 graph tensor's scale and zero point."""

    scale: float
    zero_point: int

    @property
    def real_range(self) -> tuple[float, float]:
        return (self.scale * (-128 - self.zero_point), self.scale * (127 - self.zero_point))

    def dequantize(self, q: np.ndarray, out: np.ndarray) -> np.ndarray:
        np.subtract(q, self.zero_point, out=out, dtype=F32)
        out *= F32.type(self.scale)
        return out


@dataclass(frozen=True)
class LogitsSlot:
    """The graph facts of a LoRA slot on the logits layer, read from the model and its slot map."""

    layer: str
    features: int  # the layer's fan-in K
    classes: int
    r_max: int
    x_tensor: int  # the base activation feeding the layer (int8 [rows, K])
    pre_tensor: int  # the base layer's output before the slots (int8 [rows, classes])
    x: Quant
    pre: Quant
    a: Quant  # the slot's `a = A x` tensor
    u: Quant  # `u = B a`
    total: Quant  # the sum of base and slot (what the softmax reads)
    a_scale: float  # the slot tensor A's scale
    b_scale: float


def _quant(tensor: Any) -> Quant:
    q = tensor.quantization
    if q is None or q.scale.size != 1:
        raise TrainingPlanError(f"tensor {tensor.name!r} is not per-tensor int8")
    return Quant(float(q.scale[0]), int(q.zero_point[0]))


def find_logits_slot(model: bytes | bytearray | memoryview, slotmap: Mapping[str, Any]) -> LogitsSlot:
    """The LoRA slot whose sum feeds the model's SOFTMAX, by walking the graph from slot 0's A
    tensor: A x -> a, B a -> u, u x gate -> gated, pre + gated -> sum, ..., SOFTMAX."""
    graph = read_model(model).main
    consumers: dict[int, list[Any]] = {}
    for op in graph.operators:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op)

    def only(index: int, name: str) -> Any:
        ops = [op for op in consumers.get(index, []) if op.op_name == name]
        if len(ops) != 1:
            raise TrainingPlanError(f"tensor {graph.tensors[index].name!r} does not feed exactly one {name}")
        return ops[0]

    layout = slotmap["slots"][0]["tensors"]
    if any(t.get("subgraph", 0) for t in layout):
        raise TrainingPlanError("this model's slots are conditional (IF branches); on-device training needs a "
                                "model exported with the plan's default branches ('always')")
    candidates = []
    for t in layout:
        if t["kind"] != "lora" or t["role"] != "A" or len(t["shape"]) != 2:
            continue
        a_op = only(t["tensor_index"], "FULLY_CONNECTED")
        x_index, a_index = a_op.inputs[0], a_op.outputs[0]
        u_op = only(a_index, "FULLY_CONNECTED")
        gated = only(u_op.outputs[0], "MUL").outputs[0]
        add = only(gated, "ADD")
        pre_index = next(i for i in add.inputs if i != gated)
        end = add.outputs[0]
        while any(op.op_name == "ADD" for op in consumers.get(end, [])):  # the other slots' sums
            end = only(end, "ADD").outputs[0]
        if any(op.op_name == "SOFTMAX" for op in consumers.get(end, [])):
            roles = {r["role"]: r for r in layout if r["layer"] == t["layer"]}
            candidates.append(LogitsSlot(
                layer=t["layer"], features=int(t["shape"][1]), classes=int(roles["B"]["shape"][0]),
                r_max=int(t["shape"][0]), x_tensor=x_index, pre_tensor=pre_index,
                x=_quant(graph.tensors[x_index]), pre=_quant(graph.tensors[pre_index]),
                a=_quant(graph.tensors[a_index]), u=_quant(graph.tensors[u_op.outputs[0]]),
                total=_quant(graph.tensors[add.outputs[0]]), a_scale=float(t["scales"][0]),
                b_scale=float(roles["B"]["scales"][0])))
    if len(candidates) != 1:
        raise TrainingPlanError("on-device training needs exactly one LoRA slot on the dense layer whose output "
                                f"feeds the softmax; this bundle has {len(candidates)} (compile the plan with a "
                                "LoRA target on the logits layer)")
    return candidates[0]


@dataclass(frozen=True)
class RamPlan:
    """Bytes of every array the trainer holds at its peak (all of them live at once)."""

    samples: int  # the local samples as the model's int8 input
    saved_activations: int  # int8 layer inputs and base logits of the training samples
    labels: int
    parameters: int  # float32 A and B
    gradients: int
    optimizer: int  # Adam's two moments
    batch: int  # one minibatch's float32 activations and their gradients

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def to_json(self) -> dict[str, int]:
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "total": self.total}


def _shapes(slot: LogitsSlot, samples: int, sample_bytes: int, train: int, config: TrainingConfig
            ) -> dict[str, tuple[str, tuple[int, ...], np.dtype]]:
    """name -> (RamPlan field, shape, dtype): the one description `plan_ram` and
    `TrainerBuffers` both follow."""
    k, c, r, b = slot.features, slot.classes, config.rank, min(config.batch, train)
    i8, u8, bool_ = np.dtype(np.int8), np.dtype(np.uint8), np.dtype(bool)
    return {
        "samples": ("samples", (samples, sample_bytes), i8),
        "x": ("saved_activations", (train, k), i8), "pre": ("saved_activations", (train, c), i8),
        "labels": ("labels", (train,), u8),
        "A": ("parameters", (r, k), F32), "B": ("parameters", (c, r), F32),
        "gA": ("gradients", (r, k), F32), "gB": ("gradients", (c, r), F32),
        "mA": ("optimizer", (r, k), F32), "vA": ("optimizer", (r, k), F32),
        "mB": ("optimizer", (c, r), F32), "vB": ("optimizer", (c, r), F32),
        "xb": ("batch", (b, k), F32), "ab": ("batch", (b, r), F32), "zb": ("batch", (b, c), F32),
        "preb": ("batch", (b, c), F32), "gab": ("batch", (b, r), F32), "gzb": ("batch", (b, c), F32),
        "a_in": ("batch", (b, r), bool_), "u_in": ("batch", (b, c), bool_), "z_in": ("batch", (b, c), bool_),
    }


def plan_ram(slot: LogitsSlot, samples: int, sample_bytes: int, train: int, config: TrainingConfig) -> RamPlan:
    """What `TrainerBuffers` will allocate, from the shapes alone."""
    totals = {f.name: 0 for f in fields(RamPlan)}
    for field_name, shape, dtype in _shapes(slot, samples, sample_bytes, train, config).values():
        totals[field_name] += int(np.prod(shape)) * dtype.itemsize
    return RamPlan(**totals)


def check_fits(plan: RamPlan, budget: int) -> None:
    if plan.total > budget:
        parts = ", ".join(f"{k} {v}" for k, v in plan.to_json().items() if k != "total")
        raise TrainingMemoryError(f"on-device training needs {plan.total} bytes of RAM ({parts}), over its budget "
                                  f"of {budget}; use fewer samples, a lower rank or a smaller batch")


class TrainerBuffers:
    """Every array of one training run, allocated once (the accounting's ground truth)."""

    def __init__(self, slot: LogitsSlot, samples: int, sample_bytes: int, train: int, config: TrainingConfig):
        self.arrays = {name: np.zeros(shape, dtype)
                       for name, (_, shape, dtype) in _shapes(slot, samples, sample_bytes, train, config).items()}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())


@dataclass(frozen=True)
class TrainingWork:
    """What a training run computed, for the cycle model."""

    steps: int
    forward_macs: int
    backward_macs: int
    parameter_updates: int

    def seconds(self, profile: DeviceProfile) -> float:
        cycles = (self.forward_macs + self.backward_macs) * FLOAT_CYCLES_PER_MAC \
            + self.parameter_updates * ADAM_CYCLES_PER_PARAMETER
        return cycles / profile.clock_hz


@dataclass(frozen=True)
class TrainedLora:
    a: np.ndarray  # float32 [rank, K] (the trainer's own buffer, not a copy)
    b: np.ndarray  # float32 [classes, rank]
    work: TrainingWork
    final_loss: float  # mean cross-entropy of the last epoch


def _fake_quant(values: np.ndarray, q: Quant, inside: np.ndarray) -> None:
    """Round to `q`'s grid and clip to its int8 range, in place; `inside` gets where the value
    was within the range (the straight-through gradient passes there only). The grid is the
    scale's multiples whatever the zero point (an integer shift of the int8 codes)."""
    lo, hi = q.real_range
    np.greater_equal(values, lo, out=inside)
    np.logical_and(inside, values <= hi, out=inside)
    np.clip(values, lo, hi, out=values)
    np.divide(values, F32.type(q.scale), out=values)
    np.round(values, out=values)
    values *= F32.type(q.scale)


def _adam(w: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float) -> None:
    """One Adam step in place, with `g` as the only scratch (no temporaries: what a device
    loop does element by element). `lr` already carries the bias corrections."""
    beta1, beta2 = ADAM_BETAS
    m *= beta1 / (1 - beta1)  # m = beta1 m + (1 - beta1) g, as (1 - beta1) (m beta1 / (1 - beta1) + g)
    m += g
    m *= 1 - beta1
    np.multiply(g, g, out=g)
    v *= beta2 / (1 - beta2)
    v += g
    v *= 1 - beta2
    np.sqrt(v, out=g)
    g += F32.type(ADAM_EPSILON)
    np.divide(m, g, out=g)
    g *= F32.type(lr)
    w -= g


def train(buffers: TrainerBuffers, slot: LogitsSlot, config: TrainingConfig) -> TrainedLora:
    """Train A and B on the saved activations in `buffers` (x, pre, labels filled by the caller).

    Cross-entropy of softmax(z) against the labels, Adam with bias correction, B starting at
    zero so the first step's adapter is exactly the base. The loop allocates nothing beyond
    a few scalars and index vectors (checked with tracemalloc by the tests)."""
    x_q, pre_q, labels = buffers["x"], buffers["pre"], buffers["labels"]
    n = x_q.shape[0]
    rng = np.random.default_rng(config.seed)
    a_w, b_w = buffers["A"], buffers["B"]
    rng.standard_normal(out=a_w, dtype=np.float32)
    a_w *= F32.type(1.0 / np.sqrt(slot.features))
    b_w[...] = 0
    g_a, g_b = buffers["gA"], buffers["gB"]
    batch = buffers["xb"].shape[0]
    beta1, beta2 = ADAM_BETAS
    step = 0
    loss = 0.0
    for _ in range(config.epochs):
        order = rng.permutation(n)
        loss = 0.0
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            m = len(idx)
            xb, ab, zb, preb = buffers["xb"][:m], buffers["ab"][:m], buffers["zb"][:m], buffers["preb"][:m]
            gab, gzb = buffers["gab"][:m], buffers["gzb"][:m]
            a_in, u_in, z_in = buffers["a_in"][:m], buffers["u_in"][:m], buffers["z_in"][:m]
            for row, i in enumerate(idx):
                slot.x.dequantize(x_q[i], xb[row])
                slot.pre.dequantize(pre_q[i], preb[row])
            # forward: a = fq_a(A x), u = fq_u(B a), z = fq_sum(pre + u)
            np.matmul(xb, a_w.T, out=ab)
            _fake_quant(ab, slot.a, a_in)
            np.matmul(ab, b_w.T, out=zb)
            _fake_quant(zb, slot.u, u_in)
            zb += preb
            _fake_quant(zb, slot.total, z_in)
            # softmax cross-entropy; its gradient is (p - onehot) / m
            zb -= zb.max(axis=1, keepdims=True)
            np.exp(zb, out=gzb)
            gzb /= gzb.sum(axis=1, keepdims=True)
            for row, i in enumerate(idx):
                label = int(labels[i])
                loss -= float(np.log(max(float(gzb[row, label]), 1e-12)))
                gzb[row, label] -= 1.0
            gzb /= F32.type(m)
            gzb *= z_in
            gzb *= u_in
            # backward, straight through the roundings (zero where clipped)
            np.matmul(gzb.T, ab, out=g_b)
            np.matmul(gzb, b_w, out=gab)
            gab *= a_in
            np.matmul(gab.T, xb, out=g_a)
            step += 1
            lr = config.learning_rate * np.sqrt(1 - beta2**step) / (1 - beta1**step)
            _adam(a_w, g_a, buffers["mA"], buffers["vA"], lr)
            _adam(b_w, g_b, buffers["mB"], buffers["vB"], lr)
        loss /= n
    k, c, r = slot.features, slot.classes, config.rank
    rows = config.epochs * n
    work = TrainingWork(steps=step, forward_macs=rows * (r * k + c * r),
                        backward_macs=rows * (c * r + c * r + r * k),  # dB, da, dA
                        parameter_updates=step * (r * k + c * r))
    return TrainedLora(a_w, b_w, work, loss)


__all__ = ["ADAM_CYCLES_PER_PARAMETER", "FLOAT_CYCLES_PER_MAC", "LogitsSlot", "Quant", "RamPlan", "TrainedLora",
           "TrainerBuffers", "TrainingConfig", "TrainingWork", "check_fits", "find_logits_slot", "plan_ram", "train"]
