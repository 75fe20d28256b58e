"""Write TFLite flatbuffers (`.tflite`) from a small in-memory description of their subgraphs.

Used by the per-op oracle tests (build a one-op model, run it in TFLite Micro and LiteRT) and
by the static-graph compiler (build the base model with one constant tensor per adapter slot,
and record where each slot's bytes ended up in the file).

The description (`tinyswap.export.tflite_graph`) holds *references*, not indices: an `Operator` lists the `Tensor` objects it
reads and writes, a `Model` lists its operators and its graph inputs and outputs. A private
compile step (`_plan`) validates the whole graph first, then assigns tensor, buffer and
operator-code indices; only then is anything written. Nothing here uses generated schema code:
tables are written with `flatbuffers.Builder` directly, their field slots taken from
`tinyswap.schema` (transcribed from `schema.fbs`).

Layout promises (checked on the produced bytes before they are returned, see `_verify_layout`):

- file identifier `TFL3`, `Model.version == 3`, the primary subgraph first, then `Model.subgraphs`;
- `buffers[0]` is an empty sentinel; non-constant tensors point to it;
- every constant tensor has a buffer of its own, even when its bytes equal another tensor's
  (an all-zero adapter slot must never share storage with another slot);
- every constant tensor's data starts at a file offset that is a multiple of its `alignment`
  (at least 16, the schema's `force_align`, which the Python builder ignores on its own);
- multi-byte data is little-endian, as the format requires whatever the host is;
- buffer data appears in the file in buffer-index order, after all the tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import flatbuffers
import numpy as np

from tinyswap import schema
from tinyswap.export.errors import BuilderError, GraphError, LayoutError
from tinyswap.reader import MAX_SUBGRAPHS
from tinyswap.schema import (
    BufferField,
    MetadataField,
    ModelField,
    OperatorCodeField,
    OperatorField,
    QuantizationField,
    SubGraphField,
    TensorField,
)

from tinyswap.export.tflite_graph import (  # noqa: F401 (re-exported: the builder's public names)
    MAX_ALIGNMENT,
    MIN_ALIGNMENT,
    BuiltModel,
    Model,
    Operator,
    Quant,
    Subgraph,
    Tensor,
    _MAX_DEPRECATED_CODE,
    _tensor_type,
)

__all__ = [
    "MAX_ALIGNMENT",
    "MIN_ALIGNMENT",
    "BuiltModel",
    "Model",
    "Operator",
    "Quant",
    "Subgraph",
    "Tensor",
    "build_model",
    "build_model_with_layout",
    "tensor_indices",
]





# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def build_model(model: Model) -> bytes:
    """The `.tflite` bytes of `model`. Raises `BuilderError` before writing anything on misuse."""
    return build_model_with_layout(model).data


def build_model_with_layout(model: Model) -> BuiltModel:
    """Build `model` and report where every constant tensor's data lies in the file."""
    plan = _plan(model)
    payloads = {t: _little_endian_bytes(t) for t in plan.buffer_index}
    built = _write(model, plan, payloads)
    _verify_layout(built, payloads, dict(plan.metadata))
    return built


def tensor_indices(model: Model) -> dict[Tensor, int]:
    """The tensor indices `build_model` will assign, without building.

    For metadata that refers to tensors by index (an offline memory plan has one entry per
    tensor), which must be known before the model is built. The order is first appearance:
    graph inputs, then each operator's inputs and outputs in turn.
    """
    return dict(_plan(model).main.tensor_index)


# --------------------------------------------------------------------------------------------
# Compile step: validate everything, assign indices
# --------------------------------------------------------------------------------------------


@dataclass
class _GraphPlan:
    """One subgraph's share of the plan: its tensors (numbered from 0) and operator codes."""

    operators: list[Operator]
    inputs: list[Tensor]
    outputs: list[Tensor]
    name: str
    tensors: list[Tensor]
    tensor_index: dict[Tensor, int]
    opcode_index: list[int] = field(default_factory=list)  # per operator


