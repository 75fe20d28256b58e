"""Write TFLite flatbuffers (`.tflite`) from a small in-memory description of one subgraph.

Used by the per-op oracle tests (build a one-op model, run it in TFLite Micro and LiteRT) and
by the static-graph compiler (build the base model with one constant tensor per adapter slot,
and record where each slot's bytes ended up in the file).

The description holds *references*, not indices: an `Operator` lists the `Tensor` objects it
reads and writes, a `Model` lists its operators and its graph inputs and outputs. A private
compile step (`_plan`) validates the whole graph first, then assigns tensor, buffer and
operator-code indices; only then is anything written. Nothing here uses generated schema code:
tables are written with `flatbuffers.Builder` directly, their field slots taken from
`tinyswap.schema` (transcribed from `schema.fbs`).

Layout promises (checked on the produced bytes before they are returned, see `_verify_layout`):

- file identifier `TFL3`, `Model.version == 3`, one subgraph;
- `buffers[0]` is an empty sentinel; non-constant tensors point to it;
- every constant tensor has a buffer of its own, even when its bytes equal another tensor's
  (an all-zero adapter slot must never share storage with another slot);
- every constant tensor's data starts at a file offset that is a multiple of its `alignment`
  (at least 16, the schema's `force_align`, which the Python builder ignores on its own);
- multi-byte data is little-endian, as the format requires whatever the host is;
- buffer data appears in the file in buffer-index order, after all the tables.
"""

from __future__ import annotations

import math
import operator as _operator
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import flatbuffers
import numpy as np
import numpy.typing as npt

from tinyswap import schema
from tinyswap.export.errors import BuilderError, GraphError, LayoutError, OptionError
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

__all__ = [
    "MAX_ALIGNMENT",
    "MIN_ALIGNMENT",
    "BuiltModel",
    "Model",
    "Operator",
    "Quant",
    "Tensor",
    "build_model",
    "build_model_with_layout",
    "tensor_indices",
]

# `Buffer.data` is declared `force_align: 16` in schema.fbs; readers that map int32/float data
# straight out of the file (TFLM does) rely on at least that.
MIN_ALIGNMENT = 16
# Large enough for flash erase blocks (4 KiB sectors, 64 KiB NOR blocks); beyond this the
# padding would dwarf any microcontroller model and most likely the value is a mistake.
MAX_ALIGNMENT = 1 << 20

_INT8_RANGE = (-(1 << 7), (1 << 7) - 1)
_INT32_RANGE = (-(1 << 31), (1 << 31) - 1)
_FLOAT32_MAX = float(np.finfo(np.float32).max)

# Operators the builder cannot describe: CUSTOM needs a custom_code and opaque options, the
# placeholder is not an operator at all.
_UNSUPPORTED_OPS = frozenset({"CUSTOM", "PLACEHOLDER_FOR_GREATER_OP_CODES"})

# `OperatorCode.deprecated_builtin_code` is a signed byte; codes above this live only in
# `builtin_code`, and old readers see the placeholder value instead.
_MAX_DEPRECATED_CODE = schema.BUILTIN_OPERATOR_CODES["PLACEHOLDER_FOR_GREATER_OP_CODES"]


# --------------------------------------------------------------------------------------------
# The description
# --------------------------------------------------------------------------------------------


