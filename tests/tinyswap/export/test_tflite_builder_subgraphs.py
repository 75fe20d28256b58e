"""The builder's subgraph list: indices per subgraph, shared buffers and operator codes, string
options and resource handles (what a stateful model's initialiser needs), and the refusals."""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap.export.errors import BuilderError, GraphError, OptionError
from tinyswap.export.tflite_builder import Model, Operator, Quant, Subgraph, Tensor, build_model_with_layout
from tinyswap.reader import read_model
from tinyswap.schema import TensorType

Q = Quant(0.1, 0)


def _add_graph(prefix: str, constant: int) -> tuple[list[Operator], Tensor, Tensor]:
    x, y = Tensor("x", (1, 2), np.int8, quant=Q), Tensor("y", (1, 2), np.int8, quant=Q)
    c = Tensor(f"{prefix}/c", (1, 2), np.int8, data=np.full((1, 2), constant, np.int8), quant=Q)
    return [Operator("ADD", [x, c], [y], {"fused_activation_function": 0})], x, y


def test_subgraphs_are_written_in_order_with_their_own_indices() -> None:
    ops0, x0, y0 = _add_graph("main", 1)
    ops1, x1, y1 = _add_graph("one", 2)  # the same names as the main subgraph's: allowed per subgraph
    handle = Tensor("h", (), np.uint8, resource=True)
    init = [Operator("VAR_HANDLE", [], [handle], {"container": "", "shared_name": "state"})]
    built = build_model_with_layout(Model(ops0, [x0], [y0], subgraphs=[Subgraph(ops1, [x1], [y1], "one"),
                                                                         Subgraph(init, [], [], "init")]))
    m = read_model(built.data)
    assert [s.name for s in m.subgraphs] == ["main", "one", "init"]
    assert built.tensor_subgraphs[x1] == 1 and built.tensor_indices[x1] == built.tensor_indices[x0] == 0
    assert [op.op_name for op in m.subgraphs[1].operators] == ["ADD"]
    var = m.subgraphs[2].operators[0]
    assert var.options["shared_name"] == "state" and m.subgraphs[2].tensors[0].type == TensorType.RESOURCE
    # Buffers are shared by the whole file: each constant has its own, whichever subgraph uses it.
    c1 = ops1[0].inputs[1]
    offset, length = built.buffer_ranges[c1]
    assert built.data[offset : offset + length] == bytes([2, 2])
    assert len(m.operator_codes) == 2  # ADD once for both subgraphs, VAR_HANDLE


def test_refusals() -> None:
    ops, x, y = _add_graph("main", 1)
    with pytest.raises(GraphError, match="belongs to subgraph 0 already"):
        build_model_with_layout(Model(ops, [x], [y], subgraphs=[Subgraph([], [x], [x])]))
    c = Tensor("c", (1,), np.bool_)
    with pytest.raises(GraphError, match="else_subgraph_index 2 names no other subgraph"):
        build_model_with_layout(Model([Operator("IF", [c, x], [Tensor("z", (1, 2), np.int8, quant=Q)],
                                                {"then_subgraph_index": 1, "else_subgraph_index": 2})],
                                      [c, x], [], subgraphs=[Subgraph([], [Tensor("t", (1, 2), np.int8, quant=Q)],
                                                                      [])]))
    with pytest.raises(OptionError, match="shared_name must be a str"):
        Operator("VAR_HANDLE", [], [Tensor("h", (), np.uint8, resource=True)], {"shared_name": 3})
    with pytest.raises(BuilderError, match="resource handle"):
        Tensor("h", (1,), np.uint8, data=np.zeros(1, np.uint8), resource=True)