@dataclass
class _Plan:
    graphs: list[_GraphPlan]  # the primary subgraph first
    buffer_index: dict[Tensor, int]  # constants only; 0 is the sentinel
    opcodes: list[tuple[int, int, str | None]]  # (builtin code, version, custom code)
    metadata: list[tuple[str, bytes]]
    n_buffers: int
    spacers: dict[int, int] = field(default_factory=dict)  # buffer index -> alignment

    @property
    def main(self) -> _GraphPlan:
        return self.graphs[0]


def _plan(model: Model) -> _Plan:
    if not isinstance(model, Model):
        raise BuilderError(f"expected a Model, got {type(model).__name__}")
    if not isinstance(model.description, str):
        raise BuilderError(f"description must be a str, got {model.description!r}")
    if not isinstance(model.subgraphs, (list, tuple)) or not all(isinstance(g, Subgraph) for g in model.subgraphs):
        raise BuilderError("Model.subgraphs must hold only Subgraph objects")
    if len(model.subgraphs) + 1 > MAX_SUBGRAPHS:
        raise BuilderError(f"{len(model.subgraphs) + 1} subgraphs; at most {MAX_SUBGRAPHS} are written")
    owner: dict[Tensor, int] = {}
    # Names are unique within a subgraph (two subgraphs of a converted stateful model may both
    # name a tensor "frames"); the slot tensors' names are unique in the whole model.
    graphs = [_plan_graph(model.operators, model.inputs, model.outputs, "main", 0, model.scratch_tensors, {}, owner)]
    for g, sub in enumerate(model.subgraphs, start=1):
        name = sub.name if isinstance(sub.name, str) and sub.name else f"subgraph{g}"
        graphs.append(_plan_graph(sub.operators, sub.inputs, sub.outputs, name, g, [], {}, owner))
    _check_subgraph_references(graphs)

    # Operator codes: one per builtin code, carrying the highest version any of its operators
    # asks for (a kernel registered for version n serves every version up to n).
    # A CUSTOM operator's code is its builtin code and its custom_code together.
    code_versions: dict[tuple[int, str | None], int] = {}
    for graph in graphs:
        for op in graph.operators:
            code = (schema.BUILTIN_OPERATOR_CODES[op.op], op.custom_code)
            code_versions[code] = max(code_versions.get(code, 0), op.version)
    code_slot = {code: i for i, code in enumerate(code_versions)}
    opcodes = [(code, version, custom) for (code, custom), version in code_versions.items()]
    for graph in graphs:
        graph.opcode_index = [code_slot[(schema.BUILTIN_OPERATOR_CODES[op.op], op.custom_code)]
                              for op in graph.operators]

    # Buffers: 0 is the empty sentinel, then one per constant in tensor order, subgraph after
    # subgraph (never shared), then the buffer groups, then one per metadata entry.
    buffer_index: dict[Tensor, int] = {}
    grouped: set[Tensor] = set()
    for g, group in enumerate(model.buffer_groups):
        for t in group:
            if t not in owner or not t.is_constant:
                raise GraphError(f"buffer group {g}: {getattr(t, 'name', t)!r} is not a constant tensor of the graph")
            if t in grouped:
                raise GraphError(f"buffer group {g}: {t.name!r} is in two groups")
            grouped.add(t)
    for graph in graphs:
        for t in graph.tensors:
            if t.is_constant and t not in grouped:
                buffer_index[t] = len(buffer_index) + 1
    spacers: dict[int, int] = {}
    for group in model.buffer_groups:
        for t in group:
            buffer_index[t] = len(buffer_index) + len(spacers) + 1
        spacers[len(buffer_index) + len(spacers) + 1] = max([MIN_ALIGNMENT, *(t.alignment for t in group)])
    metadata = _check_metadata(model.metadata)
    return _Plan(
        graphs=graphs,
        buffer_index=buffer_index,
        opcodes=opcodes,
        metadata=metadata,
        n_buffers=1 + len(buffer_index) + len(spacers) + len(metadata),
        spacers=spacers,
    )


