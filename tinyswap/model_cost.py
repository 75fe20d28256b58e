"""What one inference of a model costs before it is deployed: MACs, and which of them the slots add.

MAC counts follow the usual definition (one per weight use): CONV_2D output elements x kernel
height x kernel width x input channels; DEPTHWISE_CONV_2D output elements x kernel height x
kernel width; FULLY_CONNECTED / BATCH_MATMUL output elements x reduction length. Other
operators (element-wise, pooling, softmax) count no MACs.

A slot's MACs are those of the operators whose weights are that slot's tensors (the LoRA A and
B products, the bottleneck's down and up projections; the gates and joining ADDs count none).
A static graph computes every slot's branch on every invoke, whatever its gate, so what a
device runs is `total_macs`; `macs_with_slots[k]` is the base plus k slots' branches, the cost
of a model compiled with k slots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.reader import ModelDef, OperatorDef, read_model
from tinyswap.slotmap import SlotMap

MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")


def operator_macs(op: OperatorDef, shapes: dict[int, tuple[int, ...]]) -> int:
    """MACs of one operator for one row (batch 1)."""
    if op.op_name not in MAC_OPS or not op.outputs:
        return 0
    out = shapes.get(op.outputs[0], ())
    out_elems = int(np.prod(out[1:], dtype=np.int64)) if len(out) > 1 else int(np.prod(out, dtype=np.int64))
    if op.op_name == "CONV_2D":
        w = shapes[op.inputs[1]]  # [out_c, kh, kw, in_c]
        return int(out_elems * w[1] * w[2] * w[3])
    if op.op_name == "DEPTHWISE_CONV_2D":
        w = shapes[op.inputs[1]]  # [1, kh, kw, out_c]
        return int(out_elems * w[1] * w[2])
    if op.op_name == "FULLY_CONNECTED":
        return int(out_elems * shapes[op.inputs[1]][-1])  # weights [out, in]
    a = shapes[op.inputs[0]]
    return int(out_elems * (a[-2] if op.options.get("adj_x", False) else a[-1]))


@dataclass(frozen=True)
class ModelCost:
    macs_per_row: int
    weight_bytes: int  # constant bytes one inference reads (all constant buffers)
    per_op: tuple[tuple[str, int], ...]  # (operator name, MACs) in graph order


def model_cost(model: bytes | bytearray | memoryview | ModelDef) -> ModelCost:
    """MACs of one row (batch 1) and constant bytes of a `.tflite` model (its primary subgraph)."""
    m = model if isinstance(model, ModelDef) else read_model(model)
    shapes = {t.index: t.shape for t in m.main.tensors}
    per_op = tuple((op.op_name, operator_macs(op, shapes)) for op in m.main.operators)
    return ModelCost(sum(n for _, n in per_op), int(sum(b.length for b in m.buffers)), per_op)


@dataclass(frozen=True)
class SlotCostReport:
    """The cost of a bundle's base and of its slots (see the module docstring)."""

    operators: int
    slot_operators: int  # operators of the slot branches (every one runs on every invoke)
    base_macs: int
    slot_macs: tuple[int, ...]  # per slot
    flash_bytes: int
    flash_base_bytes: int
    flash_slot_bytes: int  # the slot ranges, alignment padding included
    slot_payload_bytes: int  # the slot tensors themselves
    alignment: int

    @property
    def total_macs(self) -> int:
        return self.base_macs + sum(self.slot_macs)

    @property
    def macs_with_slots(self) -> tuple[int, ...]:
        """MACs with 0, 1, ..., S slots compiled in."""
        return tuple(self.base_macs + sum(self.slot_macs[:k]) for k in range(len(self.slot_macs) + 1))

    def to_json(self) -> dict[str, object]:
        return {
            "operators": self.operators, "slot_operators": self.slot_operators,
            "macs": {"base": self.base_macs, "per_slot": list(self.slot_macs), "total": self.total_macs,
                     "with_slots": list(self.macs_with_slots)},
            "flash": {"total": self.flash_bytes, "base": self.flash_base_bytes, "slots": self.flash_slot_bytes,
                      "slot_payload": self.slot_payload_bytes, "alignment": self.alignment},
        }


def slot_cost_report(model: bytes | bytearray | memoryview, slotmap: SlotMap | None) -> SlotCostReport:
    m = read_model(model)
    graph = m.main
    shapes = {t.index: t.shape for t in graph.tensors}
    slot_of: dict[int, int] = {}
    if slotmap is not None:
        slot_of = {t.tensor_index: s.slot for s in slotmap.slots for t in s.tensors}
        slot_of.update({g.tensor_index: g.slot for g in slotmap.gates if g.tensor_index >= 0})
    num_slots = 0 if slotmap is None else slotmap.num_slots
    slot_macs = [0] * num_slots
    base_macs = 0
    branch_outputs: set[int] = set()
    for op in graph.operators:
        reads_slot = [slot_of[t] for t in op.inputs if t in slot_of]
        macs = operator_macs(op, shapes)
        if reads_slot:
            slot_macs[reads_slot[0]] += macs
            branch_outputs.update(op.outputs)
        elif any(t in branch_outputs for t in op.inputs) and op.op_name != "ADD":
            branch_outputs.update(op.outputs)  # inside a branch (the ADD that joins it is the base's)
            base_macs += macs  # no weights of its own: none in the branches tinyswap emits
        else:
            base_macs += macs
    slots = () if slotmap is None else slotmap.slots
    flash_slots = sum(s.length for s in slots)
    return SlotCostReport(
        operators=len(graph.operators),
        slot_operators=sum(1 for op in graph.operators if any(t in slot_of for t in op.inputs)
                           or any(t in branch_outputs for t in op.outputs)),
        base_macs=base_macs, slot_macs=tuple(slot_macs), flash_bytes=len(m.data),
        flash_base_bytes=len(m.data) - flash_slots, flash_slot_bytes=flash_slots,
        slot_payload_bytes=sum(t.length for s in slots for t in s.tensors),
        alignment=0 if slotmap is None else slotmap.alignment,
    )


__all__ = ["MAC_OPS", "ModelCost", "SlotCostReport", "model_cost", "operator_macs", "slot_cost_report"]
