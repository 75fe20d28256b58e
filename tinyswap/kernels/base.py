"""The kernel contract: `prepare` validates and freezes integer parameters, `eval` computes.

Mirrors TFLite Micro's split (`Prepare` turns float scales into multipliers once; `Eval` is
integer only). `prepare` sees tensor metadata and constant *views*; it must not cache anything
derived from constant bytes, because adapter slots are patched in place between invokes and
the next `eval` must see the new bytes (TFLM reference kernels cache nothing either).

Kernels know nothing about the model file or the graph: the interpreter describes each
operator to them with the small records below (`TensorSpec`, `TensorQuant`, `PrepareContext`),
so a kernel can be prepared and run from hand-written descriptions and arrays alone.
`prepare` returns its parameters as a frozen, typed record per op (`Prepared.params`); `eval`
reads that record and nothing else.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Generic, Iterator, Mapping, Sequence, TypeVar

import numpy as np
from numpy.typing import DTypeLike

from tinyswap.errors import ModelError, QuantizationError, TinySwapError, UnsupportedOpError

# The element types kernels compute on, as NumPy dtypes (the interpreter maps the file's type
# codes onto these; a type NumPy cannot hold reaches a kernel with dtype None).
FLOAT32 = np.dtype(np.float32)
INT8 = np.dtype(np.int8)
UINT8 = np.dtype(np.uint8)
INT16 = np.dtype(np.int16)
INT32 = np.dtype(np.int32)
INT64 = np.dtype(np.int64)
BOOL = np.dtype(np.bool_)


def dtype_name(dtype: DTypeLike) -> str:
    """The TFLite spelling of a NumPy element type ("INT8", "FLOAT32"), for messages."""
    return np.dtype(dtype).name.upper()


class Profile(str, enum.Enum):
    """Which runtime's arithmetic to reproduce bit for bit."""

    TFLM = "tflm"  # TFLite Micro reference kernels, double rounding: the golden
    LITERT = "litert"  # LiteRT's BUILTIN_REF resolver (single rounding in FC/conv)


class FusedActivation(enum.IntEnum):
    """TFLite's `ActivationFunctionType` codes: the values a model's options carry."""

    NONE = 0
    RELU = 1
    RELU_N1_TO_1 = 2
    RELU6 = 3
    TANH = 4
    SIGN_BIT = 5


class Padding(enum.IntEnum):
    """TFLite's `Padding` codes."""

    SAME = 0
    VALID = 1


@dataclass(frozen=True, eq=False)
class TensorQuant:
    """Affine quantization: real = scale * (q - zero_point), per tensor or along one axis."""

    scale: np.ndarray  # float32, one value or one per channel
    zero_point: np.ndarray  # int64, same length as scale
    quantized_dimension: int = 0

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1


@dataclass(frozen=True, eq=False)
class TensorSpec:
    """What a kernel may know about a tensor at prepare time."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype | None  # None: an element type NumPy cannot hold (refused by name)
    quantization: TensorQuant | None = None
    constant: np.ndarray | None = field(default=None, repr=False)
    type_name: str = ""  # TFLite's name of the type; derived from dtype when not given

    def __post_init__(self) -> None:
        if not self.type_name:
            object.__setattr__(self, "type_name", dtype_name(self.dtype) if self.dtype is not None else "UNKNOWN")

    @property
    def is_constant(self) -> bool:
        return self.constant is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


P = TypeVar("P")


@dataclass(frozen=True, eq=False)
class Prepared(Generic[P]):
    """What `prepare` hands to `eval`: output shapes and the op's frozen parameter record."""

    output_shapes: Sequence[tuple[int, ...]]
    params: P = None  # type: ignore[assignment]  # ops that only move bytes need none
    # Output values already known at prepare time (SHAPE of a static tensor, slices and packs
    # of those): the interpreter treats them as constants downstream, so the converter's
    # dynamic-batch `Flatten` (SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE) gets a static shape.
    folded: Sequence[np.ndarray] | None = None
    # The largest matrix product an invoke of this op runs through BLAS, as (rows, depth,
    # columns); (0, 0, 0): none. The interpreter caps BLAS threads only around plans where one
    # may start threads (`threads.blas_may_thread`).
    matmul: tuple[int, int, int] = (0, 0, 0)