def _plan_graph(operators: list[Operator], inputs: list[Tensor], outputs: list[Tensor], name: str, index: int,
                scratch: list[Tensor], names: dict[str, Tensor], owner: dict[Tensor, int]) -> _GraphPlan:
    """Validate one subgraph's dataflow and number its tensors in first-use order."""
    where_graph = "" if index == 0 else f"subgraph {index}: "
    _check_tensor_list(inputs, f"{where_graph}graph inputs")
    _check_tensor_list(outputs, f"{where_graph}graph outputs")
    if not isinstance(operators, (list, tuple)) or not all(isinstance(op, Operator) for op in operators):
        raise BuilderError(f"{where_graph}operators must hold only Operator objects")
    tensors: list[Tensor] = []
    tensor_index: dict[Tensor, int] = {}

    def add(t: Tensor) -> None:
        if t in tensor_index:
            return
        if t in owner:
            raise GraphError(f"{where_graph}tensor {t.name!r} belongs to subgraph {owner[t]} already; each "
                             "subgraph has tensors of its own (control flow copies values between them)")
        t.check()
        other = names.setdefault(t.name, t)
        if other is not t:
            raise GraphError(
                f"{where_graph}two different tensors are named {t.name!r}; names must be unique in a "
                f"subgraph because slots and errors refer to tensors by name"
            )
        owner[t] = index
        tensor_index[t] = len(tensors)
        tensors.append(t)

    # Dataflow: a non-constant tensor is available once it is a graph input or has been
    # produced; it may be produced exactly once and never when it is an input or a constant.
    available: set[Tensor] = set()
    for t in scratch:
        if not isinstance(t, Tensor) or t.is_constant:
            raise GraphError(f"scratch tensor {getattr(t, 'name', t)!r} must be a non-constant Tensor")
        available.add(t)  # added to the tensor list where an operator first uses it
    for t in inputs:
        add(t)
        if t.is_constant:
            raise GraphError(f"{where_graph}graph input {t.name!r} is a constant tensor")
        available.add(t)

    for i, op in enumerate(operators):
        where = f"{where_graph}operator {i} ({op.op})"
        op.check(where)
        for t in op.inputs:
            if t is None:
                continue
            add(t)
            if not t.is_constant and t not in available:
                raise GraphError(
                    f"{where} reads tensor {t.name!r} before any operator produces it, and "
                    f"it is not a graph input"
                )
        for t in op.outputs:
            add(t)
            if t.is_constant:
                raise GraphError(f"{where} writes to constant tensor {t.name!r}")
            if t in available:
                what = "a graph input" if any(t is x for x in inputs) else "already produced"
                raise GraphError(f"{where} writes tensor {t.name!r}, which is {what}")
            available.add(t)

    for t in outputs:
        if t not in available:
            raise GraphError(
                f"{where_graph}graph output {t.name!r} is neither a graph input nor produced by an operator"
            )
    return _GraphPlan(list(operators), list(inputs), list(outputs), name, tensors, tensor_index)


# Operator options that name a subgraph, which must exist and must not be the caller itself.
_SUBGRAPH_OPTIONS = {"IF": ("then_subgraph_index", "else_subgraph_index"), "CALL_ONCE": ("init_subgraph_index",)}


def _check_subgraph_references(graphs: list[_GraphPlan]) -> None:
    for g, graph in enumerate(graphs):
        for i, op in enumerate(graph.operators):
            for field_name in _SUBGRAPH_OPTIONS.get(op.op, ()):
                target = op.options.get(field_name)
                if target is None or not 0 < int(target) < len(graphs) or int(target) == g:  # type: ignore[call-overload]
                    raise GraphError(f"subgraph {g} operator {i} ({op.op}): {field_name} {target!r} names no other "
                                     f"subgraph (the model has {len(graphs)}, the primary one is 0)")


