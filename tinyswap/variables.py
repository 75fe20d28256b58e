"""Resource variables: the state a streaming model keeps from one invoke to the next.

The TensorFlow converter turns a model's `tf.Variable` into resource variables
(`experimental_enable_resource_variables`): VAR_HANDLE names a variable (container and shared
name), ASSIGN_VARIABLE writes it, READ_VARIABLE reads it, and a CALL_ONCE operator runs an
initialisation subgraph the first time the model is invoked. This module is the interpreter's
store for them, with TFLite Micro's rules (`micro_resource_variable.cc`):

- a variable gets its buffer when the first ASSIGN_VARIABLE that writes it is prepared, sized by
  that operator's value tensor, and filled with a default byte: the value tensor's zero point
  (cast to int8) when it is quantized, else 0;
- `reset()` fills every buffer with its default byte again; it does not run the initialisation
  subgraph a second time (TFLite Micro's CALL_ONCE keeps its "has run" flag across a reset), so
  a variable initialised to non-zero values comes back as zeros (or its zero point) after a reset;
- a read or write must move exactly the variable's byte count (TFLite Micro only checks this in
  debug builds; here a model that breaks it is refused when it is prepared).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.errors import ModelError

# Far above the handful of variables a streaming model keeps, low enough that a hostile model
# cannot make the interpreter track thousands of them.
MAX_VARIABLES = 64


@dataclass
class _Variable:
    container: str | None
    shared_name: str
    buffer: bytearray | None = None
    default: int = 0  # the byte a reset fills the buffer with


class ResourceVariables:
    """The variables of one interpreter, by id (the order VAR_HANDLE operators first name them)."""

    def __init__(self) -> None:
        self._variables: list[_Variable] = []

    def __len__(self) -> int:
        return len(self._variables)

    @property
    def nbytes(self) -> int:
        """Bytes of state held (what a device keeps in RAM between invokes)."""
        return sum(len(v.buffer) for v in self._variables if v.buffer is not None)

    def id_for(self, container: str | None, shared_name: str | None, where: str) -> int:
        """The id of the variable a VAR_HANDLE names, created on first use.

        As in TFLite Micro, a handle without a container matches a variable of that shared name
        in any container."""
        if shared_name is None:
            raise ModelError(f"{where}: VAR_HANDLE without a shared_name names no variable")
        for i, v in enumerate(self._variables):
            if (container is None or container == v.container) and shared_name == v.shared_name:
                return i
        if len(self._variables) >= MAX_VARIABLES:
            raise ModelError(f"{where}: more than {MAX_VARIABLES} resource variables")
        self._variables.append(_Variable(container, shared_name))
        return len(self._variables) - 1

    def allocate(self, var_id: int, nbytes: int, zero_point: int | None, where: str) -> None:
        """Give the variable its buffer the first time an ASSIGN_VARIABLE is prepared."""
        v = self._variables[var_id]
        if v.buffer is None:
            # TFLite Micro memsets with the zero point cast to int8: its low byte.
            v.default = 0 if zero_point is None else int(zero_point) & 0xFF
            v.buffer = bytearray([v.default]) * nbytes
        elif len(v.buffer) != nbytes:
            raise ModelError(
                f"{where}: writes {nbytes} bytes into variable {v.shared_name!r}, which holds {len(v.buffer)}"
            )

    def check_read(self, var_id: int, nbytes: int, where: str) -> None:
        v = self._variables[var_id]
        if v.buffer is None:
            raise ModelError(f"{where}: reads variable {v.shared_name!r}, which no ASSIGN_VARIABLE writes")
        if len(v.buffer) != nbytes:
            raise ModelError(
                f"{where}: reads {nbytes} bytes from variable {v.shared_name!r}, which holds {len(v.buffer)}"
            )

    def view(self, var_id: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """The variable's bytes as an array (live: later writes show through)."""
        buffer = self._variables[var_id].buffer
        assert buffer is not None  # checked when the reading operator was prepared
        return np.frombuffer(buffer, dtype=dtype).reshape(shape)

    def assign(self, var_id: int, value: np.ndarray) -> None:
        buffer = self._variables[var_id].buffer
        assert buffer is not None and len(buffer) == value.nbytes  # checked at prepare
        buffer[:] = np.ascontiguousarray(value).tobytes()

    def reset(self) -> None:
        """Every variable back to its default byte (TFLite Micro's `ResetAll`)."""
        for v in self._variables:
            if v.buffer is not None:
                v.buffer[:] = bytes([v.default]) * len(v.buffer)


class ReadVariable:
    """READ_VARIABLE bound to its variable: returns the state to copy into the output tensor."""

    def __init__(self, store: ResourceVariables, var_id: int, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self._store, self._id, self._dtype, self._shape = store, var_id, dtype, shape
        self._view: np.ndarray | None = None  # the buffer may be allocated by a later operator

    def eval(self, _prepared: object, _inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        if self._view is None:
            self._view = self._store.view(self._id, self._dtype, self._shape)
        return [self._view]


class AssignVariable:
    """ASSIGN_VARIABLE bound to its variable: copies its value input into the state."""

    def __init__(self, store: ResourceVariables, var_id: int) -> None:
        self._store = store
        self._id = var_id

    def eval(self, _prepared: object, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        value = inputs[1]
        assert value is not None
        self._store.assign(self._id, value)
        return []
