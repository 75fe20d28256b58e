"""What one inference of a model costs before it is deployed: MACs, and which of them the slots add.

MAC counts follow the usual definition (one per weight use): CONV_2D output elements x kernel
height x kernel width x input channels; DEPTHWISE_CONV_2D output elements x kernel height x
kernel width; FULLY_CONNECTED / BATCH_MATMUL output elements x reduction length. Other
operators (element-wise, pooling, softmax) count no MACs.

A slot's MACs are those of the operators whose weights are that slot's tensors (the LoRA A and
B products, the bottleneck's down and up projections; the gates and joining ADDs count none).
A static graph ("always" branches) computes every slot's branch on every invoke, whatever its
gate, so what a device runs is `total_macs`; `macs_with_slots[k]` is the base plus k slots'
branches, the cost of a model compiled with k slots. With "conditional" branches each slot's
branch is an IF's then-subgraph that runs only when the slot's gate is on, so an invoke with k
of S slots active costs `macs_with_active_slots[k]` (the base plus k slots' branches).

An IF operator costs the MACs of the branch it runs; where a single figure is asked for
(`model_cost`) it counts the dearer branch, the most an invoke can cost.
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


def _branches(op: OperatorDef, m: ModelDef) -> tuple[int, int] | None:
    """An IF's (then, else) subgraph indices when both exist, else None."""
    if op.op_name != "IF":
        return None
    then_index, else_index = (int(op.options.get(f, 0) or 0) for f in ("then_subgraph_index", "else_subgraph_index"))
    if not (0 < then_index < len(m.subgraphs) and 0 < else_index < len(m.subgraphs)):
        return None
    return then_index, else_index


def subgraph_macs(m: ModelDef, index: int, _depth: int = 0) -> int:
    """MACs of one row through subgraph `index`, an IF counting its dearer branch (nesting bounded
    by the subgraph count, so a cyclic file ends)."""
    if _depth > len(m.subgraphs):
        return 0
    graph = m.subgraphs[index]
    shapes = {t.index: t.shape for t in graph.tensors}
    total = 0
    for op in graph.operators:
        branches = _branches(op, m)
        total += operator_macs(op, shapes) if branches is None else max(
            subgraph_macs(m, b, _depth + 1) for b in branches)
    return total


def model_cost(model: bytes | bytearray | memoryview | ModelDef) -> ModelCost:
    """MACs of one row (batch 1) and constant bytes of a `.tflite` model (its primary subgraph;
    an IF counts its dearer branch)."""
    m = model if isinstance(model, ModelDef) else read_model(model)
    shapes = {t.index: t.shape for t in m.main.tensors}
    per_op = tuple((op.op_name, operator_macs(op, shapes) if _branches(op, m) is None
                    else max(subgraph_macs(m, b) for b in _branches(op, m) or ())) for op in m.main.operators)
    return ModelCost(sum(n for _, n in per_op), int(sum(b.length for b in m.buffers)), per_op)