def _check_tensor_list(tensors: object, what: str) -> None:
    if not isinstance(tensors, (list, tuple)) or not all(isinstance(t, Tensor) for t in tensors):
        raise BuilderError(f"{what} must be a list of Tensor, got {tensors!r}")
    if len({id(t) for t in tensors}) != len(tensors):
        raise GraphError(f"{what} list the same tensor twice: {[t.name for t in tensors]}")


def _check_metadata(metadata: object) -> list[tuple[str, bytes]]:
    if not isinstance(metadata, Mapping):
        raise BuilderError(f"metadata must be a dict of name -> bytes, got {type(metadata).__name__}")
    entries = []
    for name, value in metadata.items():
        if not isinstance(name, str) or not name:
            raise BuilderError(f"metadata names must be non-empty str, got {name!r}")
        if not isinstance(value, (bytes, bytearray, memoryview)):
            # An ndarray would have an ambiguous byte order; make the caller choose.
            raise BuilderError(
                f"metadata {name!r} must be bytes (e.g. array.astype('<i4').tobytes()), got "
                f"{type(value).__name__}"
            )
        entries.append((name, bytes(value)))
    return entries










# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _write(model: Model, plan: _Plan, tensor_payloads: Mapping[Tensor, bytes]) -> BuiltModel:
    b = flatbuffers.Builder(1024)

    # 1. Buffer data first, so that it ends up after every table (the builder writes back to
    #    front). Written in reverse buffer order so that file order equals buffer order.
    payloads: list[tuple[bytes, int]] = [(b"", 1)] * plan.n_buffers  # 0: the sentinel, never written
    for t, index in plan.buffer_index.items():
        payloads[index] = (tensor_payloads[t], t.alignment)
    for index, alignment in plan.spacers.items():
        # Four bytes aligned like the group: the next vector then starts a full alignment
        # unit later, so its length prefix lies past the group's rounded-up end.
        payloads[index] = (bytes(4), alignment)
    first_metadata = 1 + len(plan.buffer_index) + len(plan.spacers)
    for k, (_, value) in enumerate(plan.metadata):
        payloads[first_metadata + k] = (value, MIN_ALIGNMENT)
    data_from_end: list[int | None] = [None] * plan.n_buffers
    data_vectors: list[int | None] = [None] * plan.n_buffers
    for i in range(plan.n_buffers - 1, 0, -1):
        payload, alignment = payloads[i]
        # Align the data itself, not the length prefix in front of it: after this Prep the
        # next `len(payload)` bytes end on an `alignment` boundary counted from the END of the
        # buffer. Prep also raises the builder's `minalign`, and Finish pads the whole file to
        # a multiple of `minalign`, which turns "aligned from the end" into "aligned from the
        # start". CreateByteVector's own Prep(4, n) then adds nothing (4 divides alignment).
        b.Prep(alignment, len(payload))
        vector = b.CreateByteVector(payload)
        data_vectors[i] = vector
        data_from_end[i] = vector - 4  # the uint32 length precedes the data

    # 2. Buffer tables and the buffers vector.
    buffer_tables = []
    for i in range(plan.n_buffers):
        b.StartObject(len(BufferField))
        if data_vectors[i] is not None:
            b.PrependUOffsetTRelativeSlot(BufferField.DATA, data_vectors[i], 0)
        buffer_tables.append(b.EndObject())
    buffers = _offset_vector(b, buffer_tables)

    # 3.-5. Each subgraph: tensors, operators, the subgraph table. Operator codes are shared.
    subgraph_tables = [_write_subgraph(b, graph, plan.buffer_index) for graph in plan.graphs]
    opcode_tables = []
    for code, version, custom in plan.opcodes:
        custom_code = None if custom is None else b.CreateString(custom)
        b.StartObject(len(OperatorCodeField))
        if custom_code is not None:
            b.PrependUOffsetTRelativeSlot(OperatorCodeField.CUSTOM_CODE, custom_code, 0)
        # Both fields: readers take max(deprecated_builtin_code, builtin_code), and TFLM reads
        # builtin_code() directly in places. Forced (default None) so ADD's code 0 is explicit.
        b.PrependInt8Slot(
            OperatorCodeField.DEPRECATED_BUILTIN_CODE, min(code, _MAX_DEPRECATED_CODE), None
        )
        b.PrependInt32Slot(OperatorCodeField.VERSION, version, 1)  # schema default: 1
        b.PrependInt32Slot(OperatorCodeField.BUILTIN_CODE, code, None)
        opcode_tables.append(b.EndObject())

    # 6. Metadata entries, pointing at their buffers.
    first_metadata_buffer = 1 + len(plan.buffer_index) + len(plan.spacers)
    metadata_tables = []
    for k, (name, _) in enumerate(plan.metadata):
        name_offset = b.CreateString(name)
        b.StartObject(len(MetadataField))
        b.PrependUOffsetTRelativeSlot(MetadataField.NAME, name_offset, 0)
        b.PrependUint32Slot(MetadataField.BUFFER, first_metadata_buffer + k, None)
        metadata_tables.append(b.EndObject())

    # 7. The root.
    opcodes_vector = _offset_vector(b, opcode_tables)
    subgraphs_vector = _offset_vector(b, subgraph_tables)
    description = b.CreateString(model.description)
    metadata_vector = _offset_vector(b, metadata_tables) if metadata_tables else None
    b.StartObject(len(ModelField))
    b.PrependUint32Slot(ModelField.VERSION, schema.SCHEMA_VERSION, None)
    b.PrependUOffsetTRelativeSlot(ModelField.OPERATOR_CODES, opcodes_vector, 0)
    b.PrependUOffsetTRelativeSlot(ModelField.SUBGRAPHS, subgraphs_vector, 0)
    b.PrependUOffsetTRelativeSlot(ModelField.DESCRIPTION, description, 0)
    b.PrependUOffsetTRelativeSlot(ModelField.BUFFERS, buffers, 0)
    if metadata_vector is not None:
        b.PrependUOffsetTRelativeSlot(ModelField.METADATA, metadata_vector, 0)
    root = b.EndObject()
    b.Finish(root, file_identifier=schema.FILE_IDENTIFIER)
    data = bytes(b.Output())

    # Offsets counted from the end are stable while the builder grows (it copies its content
    # to the end of a larger array), so the absolute offset is the final length minus them.
    def span(i: int) -> tuple[int, int]:
        return len(data) - data_from_end[i], len(payloads[i][0])  # type: ignore[operator]

    return BuiltModel(
        data=data,
        buffer_ranges={t: span(i) for t, i in plan.buffer_index.items()},
        tensor_indices={t: i for graph in plan.graphs for t, i in graph.tensor_index.items()},
        buffer_indices=dict(plan.buffer_index),
        metadata_ranges={
            name: span(first_metadata_buffer + k) for k, (name, _) in enumerate(plan.metadata)
        },
        tensor_subgraphs={t: g for g, graph in enumerate(plan.graphs) for t in graph.tensors},
    )


