"""Stitch Vela's `ethos-u` operators and the adapter branches into one model, and build its twin.

Per segment, Vela's output holds one `ethos-u` custom operator whose inputs are its command
stream and its read-only area (encoded weights, biases, lookup tables: constants), its scratch
area (arena), and the segment's input feature maps; its outputs are the segment's outputs. The
command stream addresses feature maps relative to the scratch area, at the offsets Vela records
in its `OfflineMemoryAllocation` metadata. The stitched model keeps each operator's constants
and custom options byte for byte, gives every segment a window of its own in the arena (its
scratch at the window's start, its feature maps at the window's start plus Vela's offsets:
windows never overlap, so one segment's scratch never clobbers a feature map another segment
or a branch still needs), and lets TFLite Micro plan every other tensor online (-1).

The reference twin is the same graph with every `ethos-u` operator replaced by the base
operators it was compiled from: what our interpreter and TFLite Micro can run on a host.
Both keep the compiler's slot groups last, so slot tensors stay plain aligned buffers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from tinyswap.export.compiler import Compiled
from tinyswap.export.npu.errors import StitchError
from tinyswap.export.npu.segments import Partition, Segment
from tinyswap.export.npu.vela import ETHOS_U_CUSTOM_CODE, VelaRun
from tinyswap.export.tflite_builder import Model, Operator, Tensor, build_model_with_layout, tensor_indices
from tinyswap.reader import read_model
from tinyswap.slotmap import round_up

OFFLINE_PLAN = "OfflineMemoryAllocation"  # TFLite Micro's metadata name for offline arena offsets
WINDOW_ALIGNMENT = 16  # TFLite Micro's arena alignment


@dataclass(frozen=True)
class NpuOperator:
    """One segment's `ethos-u` operator, ready to be placed in the stitched graph.

    offsets: (tensor, offset inside the segment's window) for every tensor Vela planned;
    window: bytes of the arena window the segment needs (its scratch area)."""

    segment: Segment
    run: VelaRun
    operator: Operator
    constants: tuple[Tensor, ...]  # command stream, read-only area: Vela's bytes, verbatim
    scratch: tuple[Tensor, ...]
    offsets: tuple[tuple[Tensor, int], ...]
    window: int


def npu_operator(segment: Segment, run: VelaRun) -> NpuOperator:
    """Take the `ethos-u` operator out of Vela's output for `segment`; `StitchError` unless the
    output is exactly one such operator over the segment's own inputs and outputs."""
    where = f"segment {segment.index} ({run.config})"
    parsed = read_model(run.output)
    graph = parsed.main
    ops = graph.operators
    if len(ops) != 1 or ops[0].op_name != f"CUSTOM:{ETHOS_U_CUSTOM_CODE}":
        raise StitchError(f"{where}: Vela's output is {[op.op_name for op in ops]}, not one {ETHOS_U_CUSTOM_CODE} "
                          "operator")
    op = ops[0]
    ours = {t.name: t for t in (*segment.inputs, *segment.outputs)}
    names_in = [graph.tensors[i].name for i in graph.inputs]
    names_out = [graph.tensors[i].name for i in graph.outputs]
    if sorted(names_in) != sorted(t.name for t in segment.inputs) or \
            sorted(names_out) != sorted(t.name for t in segment.outputs):
        raise StitchError(f"{where}: Vela's graph reads {names_in} and writes {names_out}; the segment reads "
                          f"{[t.name for t in segment.inputs]} and writes {[t.name for t in segment.outputs]}")
    tensors: dict[int, Tensor] = {}
    constants: list[Tensor] = []
    scratch: list[Tensor] = []
    for i in (*op.inputs, *op.outputs):
        if i < 0 or i in tensors:
            continue
        t = graph.tensors[i]
        length = parsed.buffers[t.buffer].length
        if t.name in ours:
            mine = ours[t.name]
            if np.dtype(mine.dtype) != t.dtype or int(np.prod(mine.shape)) != int(np.prod(t.shape)):
                raise StitchError(f"{where}: Vela's {t.name!r} is {t.shape} {t.dtype}, the graph's is "
                                  f"{mine.shape} {np.dtype(mine.dtype)}")
            tensors[i] = mine
        elif length:
            data = parsed.tensor_data(t)
            assert data is not None
            tensors[i] = Tensor(f"npu{segment.index}/{t.name}", tuple(t.shape), t.dtype, data=np.array(data))
            constants.append(tensors[i])
        else:
            tensors[i] = Tensor(f"npu{segment.index}/{t.name}", tuple(t.shape), t.dtype)
            scratch.append(tensors[i])
    lo, length = op.custom_options_span
    custom = Operator("CUSTOM", [tensors[i] if i >= 0 else None for i in op.inputs],
                      [tensors[i] for i in op.outputs], custom_code=ETHOS_U_CUSTOM_CODE,
                      custom_options=bytes(run.output[lo : lo + length]) if op.has_custom_options else None)
    plan = parsed.metadata_bytes(OFFLINE_PLAN)
    if plan is None:
        raise StitchError(f"{where}: Vela's output has no {OFFLINE_PLAN} metadata to place its feature maps by")
    values = np.frombuffer(bytes(plan), "<i4")
    if len(values) != 3 + len(graph.tensors) or values[1] != 1:
        raise StitchError(f"{where}: {OFFLINE_PLAN} has {len(values)} entries for {len(graph.tensors)} tensors")
    offsets = []
    end = 0
    for i, t in tensors.items():
        offset = int(values[3 + i])
        if offset >= 0:
            offsets.append((t, offset))
            end = max(end, offset + int(np.prod(t.shape)) * np.dtype(t.dtype).itemsize)
    return NpuOperator(segment, run, custom, tuple(constants), tuple(scratch), tuple(offsets),
                       round_up(end, WINDOW_ALIGNMENT))


def _slot_groups(compiled: Compiled) -> list[list[Tensor]]:
    """The compiler's slot groups (each slot's tensors, contiguous, the first aligned)."""
    if compiled.plan is None:
        return []
    return [[st.tensor for st in compiled.slot_tensors if st.slot == s] for s in range(compiled.plan.num_slots)]


def _rebuilt(compiled: Compiled, model: Model) -> Compiled:
    """`compiled` with `model` built in place of its own graph: same slots, gates and scales."""
    return dataclasses.replace(compiled, built=build_model_with_layout(model), model=model)


@dataclass(frozen=True)
class Windows:
    """Where each segment's window starts in the arena, and the bytes all windows take."""

    starts: tuple[int, ...]
    total: int


def stitch(compiled: Compiled, part: Partition, npu_ops: list[NpuOperator]) -> tuple[Compiled, Windows]:
    """The NPU bundle's model: CPU operators as compiled, each segment as its `ethos-u` operator."""
    assert compiled.model is not None
    by_segment = {n.segment.index: n for n in npu_ops}
    ops: list[Operator] = []
    scratch: list[Tensor] = []
    for step in part.steps:
        if isinstance(step, Segment):
            ops.append(by_segment[step.index].operator)
            scratch += by_segment[step.index].scratch
        else:
            ops.append(step)
    starts = []
    at = 0
    for n in npu_ops:
        starts.append(at)
        at += n.window
    model = Model(ops, list(compiled.model.inputs), list(compiled.model.outputs),
                  description=f"{compiled.model.description} ethos-u", buffer_groups=_slot_groups(compiled),
                  scratch_tensors=scratch)
    index = tensor_indices(model)
    plan = np.full(len(index), -1, np.int64)
    for start, n in zip(starts, npu_ops):
        for t, offset in n.offsets:
            k = index[t]
            if plan[k] >= 0 and plan[k] != start + offset:
                raise StitchError(f"tensor {t.name!r} is a feature map of two NPU segments at different arena "
                                  f"offsets ({plan[k]} and {start + offset}); put a CPU operator between them")
            plan[k] = start + offset
    model.metadata = {OFFLINE_PLAN: np.concatenate([[0, 1, len(index)], plan]).astype("<i4").tobytes()}
    return _rebuilt(compiled, model), Windows(tuple(starts), at)


def twin(compiled: Compiled, part: Partition) -> Compiled:
    """The reference twin: the stitched graph with every segment's original operators in place of
    its `ethos-u` operator (runs in our interpreter and in TFLite Micro)."""
    assert compiled.model is not None
    ops: list[Operator] = []
    for step in part.steps:
        ops.extend(step.operators if isinstance(step, Segment) else [step])
    model = Model(ops, list(compiled.model.inputs), list(compiled.model.outputs),
                  description=f"{compiled.model.description} ethos-u twin", buffer_groups=_slot_groups(compiled))
    return _rebuilt(compiled, model)


__all__ = ["NpuOperator", "OFFLINE_PLAN", "Windows", "npu_operator", "stitch", "twin"]
