"""Zero-copy, bounds-checked reader of `.tflite` flatbuffers.

The file is walked with `flatbuffers.table.Table` over the caller's buffer (bytes, bytearray,
memoryview or mmap); nothing is copied except small scalars and names. Constant tensors come
back as NumPy views into that buffer, so bytes written into a writable buffer (a slot being
swapped) are seen by the next `invoke()`, exactly as TFLite Micro sees them.

Every offset is checked before `flatbuffers` dereferences it: a malformed, truncated or
hostile file raises `ModelError` naming what is wrong and where. Vector lengths are checked
against the bytes that remain, so no allocation can exceed what the file justifies.

Work is bounded by the file's size, not by what its offsets claim: a flatbuffer vector may
point at one table many times, so tables read through vectors (tensors, operators,
quantization, strings, small number vectors) are parsed once per position and shared, every
table visit and vector element read costs a unit of a budget proportional to the file length,
and the counts of subgraphs, tensors, operators, buffers and operator codes are refused above
stated limits before their entries are read.
"""

from __future__ import annotations

import dataclasses
import mmap
import struct
from dataclasses import dataclass, field
from typing import Union

import numpy as np
from flatbuffers.table import Table

from tinyswap import schema
from tinyswap.errors import ModelError
from tinyswap.schema import (
    BufferField,
    MetadataField,
    ModelField,
    OperatorCodeField,
    OperatorField,
    QuantizationField,
    SubGraphField,
    TensorField,
    TensorType,
)

Buffer = Union[bytes, bytearray, memoryview, mmap.mmap]

# A tensor of more elements than this is refused: no real microcontroller model comes near it,
# and a hostile shape must not make the planner allocate gigabytes.
MAX_TENSOR_BYTES = 1 << 30
MAX_RANK = 8

# The primary subgraph plus the ones CALL_ONCE runs (a stateful model's variable initialiser)
# and the IF branches of conditional adapter slots (one per slot and targeted layer, plus one
# pass-through per layer: 8 slots on 14 layers fit).
MAX_SUBGRAPHS = 128
# Limits far above any microcontroller model (person_detect: 89 tensors, 31 operators) that
# keep parsing and preparing any file under a second: each entry costs Python work. They hold
# for all subgraphs together, so more subgraphs never buy a hostile file more work.
MAX_TENSORS = 2048
MAX_OPERATORS = 1024
MAX_BUFFERS = MAX_TENSORS + 64  # one per constant tensor, the empty sentinel and metadata
MAX_OPERATOR_CODES = 512
MAX_METADATA = 64
# Budget of table visits and vector elements read: this many per 4-byte word of the file. An
# unshared file costs at most about one unit per word; only sharing could cost more.
VISITS_PER_WORD = 4

_U8 = struct.Struct("<B")
_I8 = struct.Struct("<b")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_U64 = struct.Struct("<Q")
_F32 = struct.Struct("<f")


@dataclass(frozen=True)
class Quantization:
    """Affine quantization of a tensor: real = scale * (q - zero_point), per tensor or per axis."""

    scale: np.ndarray  # float32, length 1 or the size of `quantized_dimension`
    zero_point: np.ndarray  # int64, same length as scale
    quantized_dimension: int

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1


@dataclass(frozen=True)
class TensorDef:
    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None
    type: TensorType
    buffer: int
    quantization: Quantization | None
    is_variable: bool
    has_sparsity: bool

    @property
    def dtype(self) -> np.dtype | None:
        return schema.NUMPY_DTYPES.get(self.type)