@dataclass(frozen=True)
class SlotCostReport:
    """The cost of a bundle's base and of its slots (see the module docstring)."""

    operators: int  # of every subgraph
    slot_operators: int  # operators of the slot branches (always: every one runs on every invoke)
    base_macs: int
    slot_macs: tuple[int, ...]  # per slot
    flash_bytes: int
    flash_base_bytes: int
    flash_slot_bytes: int  # the slot ranges, alignment padding included
    slot_payload_bytes: int  # the slot tensors themselves
    alignment: int
    conditional: bool = False  # the branches are IF branches on the gates (see the module docstring)

    @property
    def total_macs(self) -> int:
        """MACs with every slot's branch running: each invoke (always), the most one can cost (conditional)."""
        return self.base_macs + sum(self.slot_macs)

    @property
    def macs_with_active_slots(self) -> tuple[int, ...]:
        """MACs of an invoke with 0, 1, ..., S slots' gates on."""
        if not self.conditional:
            return (self.total_macs,) * (len(self.slot_macs) + 1)
        return self.macs_with_slots

    @property
    def macs_with_slots(self) -> tuple[int, ...]:
        """MACs with 0, 1, ..., S slots compiled in."""
        return tuple(self.base_macs + sum(self.slot_macs[:k]) for k in range(len(self.slot_macs) + 1))

    def to_json(self) -> dict[str, object]:
        macs: dict[str, object] = {"base": self.base_macs, "per_slot": list(self.slot_macs), "total": self.total_macs,
                                   "with_slots": list(self.macs_with_slots)}
        if self.conditional:  # written only then: the manifests of static graphs stay as they were
            macs.update(branches="conditional", with_active_slots=list(self.macs_with_active_slots))
        return {
            "operators": self.operators, "slot_operators": self.slot_operators,
            "macs": macs,
            "flash": {"total": self.flash_bytes, "base": self.flash_base_bytes, "slots": self.flash_slot_bytes,
                      "slot_payload": self.slot_payload_bytes, "alignment": self.alignment},
        }


def slot_cost_report(model: bytes | bytearray | memoryview, slotmap: SlotMap | None) -> SlotCostReport:
    m = read_model(model)
    graph = m.main
    shapes = {t.index: t.shape for t in graph.tensors}
    # (subgraph, tensor index) of every slot tensor and gate input.
    slot_of: dict[tuple[int, int], int] = {}
    if slotmap is not None:
        slot_of = {(t.subgraph, t.tensor_index): s.slot for s in slotmap.slots for t in s.tensors}
        slot_of.update({(0, g.tensor_index): g.slot for g in slotmap.gates if g.tensor_index >= 0})
    num_slots = 0 if slotmap is None else slotmap.num_slots
    slot_macs = [0] * num_slots
    base_macs = 0
    slot_operators = 0
    conditional = False
    branch_outputs: set[int] = set()
    for op in graph.operators:
        branches = _branches(op, m)
        if branches is not None:
            # A conditional slot: its then-subgraph holds the slot's tensors.
            then_index, else_index = branches
            owners = {slot_of[(then_index, t.index)] for t in m.subgraphs[then_index].tensors
                      if (then_index, t.index) in slot_of}
            if owners:
                conditional = True
                slot_macs[min(owners)] += subgraph_macs(m, then_index)
                base_macs += subgraph_macs(m, else_index)  # a pass-through: none
                slot_operators += 1 + len(m.subgraphs[then_index].operators)
                continue
            base_macs += max(subgraph_macs(m, b) for b in branches)
            continue
        reads_slot = [slot_of[(0, t)] for t in op.inputs if (0, t) in slot_of]
        macs = operator_macs(op, shapes)
        if reads_slot:
            slot_macs[reads_slot[0]] += macs
            branch_outputs.update(op.outputs)
        elif any(t in branch_outputs for t in op.inputs) and op.op_name != "ADD":
            branch_outputs.update(op.outputs)  # inside a branch (the ADD that joins it is the base's)
            base_macs += macs  # no weights of its own: none in the branches tinyswap emits
        else:
            base_macs += macs
        if reads_slot or any(t in branch_outputs for t in op.outputs):
            slot_operators += 1
    slots = () if slotmap is None else slotmap.slots
    flash_slots = sum(s.length for s in slots)
    return SlotCostReport(
        operators=sum(len(g.operators) for g in m.subgraphs),
        slot_operators=slot_operators,
        base_macs=base_macs, slot_macs=tuple(slot_macs), flash_bytes=len(m.data),
        flash_base_bytes=len(m.data) - flash_slots, flash_slot_bytes=flash_slots,
        slot_payload_bytes=sum(t.length for s in slots for t in s.tensors),
        alignment=0 if slotmap is None else slotmap.alignment, conditional=conditional,
    )


__all__ = ["MAC_OPS", "ModelCost", "SlotCostReport", "model_cost", "operator_macs", "slot_cost_report", "subgraph_macs"]
