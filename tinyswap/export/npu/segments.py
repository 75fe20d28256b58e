"""Split a slotted graph into NPU segments (the base) and CPU operators (the adapter branches).

An operator is a branch operator, run on the CPU, when it reads a slot tensor, a gate, or a
tensor another branch operator made; the ADD that joins a branch back onto the base path is a
branch operator too, but its output is base again (the next base layer reads it). Everything
else is the base; maximal runs of consecutive base operators (in the compiler's order) are the
segments Vela compiles, each to one `ethos-u` custom operator. `cpu` names further operators to
keep on the CPU (ones Vela itself left there), so a segment never holds a CPU operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from tinyswap.export.compiler import Compiled
from tinyswap.export.npu.errors import StitchError
from tinyswap.export.tflite_builder import Model, Operator, Tensor


@dataclass(frozen=True)
class Segment:
    """Consecutive base operators that Vela compiles together.

    first: the index of its first operator in the compiled graph; inputs: the non-constant
    tensors it reads that are made outside it (graph inputs or CPU operators' outputs);
    outputs: the tensors it makes that are read outside it (or are graph outputs)."""

    index: int
    first: int
    operators: tuple[Operator, ...]
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    def model(self) -> Model:
        """The segment as a model of its own: what Vela compiles (`name` is its description)."""
        return Model(list(self.operators), list(self.inputs), list(self.outputs),
                     description=f"tinyswap npu segment {self.index}")


@dataclass(frozen=True)
class Partition:
    """The compiled graph in order: each step a `Segment` (NPU) or an `Operator` (CPU)."""

    steps: tuple[Segment | Operator, ...]

    @property
    def segments(self) -> tuple[Segment, ...]:
        return tuple(s for s in self.steps if isinstance(s, Segment))

    @property
    def cpu_operators(self) -> tuple[Operator, ...]:
        return tuple(s for s in self.steps if isinstance(s, Operator))

    @property
    def transitions(self) -> int:
        """Hand-overs between the NPU and the CPU in one inference (step kind changes)."""
        kinds = [isinstance(s, Segment) for s in self.steps]
        return sum(a != b for a, b in zip(kinds, kinds[1:]))


def branch_operators(compiled: Compiled) -> set[int]:
    """Indices (in the compiled graph) of the operators of the adapter branches."""
    if compiled.model is None:
        raise StitchError("the compiled model carries no graph description to partition")
    branch: set[int] = {id(st.tensor) for st in compiled.slot_tensors} | {id(g) for g in compiled.gates}
    found: set[int] = set()
    for i, op in enumerate(compiled.model.operators):
        reads = [t for t in op.inputs if t is not None]
        if not any(id(t) in branch for t in reads):
            continue
        found.add(i)
        joins = op.op == "ADD" and id(reads[0]) not in branch  # base + gated branch: base again
        if not joins:
            branch.update(id(t) for t in op.outputs)
    return found


def partition(compiled: Compiled, cpu: Iterable[int] = ()) -> Partition:
    """The compiled graph as NPU segments and CPU operators; `cpu`: further operator indices
    to keep on the CPU."""
    on_cpu = branch_operators(compiled) | set(cpu)
    assert compiled.model is not None
    ops = compiled.model.operators
    graph_outputs = {id(t) for t in compiled.model.outputs}
    runs: list[list[int]] = []
    steps: list[Segment | Operator | list[int]] = []
    for i, op in enumerate(ops):
        if i in on_cpu:
            steps.append(op)
        elif steps and isinstance(steps[-1], list):
            steps[-1].append(i)
        else:
            runs.append([i])
            steps.append(runs[-1])
    done: list[Segment | Operator] = []
    for step in steps:
        if isinstance(step, Operator):
            done.append(step)
            continue
        inside = set(step)
        made = {id(t) for i in step for t in ops[i].outputs}
        inputs: list[Tensor] = []
        for i in step:
            for t in ops[i].inputs:
                if t is not None and not t.is_constant and id(t) not in made and all(t is not u for u in inputs):
                    inputs.append(t)
        read_outside = {id(t) for j, op in enumerate(ops) if j not in inside for t in op.inputs if t is not None}
        outputs = [t for i in step for t in ops[i].outputs if id(t) in read_outside or id(t) in graph_outputs]
        done.append(Segment(len([s for s in done if isinstance(s, Segment)]), step[0],
                            tuple(ops[i] for i in step), tuple(inputs), tuple(outputs)))
    return Partition(tuple(done))


__all__ = ["Partition", "Segment", "branch_operators", "partition"]