def is_immutable(array: np.ndarray | None) -> bool:
    """Whether `array`'s bytes can never change: a view into an immutable `bytes` object (a model
    read into `bytes`). A bytearray or writable buffer may be patched in place between invokes
    (adapter slots), and so may anything else; only then may a kernel derive values from
    constant *bytes* at bind (pre-converted weights, folded zero points, bias-dependent tables)."""
    if array is None:
        return False
    owner: object = array
    while isinstance(owner, np.ndarray):
        owner = owner.base
    if isinstance(owner, memoryview):
        owner = owner.obj
    return isinstance(owner, bytes)


def frozen_array(values: np.ndarray) -> np.ndarray:
    """A read-only copy: parameter records are immutable, arrays in them too."""
    out = np.array(values)
    out.setflags(write=False)
    return out


@dataclass
class PrepareContext:
    """One operator as a kernel sees it: its name, builtin options and tensor descriptions."""

    op_index: int
    op_name: str
    options: Mapping[str, Any]
    inputs: list[TensorSpec | None]
    outputs: list[TensorSpec]
    profile: Profile = Profile.TFLM
    num_threads: int = 1  # intra-op threads a kernel may use (batch slices)

    @property
    def where(self) -> str:
        return f"operator {self.op_index} ({self.op_name})"

    def error(self, message: str) -> ModelError:
        return ModelError(f"{self.where}: {message}")

    def input(self, i: int) -> TensorSpec:
        if i >= len(self.inputs) or self.inputs[i] is None:
            raise self.error(f"needs input {i}, the model gives {len(self.inputs)} inputs")
        return self.inputs[i]  # type: ignore[return-value]

    def optional_input(self, i: int) -> TensorSpec | None:
        return self.inputs[i] if i < len(self.inputs) else None

    def output(self, i: int = 0) -> TensorSpec:
        if i >= len(self.outputs):
            raise self.error(f"needs output {i}, the model gives {len(self.outputs)} outputs")
        return self.outputs[i]

    def expect_counts(self, n_inputs: Sequence[int] | int, n_outputs: int = 1) -> None:
        allowed = (n_inputs,) if isinstance(n_inputs, int) else tuple(n_inputs)
        if len(self.inputs) not in allowed:
            raise self.error(f"has {len(self.inputs)} inputs, expected {' or '.join(map(str, allowed))}")
        if len(self.outputs) != n_outputs:
            raise self.error(f"has {len(self.outputs)} outputs, expected {n_outputs}")

    def unsupported_type(self, tensor: TensorSpec, supported: str) -> UnsupportedOpError:
        return UnsupportedOpError(
            f"{self.where}: tensor {tensor.index} ({tensor.name!r}) has type {tensor.type_name}; "
            f"supported: {supported}"
        )

    def require_types(self, tensor: TensorSpec, *dtypes: np.dtype) -> None:
        if tensor.dtype is None or tensor.dtype not in dtypes:
            raise self.unsupported_type(tensor, ", ".join(dtype_name(t) for t in dtypes))

    def per_tensor(self, tensor: TensorSpec) -> tuple[float, int]:
        """(scale as a float32-valued Python float, zero point) of a per-tensor quantized tensor."""
        q = tensor.quantization
        if q is None:
            raise QuantizationError(
                f"{self.where}: tensor {tensor.index} ({tensor.name!r}) of type {tensor.type_name} "
                "has no quantization parameters"
            )
        return float(q.scale[0]), int(q.zero_point[0])

    def option(self, name: str) -> Any:
        if name not in self.options:
            raise self.error(f"missing builtin option {name!r}")
        return self.options[name]

    def activation(self) -> FusedActivation:
        """The fused activation option (an unknown code is refused at prepare)."""
        return FusedActivation(int(self.option("fused_activation_function")))

    def padding(self) -> Padding:
        return Padding(int(self.option("padding")))