def _write_subgraph(b: flatbuffers.Builder, graph: _GraphPlan, buffer_index: Mapping[Tensor, int]) -> int:
    tensor_tables = [_write_tensor(b, t, buffer_index.get(t, 0)) for t in graph.tensors]
    operator_tables = [_write_operator(b, op, graph.opcode_index[i], graph.tensor_index)
                       for i, op in enumerate(graph.operators)]
    tensors_vector = _offset_vector(b, tensor_tables)
    inputs = _int32_vector(b, [graph.tensor_index[t] for t in graph.inputs])
    outputs = _int32_vector(b, [graph.tensor_index[t] for t in graph.outputs])
    operators_vector = _offset_vector(b, operator_tables)
    subgraph_name = b.CreateString(graph.name)
    b.StartObject(len(SubGraphField))
    b.PrependUOffsetTRelativeSlot(SubGraphField.TENSORS, tensors_vector, 0)
    b.PrependUOffsetTRelativeSlot(SubGraphField.INPUTS, inputs, 0)
    b.PrependUOffsetTRelativeSlot(SubGraphField.OUTPUTS, outputs, 0)
    b.PrependUOffsetTRelativeSlot(SubGraphField.OPERATORS, operators_vector, 0)
    b.PrependUOffsetTRelativeSlot(SubGraphField.NAME, subgraph_name, 0)
    return b.EndObject()