@dataclass(frozen=True)
class OperatorDef:
    index: int
    opcode_index: int
    op_name: str
    builtin_code: int
    version: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    intermediates: tuple[int, ...]
    options: dict[str, object]
    options_type: int
    has_custom_options: bool
    # (absolute file offset, length) of the custom_options bytes, (0, 0) when absent: a custom
    # operator's options are opaque here (an Ethos-U operator's are copied verbatim by its stitcher).
    custom_options_span: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class SubGraphDef:
    name: str
    tensors: tuple[TensorDef, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    operators: tuple[OperatorDef, ...]


@dataclass(frozen=True)
class BufferDef:
    """Where a buffer's data vector lies in the file: absolute offset and length in bytes."""

    index: int
    offset: int
    length: int


@dataclass(frozen=True)
class OperatorCodeDef:
    builtin_code: int
    name: str
    custom_code: str | None
    version: int


@dataclass
class ModelDef:
    """A parsed model. `data` is the caller's buffer; tensor constants are views into it."""

    data: Buffer = field(repr=False)
    version: int
    description: str
    operator_codes: tuple[OperatorCodeDef, ...]
    subgraphs: tuple[SubGraphDef, ...]
    buffers: tuple[BufferDef, ...]
    metadata: dict[str, int]

    @property
    def main(self) -> SubGraphDef:
        return self.subgraphs[0]

    def tensor_data(self, tensor: TensorDef) -> np.ndarray | None:
        """The constant data of `tensor` as a NumPy view into the model buffer, or None.

        The view is writable exactly when the buffer is (bytearray, writable mmap).
        """
        buf = self.buffers[tensor.buffer]
        if buf.length == 0:
            return None
        dtype = tensor.dtype
        if dtype is None:
            raise ModelError(
                f"tensor {tensor.index} ({tensor.name!r}): constant of type {tensor.type.name} "
                "cannot be read"
            )
        count = buf.length // dtype.itemsize
        return np.frombuffer(self.data, dtype=dtype, count=count, offset=buf.offset).reshape(
            tensor.shape
        )

    def metadata_bytes(self, name: str) -> memoryview | None:
        """The raw bytes of a metadata entry (e.g. `OfflineMemoryAllocation`), if present."""
        if name not in self.metadata:
            return None
        buf = self.buffers[self.metadata[name]]
        return memoryview(self.data)[buf.offset : buf.offset + buf.length]


@dataclass(frozen=True)
class OperatorName:
    """How a slot plan names operator `index` (`tinyswap.export.inject`, `tinyswap inspect`):
    `#<index>`, or its first output tensor's name."""

    index: int
    op: str
    output: str

    @property
    def ref(self) -> str:
        return f"#{self.index}"


def operator_names(model: ModelDef) -> list[OperatorName]:
    """Every operator of the main subgraph with the names a slot plan can use for it."""
    sg = model.main
    return [OperatorName(op.index, op.op_name, sg.tensors[op.outputs[0]].name if op.outputs else "")
            for op in sg.operators]


class _CheckedTable(Table):
    """A flatbuffers `Table` that also remembers its object size, for field bounds checks."""

    __slots__ = ("object_size", "vtable", "vtable_size")

    def __init__(self, buf, pos: int, object_size: int, vtable: int, vtable_size: int) -> None:
        super().__init__(buf, pos)
        self.object_size = object_size
        self.vtable = vtable
        self.vtable_size = vtable_size


class _Reader:
    """Checked access to flatbuffer tables. `where` strings make errors point at the field."""

    def __init__(self, data: Buffer) -> None:
        self.data = data
        self.view = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
        self.size = len(self.view)
        self.budget = VISITS_PER_WORD * (self.size // 4) + 1024
        self.spent = 0
        self._strings: dict[int, str] = {}
        self._numbers: dict[tuple[int, str], np.ndarray] = {}
        self.quantizations: dict[int, Quantization | None] = {}

    def charge(self, units: int, where: str) -> None:
        """Spend `units` of the work budget; a file whose shared tables would make the reader
        work beyond a multiple of its own size is refused."""
        self.spent += units
        if self.spent > self.budget:
            raise ModelError(
                f"{where}: reading the file needs more than {self.budget} table visits and vector "
                f"elements ({VISITS_PER_WORD} per 4-byte word of its {self.size} bytes); "
                "its vectors point at shared tables too many times"
            )

    def count(self, tab: _CheckedTable, index: int, limit: int, what: str, where: str) -> int:
        """The length of a vector field, refused above `limit` before any element is read."""
        vec = self.vector(tab, index, 4, where)
        n = 0 if vec is None else vec[1]
        if n > limit:
            raise ModelError(f"{where}: {n} {what}, over the supported maximum of {limit}")
        return n

    # -- primitives -------------------------------------------------------------------------
    def _need(self, pos: int, nbytes: int, where: str) -> None:
        if pos < 0 or pos + nbytes > self.size:
            raise ModelError(
                f"{where}: needs bytes [{pos}, {pos + nbytes}) but the file has {self.size} bytes"
            )

    def _get(self, fmt: struct.Struct, pos: int, where: str):
        self._need(pos, fmt.size, where)
        return fmt.unpack_from(self.view, pos)[0]

    def table(self, pos: int, where: str) -> _CheckedTable:
        """A `Table` at `pos` after checking its vtable lies inside the file."""
        self.charge(1, where)
        self._need(pos, 4, where)
        vtable = pos - _I32.unpack_from(self.view, pos)[0]
        self._need(vtable, 4, f"{where} vtable")
        vtable_size = _U16.unpack_from(self.view, vtable)[0]
        if vtable_size < 4 or vtable_size % 2:
            raise ModelError(f"{where}: vtable at {vtable} has invalid size {vtable_size}")
        self._need(vtable, vtable_size, f"{where} vtable")
        object_size = _U16.unpack_from(self.view, vtable + 2)[0]
        self._need(pos, max(object_size, 4), f"{where} object")
        return _CheckedTable(self.view, pos, object_size, vtable, vtable_size)

    def _field_pos(self, tab: _CheckedTable, index: int, size: int, where: str) -> int | None:
        slot = schema.field_offset(index)  # the vtable was bounds-checked when the table was made
        off = _U16.unpack_from(self.view, tab.vtable + slot)[0] if slot < tab.vtable_size else 0
        if off == 0:
            return None
        if off + size > tab.object_size:
            raise ModelError(f"{where}: field at offset {off} runs past its table")
        return tab.Pos + off

    def scalar(self, tab: _CheckedTable, index: int, fmt: struct.Struct, default, where: str):
        pos = self._field_pos(tab, index, fmt.size, where)
        if pos is None:
            return default
        return self._get(fmt, pos, where)

    def _indirect(self, tab: _CheckedTable, index: int, where: str) -> int | None:
        pos = self._field_pos(tab, index, 4, where)
        if pos is None:
            return None
        target = pos + self._get(_U32, pos, where)
        self._need(target, 4, where)
        return target

    def vector(self, tab: _CheckedTable, index: int, elem_size: int, where: str) -> tuple[int, int] | None:
        """(start of elements, count) of a vector field, checked to lie in the file."""
        start = self._indirect(tab, index, where)
        if start is None:
            return None
        count = _U32.unpack_from(self.view, start)[0]
        self._need(start + 4, count * elem_size, f"{where} ({count} elements)")
        return start + 4, count

    def table_positions(self, tab: _CheckedTable, index: int, where: str) -> list[int]:
        """The absolute positions of a vector of tables (not yet checked as tables)."""
        vec = self.vector(tab, index, 4, where)
        if vec is None:
            return []
        start, count = vec
        self.charge(count, where)
        offsets = np.frombuffer(self.view, dtype="<u4", count=count, offset=start).astype(np.int64)
        return (offsets + (start + 4 * np.arange(count, dtype=np.int64))).tolist()

    def table_vector(self, tab: _CheckedTable, index: int, where: str) -> list[_CheckedTable]:
        return [self.table(pos, f"{where}[{i}]") for i, pos in enumerate(self.table_positions(tab, index, where))]

    def sub_table(self, tab: _CheckedTable, index: int, where: str) -> _CheckedTable | None:
        target = self._indirect(tab, index, where)
        return None if target is None else self.table(target, where)

    def string(self, tab: _CheckedTable, index: int, where: str) -> str | None:
        vec = self.vector(tab, index, 1, where)
        if vec is None:
            return None
        start, count = vec
        cached = self._strings.get(start)
        if cached is None:
            self.charge(count // 4 + 1, where)
            cached = bytes(self.view[start : start + count]).decode("utf-8", errors="replace")
            self._strings[start] = cached
        return cached

    def numbers(self, tab: _CheckedTable, index: int, dtype: str, where: str) -> np.ndarray | None:
        dt = np.dtype(dtype)
        vec = self.vector(tab, index, dt.itemsize, where)
        if vec is None:
            return None
        start, count = vec
        key = (start, dt.str)
        cached = self._numbers.get(key)
        if cached is None:
            self.charge(count, where)
            cached = np.frombuffer(self.view, dtype=dt, count=count, offset=start)
            self._numbers[key] = cached
        return cached


def _checked_index(value: int, limit: int, what: str, where: str, allow_optional: bool = False) -> int:
    if allow_optional and value == -1:
        return value
    if not 0 <= value < limit:
        raise ModelError(f"{where}: {what} index {value} is out of range [0, {limit})")
    return int(value)


def _read_quantization(r: _Reader, tab: _CheckedTable | None, where: str) -> Quantization | None:
    if tab is None:
        return None
    if tab.Pos in r.quantizations:  # a table shared by several tensors is read once
        return r.quantizations[tab.Pos]
    quant = _read_quantization_table(r, tab, where)
    r.quantizations[tab.Pos] = quant
    return quant


def _read_quantization_table(r: _Reader, tab: _CheckedTable, where: str) -> Quantization | None:
    if r.scalar(tab, QuantizationField.DETAILS_TYPE, _U8, 0, where) != 0:
        raise ModelError(f"{where}: custom/blockwise quantization details are not supported")
    scale = r.numbers(tab, QuantizationField.SCALE, "<f4", f"{where}.scale")
    zero_point = r.numbers(tab, QuantizationField.ZERO_POINT, "<i8", f"{where}.zero_point")
    qdim = r.scalar(tab, QuantizationField.QUANTIZED_DIMENSION, _I32, 0, where)
    if scale is None or scale.size == 0:
        return None  # min/max only: the tensor is not quantized for inference purposes
    if zero_point is None or zero_point.size != scale.size:
        got = 0 if zero_point is None else zero_point.size
        raise ModelError(
            f"{where}: {scale.size} scales but {got} zero points (TFLite requires equal lengths)"
        )
    scale = scale.astype(np.float32)
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise ModelError(f"{where}: scales must be finite and positive, got {scale[:4].tolist()}")
    return Quantization(scale, zero_point.astype(np.int64), int(qdim))


# The zero point of a quantized tensor must be a value of its own type (TFLite's spec); a
# zero point outside it is a corrupt file, and would overflow the kernels' integer maths.
_ZERO_POINT_RANGES = {
    TensorType.INT8: (-128, 127),
    TensorType.UINT8: (0, 255),
    TensorType.INT16: (-32768, 32767),
    TensorType.INT32: (-(2**31), 2**31 - 1),
}


def _check_zero_points(quant: Quantization, ttype: TensorType, where: str) -> None:
    lo, hi = _ZERO_POINT_RANGES.get(ttype, (-(2**31), 2**31 - 1))
    if quant.zero_point.min() < lo or quant.zero_point.max() > hi:
        raise ModelError(
            f"{where}: zero point {int(quant.zero_point.min())}..{int(quant.zero_point.max())} "
            f"is outside the {ttype.name} range [{lo}, {hi}]"
        )


def _read_tensor(r: _Reader, tab: _CheckedTable, index: int, n_buffers: int, where: str) -> TensorDef:
    shape_arr = r.numbers(tab, TensorField.SHAPE, "<i4", f"{where}.shape")
    if shape_arr is not None and shape_arr.size > MAX_RANK:
        raise ModelError(f"{where}: rank {shape_arr.size} exceeds the supported maximum {MAX_RANK}")
    shape = tuple(int(d) for d in shape_arr) if shape_arr is not None else ()
    if any(d < 0 for d in shape):
        raise ModelError(f"{where}: negative dimension in shape {shape}")
    sig_arr = r.numbers(tab, TensorField.SHAPE_SIGNATURE, "<i4", f"{where}.shape_signature")
    if sig_arr is not None and sig_arr.size > MAX_RANK:
        raise ModelError(
            f"{where}: shape signature of rank {sig_arr.size} exceeds the supported maximum {MAX_RANK}"
        )
    signature = tuple(int(d) for d in sig_arr) if sig_arr is not None else None
    type_code = r.scalar(tab, TensorField.TYPE, _I8, 0, where)
    try:
        ttype = TensorType(type_code)
    except ValueError:
        raise ModelError(f"{where}: unknown tensor type {type_code}") from None
    dtype = schema.NUMPY_DTYPES.get(ttype)
    itemsize = dtype.itemsize if dtype is not None else 1
    nbytes = itemsize * int(np.prod(shape, dtype=object)) if shape else itemsize
    if nbytes > MAX_TENSOR_BYTES:
        raise ModelError(f"{where}: shape {shape} needs {nbytes} bytes, over the limit")
    buffer = r.scalar(tab, TensorField.BUFFER, _U32, 0, where)
    _checked_index(buffer, n_buffers, "buffer", where)
    name = r.string(tab, TensorField.NAME, f"{where}.name") or f"tensor_{index}"
    quant = _read_quantization(
        r, r.sub_table(tab, TensorField.QUANTIZATION, f"{where}.quantization"), f"{where} quantization"
    )
    if quant is not None:
        _check_zero_points(quant, ttype, where)
    if quant is not None and quant.per_channel:
        # The converter writes bias quantization with the filter's axis (person_detect has a
        # [8] bias quantized "on axis 3"); TFLM never reads bias scales, so only a per-channel
        # axis that exists and disagrees with the shape is an error.
        qdim = quant.quantized_dimension
        if qdim < 0 or (qdim < len(shape) and shape[qdim] != quant.scale.size):
            raise ModelError(
                f"{where}: {quant.scale.size} per-channel scales on axis "
                f"{quant.quantized_dimension} do not fit shape {shape}"
            )
    return TensorDef(
        index=index,
        name=name,
        shape=shape,
        shape_signature=signature,
        type=ttype,
        buffer=buffer,
        quantization=quant,
        is_variable=bool(r.scalar(tab, TensorField.IS_VARIABLE, _U8, 0, where)),
        has_sparsity=r.sub_table(tab, TensorField.SPARSITY, f"{where}.sparsity") is not None,
    )


_SCALAR_FORMATS = {"i8": _I8, "i32": _I32, "bool": _U8, "f32": _F32}
_ENUM_FIELDS = {"padding": schema.Padding, "fused_activation_function": schema.Activation}


def _read_options(r: _Reader, tab: _CheckedTable, op_name: str, where: str) -> tuple[dict[str, object], int]:
    options_type = r.scalar(tab, OperatorField.BUILTIN_OPTIONS_TYPE, _U8, 0, where)
    expected = schema.OPTIONS_OF_OPERATOR.get(op_name)
    table_def = schema.OPTIONS_BY_UNION_TYPE.get(options_type)
    if options_type != 0 and expected is not None and (
        table_def is None or table_def.name != expected
    ):
        raise ModelError(
            f"{where} ({op_name}): builtin options of union type {options_type}, expected {expected}"
        )
    if table_def is None:
        table_def = schema.OPTIONS_TABLES.get(expected) if expected else None
        if table_def is None:
            return {}, options_type
        opt_tab = None
    else:
        opt_tab = r.sub_table(tab, OperatorField.BUILTIN_OPTIONS, f"{where}.builtin_options")
    options: dict[str, object] = {}
    for i, fdef in enumerate(table_def.fields):
        fwhere = f"{where} ({op_name}) option {fdef.name}"
        if fdef.kind == "str":
            options[fdef.name] = r.string(opt_tab, i, fwhere) if opt_tab is not None else None
            continue
        if fdef.kind == "i32[]":
            arr = r.numbers(opt_tab, i, "<i4", fwhere) if opt_tab is not None else None
            options[fdef.name] = None if arr is None else tuple(int(v) for v in arr)
            continue
        value = (
            r.scalar(opt_tab, i, _SCALAR_FORMATS[fdef.kind], fdef.default, fwhere)
            if opt_tab is not None
            else fdef.default
        )
        if fdef.kind == "bool":
            value = bool(value)
        elif fdef.kind == "f32":
            value = float(value)
        if fdef.name in _ENUM_FIELDS:
            try:
                value = _ENUM_FIELDS[fdef.name](value)
            except ValueError:
                raise ModelError(f"{fwhere}: unknown value {value}") from None
        options[fdef.name] = value
    return options, options_type


def _index_tuple(r: _Reader, tab: _CheckedTable, index: int, limit: int, what: str, where: str,
                 allow_optional: bool) -> tuple[int, ...]:
    arr = r.numbers(tab, index, "<i4", where)
    if arr is None:
        return ()
    r.charge(arr.size, where)  # converted per use: distinct tables may share one vector
    return tuple(_checked_index(int(v), limit, what, where, allow_optional) for v in arr)


def read_model(data: Buffer) -> ModelDef:
    """Parse a `.tflite` model from `data` without copying it. Raises `ModelError`."""
    if not isinstance(data, (bytes, bytearray, memoryview, mmap.mmap)):
        raise ModelError(f"model data must be bytes, bytearray, memoryview or mmap, not {type(data).__name__}")
    r = _Reader(data)
    if r.size < 8:
        raise ModelError(f"file of {r.size} bytes is too short to be a flatbuffer")
    if bytes(r.view[4:8]) != schema.FILE_IDENTIFIER:
        raise ModelError(
            f"file identifier is {bytes(r.view[4:8])!r}, expected {schema.FILE_IDENTIFIER!r} (not a .tflite)"
        )
    root = r.table(_U32.unpack_from(r.view, 0)[0], "Model")
    version = r.scalar(root, ModelField.VERSION, _U32, 0, "Model.version")
    if version != schema.SCHEMA_VERSION:
        raise ModelError(f"Model.version is {version}, only schema version 3 is supported")

    n_subgraphs = r.count(root, ModelField.SUBGRAPHS, MAX_SUBGRAPHS, "subgraphs", "Model.subgraphs")
    if n_subgraphs == 0:
        raise ModelError("Model.subgraphs is empty: there is nothing to run")
    r.count(root, ModelField.BUFFERS, MAX_BUFFERS, "buffers", "Model.buffers")
    r.count(root, ModelField.OPERATOR_CODES, MAX_OPERATOR_CODES, "operator codes", "Model.operator_codes")
    r.count(root, ModelField.METADATA, MAX_METADATA, "metadata entries", "Model.metadata")

    buffers = []
    for i, btab in enumerate(r.table_vector(root, ModelField.BUFFERS, "Model.buffers")):
        where = f"buffer {i}"
        vec = r.vector(btab, BufferField.DATA, 1, where)
        ext_offset = r.scalar(btab, BufferField.OFFSET, _U64, 0, where)
        if ext_offset > 1:
            raise ModelError(
                f"{where}: data stored outside the flatbuffer (offset {ext_offset}); "
                "TFLite Micro reads only Buffer.data"
            )
        start, count = vec if vec is not None else (0, 0)
        buffers.append(BufferDef(i, start if count else 0, count))
    if not buffers:
        raise ModelError("Model.buffers is empty: buffer 0 must exist as the empty sentinel")

    codes = []
    for i, ctab in enumerate(r.table_vector(root, ModelField.OPERATOR_CODES, "Model.operator_codes")):
        where = f"operator code {i}"
        deprecated = r.scalar(ctab, OperatorCodeField.DEPRECATED_BUILTIN_CODE, _I8, 0, where)
        builtin = r.scalar(ctab, OperatorCodeField.BUILTIN_CODE, _I32, 0, where)
        code = max(deprecated, builtin)  # the schema's rule for files from either era
        name = schema.BUILTIN_OPERATOR_NAMES.get(code, f"UNKNOWN_BUILTIN_{code}")
        custom = r.string(ctab, OperatorCodeField.CUSTOM_CODE, f"{where}.custom_code")
        op_version = r.scalar(ctab, OperatorCodeField.VERSION, _I32, 1, where)
        codes.append(OperatorCodeDef(code, name if code != 32 else f"CUSTOM:{custom}", custom, op_version))

    subgraphs = []
    total_tensors = total_operators = 0
    for s, stab in enumerate(r.table_vector(root, ModelField.SUBGRAPHS, "Model.subgraphs")):
        swhere = f"subgraph {s}"
        total_tensors += r.count(stab, SubGraphField.TENSORS, MAX_TENSORS - total_tensors, "tensors",
                                 f"{swhere}.tensors (with the subgraphs before it)")
        total_operators += r.count(stab, SubGraphField.OPERATORS, MAX_OPERATORS - total_operators, "operators",
                                   f"{swhere}.operators (with the subgraphs before it)")
        # A vector may list one table many times: each position is parsed once, then shared.
        tensor_at: dict[int, TensorDef] = {}
        tensor_list = []
        for i, pos in enumerate(r.table_positions(stab, SubGraphField.TENSORS, f"{swhere}.tensors")):
            first = tensor_at.get(pos)
            if first is None:
                tab = r.table(pos, f"{swhere}.tensors[{i}]")
                tensor = tensor_at[pos] = _read_tensor(r, tab, i, len(buffers), f"{swhere} tensor {i}")
            else:
                named = first.name != f"tensor_{first.index}"
                tensor = dataclasses.replace(first, index=i, name=first.name if named else f"tensor_{i}")
            tensor_list.append(tensor)
        tensors = tuple(tensor_list)
        n = len(tensors)
        operators = []
        op_at: dict[int, OperatorDef] = {}
        for o, opos in enumerate(r.table_positions(stab, SubGraphField.OPERATORS, f"{swhere}.operators")):
            if opos in op_at:
                operators.append(dataclasses.replace(op_at[opos], index=o))
                continue
            otab = r.table(opos, f"{swhere}.operators[{o}]")
            owhere = f"{swhere} operator {o}"
            opcode_index = _checked_index(
                r.scalar(otab, OperatorField.OPCODE_INDEX, _U32, 0, owhere), len(codes), "opcode", owhere
            )
            code = codes[opcode_index]
            options, options_type = _read_options(r, otab, code.name, owhere)
            custom_span = r.vector(otab, OperatorField.CUSTOM_OPTIONS, 1, owhere)
            operators.append(
                OperatorDef(
                    index=o,
                    opcode_index=opcode_index,
                    op_name=code.name,
                    builtin_code=code.builtin_code,
                    version=code.version,
                    inputs=_index_tuple(r, otab, OperatorField.INPUTS, n, "input tensor", owhere, True),
                    outputs=_index_tuple(r, otab, OperatorField.OUTPUTS, n, "output tensor", owhere, False),
                    intermediates=_index_tuple(
                        r, otab, OperatorField.INTERMEDIATES, n, "intermediate tensor", owhere, True
                    ),
                    options=options,
                    options_type=options_type,
                    has_custom_options=custom_span is not None,
                    custom_options_span=custom_span or (0, 0),
                )
            )
            op_at[opos] = operators[-1]
        subgraphs.append(
            SubGraphDef(
                name=r.string(stab, SubGraphField.NAME, f"{swhere}.name") or "",
                tensors=tensors,
                inputs=_index_tuple(r, stab, SubGraphField.INPUTS, n, "input tensor", swhere, False),
                outputs=_index_tuple(r, stab, SubGraphField.OUTPUTS, n, "output tensor", swhere, False),
                operators=tuple(operators),
            )
        )
    if not subgraphs:
        raise ModelError("Model.subgraphs is empty: there is nothing to run")

    metadata = {}
    for i, mtab in enumerate(r.table_vector(root, ModelField.METADATA, "Model.metadata")):
        where = f"metadata {i}"
        name = r.string(mtab, MetadataField.NAME, where) or ""
        metadata[name] = _checked_index(
            r.scalar(mtab, MetadataField.BUFFER, _U32, 0, where), len(buffers), "buffer", where
        )

    model = ModelDef(
        data=data,
        version=version,
        description=r.string(root, ModelField.DESCRIPTION, "Model.description") or "",
        operator_codes=tuple(codes),
        subgraphs=tuple(subgraphs),
        buffers=tuple(buffers),
        metadata=metadata,
    )
    _check_constant_sizes(model)
    return model


def _check_constant_sizes(model: ModelDef) -> None:
    """A constant's buffer must hold exactly shape x itemsize bytes, or reading it would tear."""
    for s, sub in enumerate(model.subgraphs):
        for t in sub.tensors:
            length = model.buffers[t.buffer].length
            if length == 0:
                continue
            dtype = t.dtype
            if dtype is None:
                continue  # refused by the kernel that uses it, with its name
            expected = dtype.itemsize * int(np.prod(t.shape, dtype=np.int64))
            if length != expected:
                raise ModelError(
                    f"subgraph {s} tensor {t.index} ({t.name!r}): buffer {t.buffer} holds {length} "
                    f"bytes, shape {t.shape} of {t.type.name} needs {expected}"
                )