# One operator ready to run: reads its bound input arrays, writes its bound output views.
Step = Callable[[], None]


@dataclass
class PlanBudget:
    """What one plan's steps may keep besides the arena: scratch buffers (padded inputs, tap
    copies) and newly built pair tables. A hostile model of a thousand small convolutions or
    ADDs with distinct scales then binds in bounded memory and time; past the budget a kernel
    binds its plain `eval` step, which allocates temporaries only while it runs."""

    buffer_bytes: int = 16 << 20
    new_pair_tables: int = 32


_PLAN_BUDGET: ContextVar[PlanBudget | None] = ContextVar("plan_budget", default=None)


@contextmanager
def plan_budget(budget: PlanBudget | None = None) -> Iterator[PlanBudget]:
    """The budget for the steps bound inside this block (one `allocate_tensors`)."""
    budget = budget or PlanBudget()
    token = _PLAN_BUDGET.set(budget)
    try:
        yield budget
    finally:
        _PLAN_BUDGET.reset(token)


def claim_buffer_bytes(nbytes: int) -> bool:
    """Take `nbytes` of scratch from the current plan's budget; False when it would overrun.
    Outside a plan (a kernel bound by hand) nothing is counted."""
    budget = _PLAN_BUDGET.get()
    if budget is None:
        return True
    if nbytes > budget.buffer_bytes:
        return False
    budget.buffer_bytes -= nbytes
    return True


def claim_new_pair_table() -> bool:
    """Take one newly built pair table from the current plan's budget (see `PlanBudget`)."""
    budget = _PLAN_BUDGET.get()
    if budget is None:
        return True
    if budget.new_pair_tables <= 0:
        return False
    budget.new_pair_tables -= 1
    return True


def eval_step(evaluate: Callable[[Any, list[np.ndarray | None]], Sequence[np.ndarray]], prepared: Any,
              inputs: list[np.ndarray | None], outputs: list[np.ndarray]) -> Step:
    """The generic step: `evaluate(prepared, inputs)`, each result copied into its output view.
    Also what the interpreter's own operators (CALL_ONCE, the variable operators) run through."""
    views = list(outputs)

    def step() -> None:
        for view, result in zip(views, evaluate(prepared, inputs)):
            np.copyto(view, result.reshape(view.shape), casting="no")

    return step


class Kernel(ABC, Generic[P]):
    """One TFLite builtin operator. Subclasses set `op_name` and register themselves."""

    op_name: ClassVar[str]

    @abstractmethod
    def prepare(self, ctx: PrepareContext) -> Prepared[P]:
        """Check types, shapes and options; compute output shapes and integer parameters."""

    @abstractmethod
    def eval(self, prepared: Prepared[P], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """Compute outputs from input arrays (constants are live views). Integer only."""

    def bind(self, prepared: Prepared[P], inputs: list[np.ndarray | None], outputs: list[np.ndarray]) -> Step:
        """The operator as one step of an execution plan, built once at `allocate_tensors`.

        `inputs` are the arrays the op reads (arena views, constants as live views into the
        model buffer) and `outputs` the arena views it writes; both stay the same objects
        until the next `allocate_tensors`, so a kernel may derive fixed views, index arrays
        and scratch buffers from their shapes here. Like `prepare`, it must not derive anything
        from constant *bytes* (slots are patched in place between invokes) unless those bytes
        can never change (`is_immutable`: a model held in `bytes`). The default runs
        `eval` and copies its results; hot kernels override it with a leaner step that gives
        bit-identical results (the tests compare both against TFLite Micro)."""
        return eval_step(self.eval, prepared, inputs, outputs)

    def run_prepare(self, ctx: PrepareContext) -> Prepared[P]:
        """Template method: re-raise unexpected failures with the operator named."""
        try:
            return self.prepare(ctx)
        except TinySwapError:
            raise
        except (ValueError, IndexError, KeyError, TypeError, ZeroDivisionError, OverflowError) as exc:
            raise ctx.error(f"cannot prepare: {exc}") from exc
