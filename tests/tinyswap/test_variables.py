"""Resource variables in the interpreter: the store's rules, and stateful graphs that break them.

The malformed graphs are the converter-made `models/streaming/reset_probe.tflite` edited with
LiteRT's generated flatbuffer object API (an independent writer): each edit must end in a typed
`ModelError` at `allocate_tensors`, never a crash or a silent run.
"""

from __future__ import annotations

from typing import Callable

import flatbuffers
import numpy as np
import pytest

from tinyswap.errors import ModelError
from tinyswap.interpreter import Interpreter
from tinyswap.variables import MAX_VARIABLES, ResourceVariables

from tests.conftest import REPO

schema = pytest.importorskip("ai_edge_litert.schema_py_generated")

PROBE = REPO / "models" / "streaming" / "reset_probe.tflite"
CALL_ONCE, VAR_HANDLE, READ_VARIABLE, ASSIGN_VARIABLE, ADD = 129, 142, 143, 144, 0


def test_a_variable_is_sized_by_its_first_assignment_and_reset_to_its_zero_point() -> None:
    store = ResourceVariables()
    a = store.id_for("", "state", "op 1")
    assert store.id_for("", "state", "op 2") == a  # the same name is the same variable
    assert store.id_for(None, "state", "op 3") == a  # no container: any container matches
    b = store.id_for("other", "state", "op 4")
    assert b != a
    store.allocate(a, 4, -3, "op 5")  # int8 zero point -3: TFLite Micro memsets its low byte
    store.allocate(a, 4, 7, "op 6")  # a later assignment of the same size keeps the default
    view = store.view(a, np.dtype(np.int8), (4,))
    np.testing.assert_array_equal(view, [-3] * 4)
    store.assign(a, np.array([1, 2, 3, 4], np.int8))
    np.testing.assert_array_equal(view, [1, 2, 3, 4])  # views are live
    store.reset()
    np.testing.assert_array_equal(view, [-3] * 4)
    with pytest.raises(ModelError, match="writes 8 bytes into variable 'state', which holds 4"):
        store.allocate(a, 8, None, "op 7")
    with pytest.raises(ModelError, match="reads variable 'state', which no ASSIGN_VARIABLE writes"):
        store.check_read(b, 4, "op 8")
    with pytest.raises(ModelError, match="reads 2 bytes"):
        store.check_read(a, 2, "op 9")
    assert store.nbytes == 4


def test_the_number_of_variables_is_bounded() -> None:
    store = ResourceVariables()
    for i in range(MAX_VARIABLES):
        store.id_for("", f"v{i}", "op")
    with pytest.raises(ModelError, match=f"more than {MAX_VARIABLES} resource variables"):
        store.id_for("", "one-too-many", "op")


def _edited(edit: Callable[[object], None]) -> bytes:
    model = schema.ModelT.InitFromPackedBuf(PROBE.read_bytes(), 0)
    edit(model)
    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _op(model, subgraph: int, code: int):
    return next(op for op in model.subgraphs[subgraph].operators if model.operatorCodes[op.opcodeIndex].builtinCode == code)


def _drop(model, subgraph: int, code: int) -> None:
    ops = model.subgraphs[subgraph].operators
    ops.remove(_op(model, subgraph, code))


def _set_init_index(index: int) -> Callable[[object], None]:
    def edit(model) -> None:
        _op(model, 0, CALL_ONCE).builtinOptions.initSubgraphIndex = index
    return edit


def _initial_value_of_another_size(model) -> None:
    init = model.subgraphs[1]
    value = init.tensors[_op(model, 1, ASSIGN_VARIABLE).inputs[1]]
    value.shape = np.array([1, 5], np.int32)
    model.buffers[value.buffer].data = np.zeros(20, np.uint8)


def _set_input(op, position: int, tensor: int) -> None:
    inputs = np.array(op.inputs, np.int32)  # the object API's arrays are read-only views
    inputs[position] = tensor
    op.inputs = inputs


def _add_reads_the_handle(model) -> None:
    _set_input(_op(model, 0, ADD), 1, _op(model, 0, VAR_HANDLE).outputs[0])


def _no_shared_name(model) -> None:
    for g in (0, 1):
        _op(model, g, VAR_HANDLE).builtinOptions.sharedName = None


def _read_a_plain_tensor(model) -> None:
    _set_input(_op(model, 0, READ_VARIABLE), 0, 0)  # the graph input, not a handle


@pytest.mark.parametrize("edit, message", [
    (_set_init_index(0), "init_subgraph_index 0 is not another subgraph"),
    (_set_init_index(5), "init_subgraph_index 5 is not another subgraph"),
    (lambda m: (_drop(m, 0, ASSIGN_VARIABLE), _drop(m, 1, ASSIGN_VARIABLE)), "which no ASSIGN_VARIABLE writes"),
    (_initial_value_of_another_size, "subgraph 1 operator 1 .ASSIGN_VARIABLE.: writes 20 bytes into variable "
                                     "'total', which holds 16"),
    (_add_reads_the_handle, "reads resource tensor"),
    (_no_shared_name, "without a shared_name"),
    (_read_a_plain_tensor, "is not a resource handle made by a VAR_HANDLE"),
], ids=["call-self", "call-missing", "never-assigned", "init-size", "handle-as-data", "no-name", "read-plain"])
def test_malformed_stateful_graphs_are_refused_with_a_typed_error(edit, message: str) -> None:
    interp = Interpreter(model_content=_edited(edit))
    with pytest.raises(ModelError, match=message):
        interp.allocate_tensors()


def test_the_unedited_round_trip_runs() -> None:
    """The edits above start from a model that the object API's round trip leaves runnable."""
    data = _edited(lambda m: None)
    ours = Interpreter(model_content=data)
    ours.allocate_tensors()
    reference = Interpreter(model_path=PROBE)
    reference.allocate_tensors()
    frame = np.array([[1, 2, 3, 4]], np.int8)
    for interp in (ours, reference):
        interp.set_tensor(interp.get_input_details()[0]["index"], frame)
        interp.invoke()
    out = ours.get_output_details()[0]["index"]
    np.testing.assert_array_equal(ours.get_tensor(out), reference.get_tensor(out))
    assert ours.variable_bytes == 16


def test_allocate_tensors_starts_the_state_afresh() -> None:
    interp = Interpreter(model_path=PROBE)
    interp.allocate_tensors()
    i, o = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    frame = np.array([[10, 20, 30, 40]], np.int8)
    interp.set_tensor(i, frame)
    interp.invoke()
    first = interp.get_tensor(o)
    interp.invoke()
    assert not np.array_equal(interp.get_tensor(o), first)
    interp.allocate_tensors()  # the initialiser runs again on the next invoke
    interp.set_tensor(i, frame)
    interp.invoke()
    np.testing.assert_array_equal(interp.get_tensor(o), first)
