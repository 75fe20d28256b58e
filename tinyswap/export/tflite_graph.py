"""The in-memory description of one TFLite subgraph that `tflite_builder` writes: tensors with
their quantization and data, operators that hold references to their tensors, and the model.

Each record checks itself on construction (types, shapes, ranges, operator options), so a
description that exists is one the writer can lay out; the writer (`tflite_builder`) only
assigns indices and bytes. Split from the writer so each file has one job.
"""

from __future__ import annotations

import math
import operator as _operator
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import numpy.typing as npt

from tinyswap import schema
from tinyswap.export.errors import BuilderError, OptionError

# `Buffer.data` is declared `force_align: 16` in schema.fbs; readers that map int32/float data
# straight out of the file (TFLM does) rely on at least that.
MIN_ALIGNMENT = 16
# Large enough for flash erase blocks (4 KiB sectors, 64 KiB NOR blocks); beyond this the
# padding would dwarf any microcontroller model and most likely the value is a mistake.
MAX_ALIGNMENT = 1 << 20

_INT8_RANGE = (-(1 << 7), (1 << 7) - 1)
_INT32_RANGE = (-(1 << 31), (1 << 31) - 1)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MAX_OPTION_STRING = 256  # a variable's container or shared name

# Operators the builder cannot describe: the placeholder is not an operator at all. (CUSTOM is
# written when the operator names its `custom_code`; its options are opaque bytes.)
_UNSUPPORTED_OPS = frozenset({"PLACEHOLDER_FOR_GREATER_OP_CODES"})
# A custom operator's code and options: bounded like every other name and vector we write.
MAX_CUSTOM_CODE = 64
MAX_CUSTOM_OPTIONS = 1 << 20

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
        resource: a resource handle (what VAR_HANDLE makes for a stateful model's variables),
            written with type RESOURCE; it has no elements, so `dtype` is not written, and it
            holds neither data nor quantization.
    """

    name: str
    shape: tuple[int, ...]
    dtype: npt.DTypeLike
    data: np.ndarray | None = None
    quant: Quant | None = None
    shape_signature: tuple[int, ...] | None = None
    alignment: int = MIN_ALIGNMENT
    resource: bool = False

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
        if self.resource is not False and (self.resource is not True or self.data is not None or self.quant is not None):
            raise BuilderError(f"{where}: a resource handle (resource=True) holds no data and no quantization")
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
        custom_code: for op "CUSTOM" only (and required there): the `OperatorCode.custom_code`
            a runtime resolves the kernel by, e.g. "ethos-u".
        custom_options: for op "CUSTOM" only: the operator's opaque `custom_options` bytes,
            written verbatim (flexbuffers format, as every TFLite custom operator expects).
    """

    op: str
    inputs: list[Tensor | None]
    outputs: list[Tensor]
    options: dict[str, object] = field(default_factory=dict)
    version: int = 1
    custom_code: str | None = None
    custom_options: bytes | None = None

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
        self._check_custom(where)
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

    def _check_custom(self, where: str) -> None:
        if self.op != "CUSTOM":
            if self.custom_code is not None or self.custom_options is not None:
                raise BuilderError(f"{where}: custom_code and custom_options belong to CUSTOM operators only")
            return
        code = self.custom_code
        if not isinstance(code, str) or not code or len(code) > MAX_CUSTOM_CODE or not code.isprintable():
            raise BuilderError(f"{where}: a CUSTOM operator needs its custom_code, a printable name of 1 to "
                               f"{MAX_CUSTOM_CODE} characters (e.g. 'ethos-u'), got {code!r}")
        extra = self.custom_options
        if extra is not None and (not isinstance(extra, bytes) or len(extra) > MAX_CUSTOM_OPTIONS):
            raise BuilderError(f"{where}: custom_options must be bytes of at most {MAX_CUSTOM_OPTIONS}, "
                               f"got {type(extra).__name__}")


@dataclass
class Subgraph:
    """A subgraph after the primary one (an IF's branches, a CALL_ONCE initialiser): its
    operators in execution order and its own inputs and outputs. Its tensors are its own: a
    tensor object belongs to one subgraph only (values cross subgraphs by copy, as TFLite's
    control-flow operators move them)."""

    operators: list[Operator]
    inputs: list[Tensor]
    outputs: list[Tensor]
    name: str = ""


@dataclass
class Model:
    """A model: the primary subgraph (what `invoke` runs) and any further subgraphs.

    Attributes:
        operators: in execution order; every non-constant input must be a graph input or the
            output of an earlier operator.
        inputs, outputs: the primary subgraph's inputs and outputs, in order.
        subgraphs: subgraphs 1, 2, ... of the file, in order (operators refer to them by that
            index, e.g. IF's `then_subgraph_index`).
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
    # Non-constant tensors that operators use without any operator producing them: an NPU
    # operator's scratch area (Vela's `scratch`), which lives in the arena between invocations.
    scratch_tensors: list[Tensor] = field(default_factory=list)
    subgraphs: list[Subgraph] = field(default_factory=list)


@dataclass(frozen=True)
class BuiltModel:
    """A written model and where things landed in it.

    Attributes:
        data: the `.tflite` file.
        buffer_ranges: constant tensor -> (absolute file offset, byte length) of its data.
        tensor_indices: every tensor -> its index in its subgraph's tensor list.
        buffer_indices: constant tensor -> its index in `Model.buffers`.
        metadata_ranges: metadata name -> (absolute file offset, byte length) of its buffer.
        tensor_subgraphs: every tensor -> the index of the subgraph holding it (0: primary).
    """

    data: bytes
    buffer_ranges: dict[Tensor, tuple[int, int]]
    tensor_indices: dict[Tensor, int]
    buffer_indices: dict[Tensor, int]
    metadata_ranges: dict[str, tuple[int, int]]
    tensor_subgraphs: dict[Tensor, int] = field(default_factory=dict)

    def range_of(self, name: str) -> tuple[int, int]:
        """(file offset, byte length) of the constant tensor called `name`."""
        for tensor, span in self.buffer_ranges.items():
            if tensor.name == name:
                return span
        raise KeyError(
            f"no constant tensor named {name!r}; constants are "
            f"{sorted(t.name for t in self.buffer_ranges)}"
        )


def _is_int(value: object) -> bool:
    # bool is an int subclass in Python; a True where a stride belongs is a bug, not a 1.
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _tensor_type(tensor: Tensor) -> schema.TensorType:
    if tensor.resource is True:
        return schema.TensorType.RESOURCE
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
    elif kind == "str":
        if not isinstance(value, str) or len(value) > _MAX_OPTION_STRING:
            raise fail(f"a str of at most {_MAX_OPTION_STRING} characters")
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