@dataclass
class Quant:
    """Affine quantization `real = scale * (q - zero_point)`, per tensor or per axis.

    `scale` is stored as float32 and `zero_point` as int64, the schema's types; scalars are
    accepted and become length-1 arrays. Per-axis quantization (length > 1) runs along
    `quantized_dimension` and must have one entry per index of that dimension.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    quantized_dimension: int = 0

    def __post_init__(self) -> None:
        try:
            scale = np.atleast_1d(np.asarray(self.scale))
            zero_point = np.atleast_1d(np.asarray(self.zero_point))
        except (TypeError, ValueError) as e:
            raise BuilderError(f"quantization parameters are not numeric arrays: {e}") from None
        _check_quant_kinds(scale, zero_point, "quantization")
        self.scale = scale.astype(np.float32)
        self.zero_point = zero_point.astype(np.int64)
        self.check()

    def check(self, where: str = "quantization") -> None:
        """Raise `BuilderError` unless the parameters are structurally valid.

        Only structure is checked (shapes, lengths, finiteness); whether a kernel accepts the
        values (e.g. weight zero point 0) is for the reader and the kernels to decide, so that
        deliberately odd models can still be built to test them.
        """
        scale, zero_point = np.asarray(self.scale), np.asarray(self.zero_point)
        _check_quant_kinds(scale, zero_point, where)
        if scale.ndim != 1 or zero_point.ndim != 1:
            raise BuilderError(
                f"{where}: scale and zero_point must be 1-D, got shapes {scale.shape} and "
                f"{zero_point.shape}"
            )
        if scale.size == 0:
            raise BuilderError(f"{where}: scale is empty")
        # TFLite rejects a length mismatch and TFLM silently drops quantization when
        # zero_point is missing, so the two are always written with equal lengths.
        if scale.size != zero_point.size:
            raise BuilderError(
                f"{where}: scale has {scale.size} entries but zero_point has {zero_point.size}"
            )
        if not np.all(np.isfinite(scale.astype(np.float32))):
            raise BuilderError(f"{where}: scale has non-finite values {scale.tolist()}")
        if not _is_int(self.quantized_dimension) or self.quantized_dimension < 0:
            raise BuilderError(
                f"{where}: quantized_dimension must be a non-negative int, got "
                f"{self.quantized_dimension!r}"
            )


def _check_quant_kinds(scale: np.ndarray, zero_point: np.ndarray, where: str) -> None:
    if scale.dtype.kind not in "fiu":
        raise BuilderError(f"{where}: scale must be numbers, got dtype {scale.dtype}")
    if zero_point.dtype.kind not in "iu":
        # A float zero point would be rounded silently; the schema stores integers only.
        raise BuilderError(f"{where}: zero_point must be integers, got dtype {zero_point.dtype}")


@dataclass(eq=False)
class Tensor:
    """A tensor of the subgraph; constant when `data` is given.

    Identity matters, not value (`eq=False`): two tensors with equal fields are still two
    tensors, and a constant tensor always gets a buffer of its own.

    Attributes:
        name: unique within the model; used in error messages and by `BuiltModel.range_of`.
        shape: static shape, each dimension >= 0.
        dtype: anything `np.dtype` accepts that maps to a TFLite `TensorType`.
        data: the constant's value, exactly of `shape` and `dtype` (no silent casting).
        quant: quantization parameters, or None for an unquantized tensor.
        shape_signature: written when given; -1 marks a dynamic dimension.
        alignment: byte alignment of the constant's data *in the file* (power of two,
            `MIN_ALIGNMENT` .. `MAX_ALIGNMENT`); e.g. 4096 to put a slot on a flash sector.
            Ignored for non-constant tensors.
    """

    name: str
    shape: tuple[int, ...]
    dtype: npt.DTypeLike
    data: np.ndarray | None = None
    quant: Quant | None = None
    shape_signature: tuple[int, ...] | None = None
    alignment: int = MIN_ALIGNMENT

    def __post_init__(self) -> None:
        # Normalise the cheap things once so that errors and reprs show canonical values;
        # `check` re-validates at build time because dataclass fields stay mutable.
        try:
            self.shape = tuple(_operator.index(d) for d in self.shape)
            if self.shape_signature is not None:
                self.shape_signature = tuple(_operator.index(d) for d in self.shape_signature)
        except TypeError as e:
            raise BuilderError(f"tensor {self.name!r}: shape dimensions must be ints ({e})") from None
        try:
            self.dtype = np.dtype(self.dtype)
        except TypeError as e:
            raise BuilderError(f"tensor {self.name!r}: {self.dtype!r} is not a dtype ({e})") from None
        self.check()

    @property
    def is_constant(self) -> bool:
        """True when the tensor has data, i.e. lives in a buffer of the file."""
        return self.data is not None

    def check(self) -> None:
        """Raise `BuilderError` unless this tensor can be written as described."""
        where = f"tensor {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise BuilderError(f"tensor name must be a non-empty str, got {self.name!r}")
        shape = tuple(self.shape)
        if not all(_is_int(d) and d >= 0 for d in shape):
            raise BuilderError(f"{where}: shape {shape} must hold ints >= 0")
        _tensor_type(self)  # raises for dtypes TFLite cannot hold
        if self.shape_signature is not None:
            sig = tuple(self.shape_signature)
            if len(sig) != len(shape) or not all(
                _is_int(s) and (s == -1 or s == d) for s, d in zip(sig, shape)
            ):
                raise BuilderError(
                    f"{where}: shape_signature {sig} must have the rank of shape {shape} and "
                    f"hold either -1 or the static dimension"
                )
        if (
            not _is_int(self.alignment)
            or not MIN_ALIGNMENT <= self.alignment <= MAX_ALIGNMENT
            or self.alignment & (self.alignment - 1)
        ):
            # flatbuffers' Prep computes padding with a bit mask: only powers of two work.
            raise BuilderError(
                f"{where}: alignment {self.alignment!r} must be a power of two in "
                f"[{MIN_ALIGNMENT}, {MAX_ALIGNMENT}]"
            )
        if self.data is not None:
            self._check_data(where, shape)
        if self.quant is not None:
            self._check_quant(where, shape)

    def _check_data(self, where: str, shape: tuple[int, ...]) -> None:
        data = self.data
        if not isinstance(data, np.ndarray):
            raise BuilderError(f"{where}: data must be a numpy array, got {type(data).__name__}")
        if data.dtype.newbyteorder("=") != np.dtype(self.dtype).newbyteorder("="):
            raise BuilderError(
                f"{where}: data has dtype {data.dtype} but the tensor is {np.dtype(self.dtype)}"
            )
        if data.shape != shape:
            raise BuilderError(f"{where}: data has shape {data.shape} but the tensor is {shape}")
        if data.nbytes == 0:
            # TFLM treats a constant with an empty buffer as a RAM tensor with a null pointer.
            raise BuilderError(f"{where}: a constant tensor needs at least one element")

    def _check_quant(self, where: str, shape: tuple[int, ...]) -> None:
        quant = self.quant
        if not isinstance(quant, Quant):
            raise BuilderError(f"{where}: quant must be a Quant, got {type(quant).__name__}")
        quant.check(f"{where} quantization")
        n = np.asarray(quant.scale).size
        if n > 1:
            axis = quant.quantized_dimension
            if axis >= len(shape) or shape[axis] != n:
                raise BuilderError(
                    f"{where}: {n} per-axis scales along quantized_dimension {axis} do not "
                    f"match shape {shape}"
                )


@dataclass(eq=False)
class Operator:
    """One builtin operator: what it reads and writes, by reference.

    Attributes:
        op: a `BuiltinOperator` name, e.g. "CONV_2D".
        inputs: the tensors read, in the operator's order; None for an omitted optional input
            (written as index -1).
        outputs: the tensors written.
        options: builtin options by field name as in `tinyswap.schema.OPTIONS_TABLES`; fields
            left out take the schema default (they are not written). Fields given are always
            written, even when equal to the default.
        version: the operator version recorded in its `OperatorCode`.
    """

    op: str
    inputs: list[Tensor | None]
    outputs: list[Tensor]
    options: dict[str, object] = field(default_factory=dict)
    version: int = 1

    def __post_init__(self) -> None:
        self.check()

    def check(self, where: str | None = None) -> None:
        """Raise `BuilderError` (`OptionError` for options) unless this operator is writable."""
        if where is None:
            where = f"operator {self.op!r}"
        if not isinstance(self.op, str) or self.op not in schema.BUILTIN_OPERATOR_CODES:
            raise BuilderError(f"{where}: unknown builtin operator {self.op!r}")
        if self.op in _UNSUPPORTED_OPS:
            raise BuilderError(f"{where}: the builder cannot write {self.op} operators")
        if not _is_int(self.version) or self.version < 1:
            raise BuilderError(f"{where}: version must be an int >= 1, got {self.version!r}")
        if not isinstance(self.inputs, (list, tuple)) or not all(
            t is None or isinstance(t, Tensor) for t in self.inputs
        ):
            raise BuilderError(f"{where}: inputs must be Tensor or None, got {self.inputs!r}")
        if not isinstance(self.outputs, (list, tuple)) or not all(
            isinstance(t, Tensor) for t in self.outputs
        ):
            raise BuilderError(f"{where}: outputs must be Tensor, got {self.outputs!r}")
        _check_options(self, where)


@dataclass
class Model:
    """A single-subgraph model.

    Attributes:
        operators: in execution order; every non-constant input must be a graph input or the
            output of an earlier operator.
        inputs, outputs: the subgraph's inputs and outputs, in order.
        description: `Model.description`.
        metadata: name -> raw bytes; each entry gets a buffer of its own (e.g. TFLM's
            "OfflineMemoryAllocation", an int32 array written with `.astype("<i4").tobytes()`).
    """

    operators: list[Operator]
    inputs: list[Tensor]
    outputs: list[Tensor]
    description: str = "tinyswap"
    metadata: dict[str, bytes] = field(default_factory=dict)
    # Constants whose data must be contiguous and last (adapter slots): each group's buffers
    # follow all other constants, in the order given, and every group is followed by an
    # unreferenced 4-byte spacer buffer aligned like the group's largest alignment, so that
    # the next vector's length prefix never falls inside the group's aligned byte range.
    buffer_groups: list[list[Tensor]] = field(default_factory=list)


@dataclass(frozen=True)
class BuiltModel:
    """A written model and where things landed in it.

    Attributes:
        data: the `.tflite` file.
        buffer_ranges: constant tensor -> (absolute file offset, byte length) of its data.
        tensor_indices: every tensor -> its index in the subgraph's tensor list.
        buffer_indices: constant tensor -> its index in `Model.buffers`.
        metadata_ranges: metadata name -> (absolute file offset, byte length) of its buffer.
    """

    data: bytes
    buffer_ranges: dict[Tensor, tuple[int, int]]
    tensor_indices: dict[Tensor, int]
    buffer_indices: dict[Tensor, int]
    metadata_ranges: dict[str, tuple[int, int]]

    def range_of(self, name: str) -> tuple[int, int]:
        """(file offset, byte length) of the constant tensor called `name`."""
        for tensor, span in self.buffer_ranges.items():
            if tensor.name == name:
                return span
        raise KeyError(
            f"no constant tensor named {name!r}; constants are "
            f"{sorted(t.name for t in self.buffer_ranges)}"
        )


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
    return dict(_plan(model).tensor_index)


# --------------------------------------------------------------------------------------------
# Compile step: validate everything, assign indices
# --------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    tensors: list[Tensor]
    tensor_index: dict[Tensor, int]
    buffer_index: dict[Tensor, int]  # constants only; 0 is the sentinel
    opcodes: list[tuple[int, int]]  # (builtin code, version)
    opcode_index: list[int]  # per operator
    metadata: list[tuple[str, bytes]]
    n_buffers: int
    spacers: dict[int, int] = field(default_factory=dict)  # buffer index -> alignment


def _plan(model: Model) -> _Plan:
    if not isinstance(model, Model):
        raise BuilderError(f"expected a Model, got {type(model).__name__}")
    _check_tensor_list(model.inputs, "graph inputs")
    _check_tensor_list(model.outputs, "graph outputs")
    if not all(isinstance(op, Operator) for op in model.operators):
        raise BuilderError("Model.operators must hold only Operator objects")
    if not isinstance(model.description, str):
        raise BuilderError(f"description must be a str, got {model.description!r}")

    tensors: list[Tensor] = []
    tensor_index: dict[Tensor, int] = {}
    names: dict[str, Tensor] = {}

    def add(t: Tensor) -> None:
        if t in tensor_index:
            return
        t.check()
        other = names.setdefault(t.name, t)
        if other is not t:
            raise GraphError(
                f"two different tensors are named {t.name!r}; names must be unique because "
                f"slots and errors refer to tensors by name"
            )
        tensor_index[t] = len(tensors)
        tensors.append(t)

    # Dataflow: a non-constant tensor is available once it is a graph input or has been
    # produced; it may be produced exactly once and never when it is an input or a constant.
    available: set[Tensor] = set()
    for t in model.inputs:
        add(t)
        if t.is_constant:
            raise GraphError(f"graph input {t.name!r} is a constant tensor")
        available.add(t)

    for i, op in enumerate(model.operators):
        where = f"operator {i} ({op.op})"
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
                what = "a graph input" if any(t is x for x in model.inputs) else "already produced"
                raise GraphError(f"{where} writes tensor {t.name!r}, which is {what}")
            available.add(t)

    for t in model.outputs:
        if t not in available:
            raise GraphError(
                f"graph output {t.name!r} is neither a graph input nor produced by an operator"
            )

    # Operator codes: one per builtin code, carrying the highest version any of its operators
    # asks for (a kernel registered for version n serves every version up to n).
    code_versions: dict[int, int] = {}
    for op in model.operators:
        code = schema.BUILTIN_OPERATOR_CODES[op.op]
        code_versions[code] = max(code_versions.get(code, 0), op.version)
    code_slot = {code: i for i, code in enumerate(code_versions)}
    opcodes = list(code_versions.items())
    opcode_index = [code_slot[schema.BUILTIN_OPERATOR_CODES[op.op]] for op in model.operators]

    # Buffers: 0 is the empty sentinel, then one per constant in tensor order (never shared),
    # then one per metadata entry.
    buffer_index: dict[Tensor, int] = {}
    grouped: set[Tensor] = set()
    for g, group in enumerate(model.buffer_groups):
        for t in group:
            if t not in tensor_index or not t.is_constant:
                raise GraphError(f"buffer group {g}: {getattr(t, 'name', t)!r} is not a constant tensor of the graph")
            if t in grouped:
                raise GraphError(f"buffer group {g}: {t.name!r} is in two groups")
            grouped.add(t)
    for t in tensors:
        if t.is_constant and t not in grouped:
            buffer_index[t] = len(buffer_index) + 1
    spacers: dict[int, int] = {}
    for group in model.buffer_groups:
        for t in group:
            buffer_index[t] = len(buffer_index) + len(spacers) + 1
        spacers[len(buffer_index) + len(spacers) + 1] = max([MIN_ALIGNMENT, *(t.alignment for t in group)])
    metadata = _check_metadata(model.metadata)
    return _Plan(
        tensors=tensors,
        tensor_index=tensor_index,
        buffer_index=buffer_index,
        opcodes=opcodes,
        opcode_index=opcode_index,
        metadata=metadata,
        n_buffers=1 + len(buffer_index) + len(spacers) + len(metadata),
        spacers=spacers,
    )


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


def _is_int(value: object) -> bool:
    # bool is an int subclass in Python; a True where a stride belongs is a bug, not a 1.
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _tensor_type(tensor: Tensor) -> schema.TensorType:
    try:
        dtype = np.dtype(tensor.dtype)
    except TypeError:
        dtype = None
    tensor_type = None if dtype is None else schema.TENSOR_TYPE_OF_DTYPE.get(dtype.newbyteorder("="))
    if tensor_type is None:
        supported = sorted(str(np.dtype(d)) for d in schema.NUMPY_DTYPES.values())
        raise BuilderError(
            f"tensor {tensor.name!r}: dtype {tensor.dtype!r} has no TFLite tensor type; "
            f"supported: {supported}"
        )
    return tensor_type


def _check_options(op: Operator, where: str) -> None:
    if not isinstance(op.options, Mapping):
        raise OptionError(f"{where}: options must be a dict, got {type(op.options).__name__}")
    table_name = schema.OPTIONS_OF_OPERATOR.get(op.op)
    if table_name is None:
        if op.options:
            raise OptionError(
                f"{where}: the builder knows no options table for {op.op}, but options "
                f"{sorted(op.options)} were given"
            )
        return
    table = schema.OPTIONS_TABLES[table_name]
    kinds = {f.name: f.kind for f in table.fields}
    for name, value in op.options.items():
        if name not in kinds:
            raise OptionError(
                f"{where}: {table_name} has no field {name!r}; fields are {sorted(kinds)}"
            )
        _check_option_value(where, table_name, name, kinds[name], value)


def _check_option_value(where: str, table: str, name: str, kind: str, value: object) -> None:
    def fail(expected: str) -> OptionError:
        return OptionError(f"{where}: option {table}.{name} must be {expected}, got {value!r}")

    if kind in ("i8", "i32"):
        lo, hi = _INT8_RANGE if kind == "i8" else _INT32_RANGE
        # IntEnum members (Padding.VALID, Activation.RELU) are ints and pass.
        if not _is_int(value) or not lo <= int(value) <= hi:  # type: ignore[call-overload]
            raise fail(f"an int in [{lo}, {hi}]")
    elif kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise fail("a bool")
    elif kind == "f32":
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, (bool, np.bool_)
        )
        as_float = float(value) if number else math.nan  # type: ignore[arg-type]
        if not math.isfinite(as_float) or abs(as_float) > _FLOAT32_MAX:
            raise fail("a finite number representable as float32")
    elif kind == "i32[]":
        is_vector = isinstance(value, (list, tuple)) or (
            isinstance(value, np.ndarray) and value.ndim == 1
        )
        lo, hi = _INT32_RANGE
        items = list(value) if is_vector else [None]  # type: ignore[call-overload]
        if not all(_is_int(v) and lo <= int(v) <= hi for v in items):  # type: ignore[arg-type]
            raise fail("a 1-D sequence of int32")
    else:  # pragma: no cover - schema.py and this function disagree
        raise OptionError(f"{where}: option {table}.{name} has unknown kind {kind!r}")


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

    # 3. Tensors.
    tensor_tables = [_write_tensor(b, t, plan.buffer_index.get(t, 0)) for t in plan.tensors]

    # 4. Operators and operator codes.
    operator_tables = []
    for i, op in enumerate(model.operators):
        operator_tables.append(_write_operator(b, op, plan.opcode_index[i], plan.tensor_index))
    opcode_tables = []
    for code, version in plan.opcodes:
        b.StartObject(len(OperatorCodeField))
        # Both fields: readers take max(deprecated_builtin_code, builtin_code), and TFLM reads
        # builtin_code() directly in places. Forced (default None) so ADD's code 0 is explicit.
        b.PrependInt8Slot(
            OperatorCodeField.DEPRECATED_BUILTIN_CODE, min(code, _MAX_DEPRECATED_CODE), None
        )
        b.PrependInt32Slot(OperatorCodeField.VERSION, version, 1)  # schema default: 1
        b.PrependInt32Slot(OperatorCodeField.BUILTIN_CODE, code, None)
        opcode_tables.append(b.EndObject())

    # 5. The subgraph.
    tensors_vector = _offset_vector(b, tensor_tables)
    inputs = _int32_vector(b, [plan.tensor_index[t] for t in model.inputs])
    outputs = _int32_vector(b, [plan.tensor_index[t] for t in model.outputs])
    operators_vector = _offset_vector(b, operator_tables)
    subgraph_name = b.CreateString("main")
    b.StartObject(len(SubGraphField))
    b.PrependUOffsetTRelativeSlot(SubGraphField.TENSORS, tensors_vector, 0)
    b.PrependUOffsetTRelativeSlot(SubGraphField.INPUTS, inputs, 0)
    b.PrependUOffsetTRelativeSlot(SubGraphField.OUTPUTS, outputs, 0)
    b.PrependUOffsetTRelativeSlot(SubGraphField.OPERATORS, operators_vector, 0)
    b.PrependUOffsetTRelativeSlot(SubGraphField.NAME, subgraph_name, 0)
    subgraph = b.EndObject()

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
    subgraphs_vector = _offset_vector(b, [subgraph])
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
        tensor_indices=dict(plan.tensor_index),
        buffer_indices=dict(plan.buffer_index),
        metadata_ranges={
            name: span(first_metadata_buffer + k) for k, (name, _) in enumerate(plan.metadata)
        },
    )


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
    b.StartObject(len(OperatorField))
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
        f.name: _int32_vector(b, np.asarray(options[f.name]).tolist())
        for f in table.fields
        if f.kind == "i32[]" and f.name in options
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
        else:  # "i32[]"
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
