"""The partition: adapter branches on the CPU, maximal runs of base operators as NPU segments."""

from __future__ import annotations

import pytest

from tinyswap.export.npu.segments import Segment, partition

from tests.npu_cases import MODELS, source


def _touches_a_slot(op) -> bool:
    """Independent of the classifier: branch tensors are named slot<s>/... and gate_<s>..."""
    return any(t is not None and t.name.startswith(("slot", "gate_")) for t in (*op.inputs, *op.outputs))


@pytest.mark.parametrize("name", list(MODELS))
def test_branches_go_to_the_cpu_and_the_base_to_segments(name):
    compiled = source(name)
    part = partition(compiled)
    flat = [op for step in part.steps for op in (step.operators if isinstance(step, Segment) else [step])]
    assert flat == compiled.model.operators  # the order is the compiler's
    assert all(_touches_a_slot(op) for op in part.cpu_operators)
    assert not any(_touches_a_slot(op) for seg in part.segments for op in seg.operators)
    kinds = [isinstance(s, Segment) for s in part.steps]
    assert all(not (a and b) for a, b in zip(kinds, kinds[1:]))  # segments are maximal
    assert part.transitions == sum(a != b for a, b in zip(kinds, kinds[1:])) > 0


def test_digits_cnn_partition():
    part = partition(source("digits-cnn"))
    assert [[op.op for op in s.operators] for s in part.segments] == [
        ["CONV_2D"], ["CONV_2D"], ["MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED"], ["SOFTMAX"]]
    # Four segments with three branch groups between them: N C N C N C N.
    assert part.transitions == 6
    third = part.segments[2]
    assert [t.name for t in third.inputs] == ["conv2"]
    assert [t.name for t in third.outputs] == ["flatten", "fc/pre"]  # the LoRA branch on fc reads flatten


def test_extra_cpu_operators_split_a_segment():
    compiled = source("digits-cnn")
    pool = next(i for i, op in enumerate(compiled.model.operators) if op.op == "MAX_POOL_2D")
    part = partition(compiled, cpu={pool})
    assert [[op.op for op in s.operators] for s in part.segments][2] == ["RESHAPE", "FULLY_CONNECTED"]
    assert compiled.model.operators[pool] in part.cpu_operators
