"""The kernel contract: `prepare` validates and freezes integer parameters, `eval` computes.

Mirrors TFLite Micro's split (`Prepare` turns float scales into multipliers once; `Eval` is
integer only). `prepare` sees tensor metadata and constant *views*; it must not cache anything
derived from constant bytes, because adapter slots are patched in place between invokes and
the next `eval` must see the new bytes (TFLM reference kernels cache nothing either).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from tinyswap.errors import ModelError, QuantizationError, TinySwapError, UnsupportedOpError
from tinyswap.reader import OperatorDef, Quantization
from tinyswap.schema import TensorType


class Profile(str, enum.Enum):
    """Which runtime's arithmetic to reproduce bit for bit."""

    TFLM = "tflm"  # TFLite Micro reference kernels, double rounding: the golden
    LITERT = "litert"  # LiteRT's BUILTIN_REF resolver (single rounding in FC/conv)


@dataclass(frozen=True)
class TensorSpec:
    """What a kernel may know about a tensor at prepare time."""

    index: int
    name: str
    shape: tuple[int, ...]
    type: TensorType
    quantization: Quantization | None
    constant: np.ndarray | None = field(default=None, repr=False)

    @property
    def dtype(self) -> np.dtype:
        from tinyswap.schema import NUMPY_DTYPES

        return NUMPY_DTYPES[self.type]

    @property
    def is_constant(self) -> bool:
        return self.constant is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class Prepared:
    """Frozen per-op parameters. Kernels subclass it or fill `params`."""

    output_shapes: list[tuple[int, ...]]
    params: dict[str, Any] = field(default_factory=dict)
    # Output values already known at prepare time (SHAPE of a static tensor, slices and packs
    # of those): the interpreter treats them as constants downstream, so the converter's
    # dynamic-batch `Flatten` (SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE) gets a static shape.
    folded: list[np.ndarray] | None = None


@dataclass
class PrepareContext:
    op: OperatorDef
    inputs: list[TensorSpec | None]
    outputs: list[TensorSpec]
    profile: Profile
    num_threads: int = 1  # intra-op threads a kernel may use (batch slices)

    @property
    def where(self) -> str:
        return f"operator {self.op.index} ({self.op.op_name})"

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
            f"{self.where}: tensor {tensor.index} ({tensor.name!r}) has type {tensor.type.name}; "
            f"supported: {supported}"
        )

    def require_types(self, tensor: TensorSpec, *types: TensorType) -> None:
        if tensor.type not in types:
            raise self.unsupported_type(tensor, ", ".join(t.name for t in types))

    def per_tensor(self, tensor: TensorSpec) -> tuple[float, int]:
        """(scale as a float32-valued Python float, zero point) of a per-tensor quantized tensor."""
        q = tensor.quantization
        if q is None:
            raise QuantizationError(
                f"{self.where}: tensor {tensor.index} ({tensor.name!r}) of type {tensor.type.name} "
                "has no quantization parameters"
            )
        return float(q.scale[0]), int(q.zero_point[0])

    def option(self, name: str) -> Any:
        if name not in self.op.options:
            raise self.error(f"missing builtin option {name!r}")
        return self.op.options[name]


class Kernel(ABC):
    """One TFLite builtin operator. Subclasses set `op_name` and register themselves."""

    op_name: ClassVar[str]

    @abstractmethod
    def prepare(self, ctx: PrepareContext) -> Prepared:
        """Check types, shapes and options; compute output shapes and integer parameters."""

    @abstractmethod
    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """Compute outputs from input arrays (constants are live views). Integer only."""

    def run_prepare(self, ctx: PrepareContext) -> Prepared:
        """Template method: re-raise unexpected failures with the operator named."""
        try:
            return self.prepare(ctx)
        except TinySwapError:
            raise
        except (ValueError, IndexError, KeyError, TypeError, ZeroDivisionError, OverflowError) as exc:
            raise ctx.error(f"cannot prepare: {exc}") from exc