def _little_endian_bytes(tensor: Tensor) -> bytes:
    data = np.asarray(tensor.data)
    # The format is little-endian whatever the host or the array's byte order; tobytes()
    # writes C order whatever the array's strides.
    return data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes()


def _int32_vector(b: flatbuffers.Builder, values: Iterable[int]) -> int:
    return b.CreateNumpyVector(np.asarray(list(values), dtype="<i4"))


def _offset_vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        b.PrependUOffsetTRelative(offset)
    return b.EndVector()


def _write_tensor(b: flatbuffers.Builder, t: Tensor, buffer: int) -> int:
    name = b.CreateString(t.name)
    shape = _int32_vector(b, t.shape)
    signature = None if t.shape_signature is None else _int32_vector(b, t.shape_signature)
    quant = None
    if t.quant is not None:
        scale = b.CreateNumpyVector(np.asarray(t.quant.scale, dtype="<f4").ravel())
        zero_point = b.CreateNumpyVector(np.asarray(t.quant.zero_point, dtype="<i8").ravel())
        b.StartObject(len(QuantizationField))
        b.PrependUOffsetTRelativeSlot(QuantizationField.SCALE, scale, 0)
        b.PrependUOffsetTRelativeSlot(QuantizationField.ZERO_POINT, zero_point, 0)
        b.PrependInt32Slot(QuantizationField.QUANTIZED_DIMENSION, t.quant.quantized_dimension, 0)
        quant = b.EndObject()
    b.StartObject(len(TensorField))
    b.PrependUOffsetTRelativeSlot(TensorField.SHAPE, shape, 0)
    b.PrependInt8Slot(TensorField.TYPE, int(_tensor_type(t)), 0)
    b.PrependUint32Slot(TensorField.BUFFER, buffer, 0)
    b.PrependUOffsetTRelativeSlot(TensorField.NAME, name, 0)
    if quant is not None:
        b.PrependUOffsetTRelativeSlot(TensorField.QUANTIZATION, quant, 0)
    if signature is not None:
        b.PrependUOffsetTRelativeSlot(TensorField.SHAPE_SIGNATURE, signature, 0)
    return b.EndObject()


def _write_operator(
    b: flatbuffers.Builder, op: Operator, opcode_index: int, tensor_index: Mapping[Tensor, int]
) -> int:
    inputs = _int32_vector(b, [-1 if t is None else tensor_index[t] for t in op.inputs])
    outputs = _int32_vector(b, [tensor_index[t] for t in op.outputs])
    options = None
    table_name = schema.OPTIONS_OF_OPERATOR.get(op.op)
    if table_name is not None:
        # Written even when empty: TFLite parsers read defaults from an empty table, while a
        # missing table leaves some kernels' params unset.
        options_table = schema.OPTIONS_TABLES[table_name]
        options = (_write_options(b, options_table, op.options), options_table.union_type)
    custom_options = None if op.custom_options is None else b.CreateByteVector(op.custom_options)
    b.StartObject(len(OperatorField))
    if custom_options is not None:  # custom_options_format keeps its default, FLEXBUFFERS (0)
        b.PrependUOffsetTRelativeSlot(OperatorField.CUSTOM_OPTIONS, custom_options, 0)
    b.PrependUint32Slot(OperatorField.OPCODE_INDEX, opcode_index, 0)
    b.PrependUOffsetTRelativeSlot(OperatorField.INPUTS, inputs, 0)
    b.PrependUOffsetTRelativeSlot(OperatorField.OUTPUTS, outputs, 0)
    if options is not None:
        b.PrependUint8Slot(OperatorField.BUILTIN_OPTIONS_TYPE, options[1], 0)
        b.PrependUOffsetTRelativeSlot(OperatorField.BUILTIN_OPTIONS, options[0], 0)
    return b.EndObject()


def _write_options(
    b: flatbuffers.Builder, table: schema.OptionsTable, options: Mapping[str, Any]
) -> int:
    # Vectors must exist before the table that points at them is started.
    vectors = {
        f.name: _int32_vector(b, np.asarray(options[f.name]).tolist()) if f.kind == "i32[]"
        else b.CreateString(str(options[f.name]))
        for f in table.fields
        if f.kind in ("i32[]", "str") and f.name in options
    }
    b.StartObject(len(table.fields))
    for slot, f in enumerate(table.fields):  # vtable slot = declaration index
        if f.name not in options:
            continue  # the reader's schema default applies
        value = options[f.name]
        # Default None forces the write: the transcribed defaults in OPTIONS_TABLES are not
        # trusted to decide what may be omitted (a wrong one would silently change the value).
        if f.kind == "i8":
            b.PrependInt8Slot(slot, int(value), None)
        elif f.kind == "i32":
            b.PrependInt32Slot(slot, int(value), None)
        elif f.kind == "bool":
            b.PrependBoolSlot(slot, bool(value), None)
        elif f.kind == "f32":
            b.PrependFloat32Slot(slot, float(value), None)
        else:  # "i32[]" and "str": written before the table
            b.PrependUOffsetTRelativeSlot(slot, vectors[f.name], 0)
    return b.EndObject()


# --------------------------------------------------------------------------------------------
# Self-check of the promises made in the module docstring
# --------------------------------------------------------------------------------------------


def _verify_layout(
    built: BuiltModel, payloads: Mapping[Tensor, bytes], metadata: Mapping[str, bytes]
) -> None:
    data = memoryview(built.data)
    if bytes(data[4:8]) != schema.FILE_IDENTIFIER:
        raise LayoutError(f"file identifier is {bytes(data[4:8])!r}, not {schema.FILE_IDENTIFIER!r}")
    # (what, file offset, length, required alignment, expected bytes) for every buffer written.
    spans = [
        (f"tensor {t.name!r}", *built.buffer_ranges[t], t.alignment, payload)
        for t, payload in payloads.items()
    ] + [
        (f"metadata {name!r}", *built.metadata_ranges[name], MIN_ALIGNMENT, value)
        for name, value in metadata.items()
    ]
    largest = max((alignment for _, _, _, alignment, _ in spans), default=1)
    if len(data) % largest:
        raise LayoutError(f"file length {len(data)} is not a multiple of alignment {largest}")
    previous_end = 0
    for what, offset, length, alignment, expected in sorted(spans, key=lambda s: s[1]):
        if offset % alignment:
            raise LayoutError(f"{what}: data at file offset {offset} is not {alignment}-aligned")
        if offset < previous_end:
            raise LayoutError(f"{what}: data at file offset {offset} overlaps the previous buffer")
        previous_end = offset + length
        stored_length = int.from_bytes(data[offset - 4 : offset], "little")
        if stored_length != length or data[offset : offset + length] != expected:
            raise LayoutError(f"{what}: the bytes at file offset {offset} are not its data")
