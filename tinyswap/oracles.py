"""The real TFLite runtimes, used as oracles: TFLite Micro (golden) and LiteRT.

LiteRT comes from `ai_edge_litert`, else `tflite_runtime` (still what NumPy 1 users have),
else `tensorflow.lite`. TFLite Micro comes from the `tflite_micro` wheel. Both are
dependencies of the package; they are imported here, lazily, so that the runtime itself never
needs them, and a missing one raises `OracleUnavailable`, never a silent skip.
"""

from __future__ import annotations

import enum
from typing import Any, Sequence

import numpy as np

from tinyswap.errors import TinySwapError


class OracleUnavailable(TinySwapError):
    """The requested runtime is not installed."""


class LiteRTResolver(str, enum.Enum):
    """LiteRT op resolvers: XNNPACK default, plain builtin (ruy), and the reference kernels."""

    DEFAULT = "BUILTIN"
    WITHOUT_DEFAULT_DELEGATES = "BUILTIN_WITHOUT_DEFAULT_DELEGATES"
    REF = "BUILTIN_REF"


def _litert_module() -> Any:
    try:
        from ai_edge_litert import interpreter as module  # type: ignore[import-not-found]

        return module
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as module  # type: ignore[import-not-found]

        return module
    except ImportError:
        pass
    try:
        import tensorflow as tf  # type: ignore[import-not-found]

        return tf.lite
    except ImportError:
        raise OracleUnavailable(
            "LiteRT is not installed: pip install ai-edge-litert (or tflite-runtime, or tensorflow)"
        ) from None


def litert_interpreter(model: bytes | bytearray, resolver: LiteRTResolver = LiteRTResolver.REF) -> Any:
    """An allocated LiteRT interpreter over `model` (the bytes are not copied by LiteRT)."""
    module = _litert_module()
    resolver_type = getattr(module.OpResolverType, resolver.value)
    interp = module.Interpreter(model_content=bytes(model), experimental_op_resolver_type=resolver_type)
    interp.allocate_tensors()
    return interp


def run_litert(
    model: bytes | bytearray, inputs: Sequence[np.ndarray], resolver: LiteRTResolver = LiteRTResolver.REF
) -> list[np.ndarray]:
    interp = litert_interpreter(model, resolver)
    details = interp.get_input_details()
    resized = False
    for d, x in zip(details, inputs):
        if tuple(d["shape"]) != tuple(np.shape(x)):
            interp.resize_tensor_input(d["index"], list(np.shape(x)))
            resized = True
    if resized:
        interp.allocate_tensors()
    for d, x in zip(details, inputs):
        interp.set_tensor(d["index"], np.asarray(x, dtype=d["dtype"]))
    interp.invoke()
    return [interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()]


def tflm_interpreter(model: bytes | bytearray, arena_size: int | None = None) -> Any:
    """A TFLite Micro interpreter (the golden) over `model`."""
    try:
        from tflite_micro import runtime  # type: ignore[import-not-found]
    except ImportError:
        raise OracleUnavailable("TFLite Micro is not installed: pip install tflite-micro") from None
    if arena_size is None:
        # The wheel's default (10 x the model size) is too small for tiny models with large
        # activations; an arena that is too small fails allocation, it never changes results.
        arena_size = max(10 * len(model), 8 << 20)
    return runtime.Interpreter.from_bytes(bytes(model), arena_size=arena_size)


def run_tflm(model: bytes | bytearray, inputs: Sequence[np.ndarray], interpreter: Any = None) -> list[np.ndarray]:
    """Run one inference in TFLite Micro. TFLM cannot resize: inputs must match the file's shapes."""
    interp = interpreter if interpreter is not None else tflm_interpreter(model)
    for i, x in enumerate(inputs):
        interp.set_input(np.ascontiguousarray(x), i)
    interp.invoke()
    from tinyswap.reader import read_model

    n_outputs = len(read_model(bytes(model)).main.outputs)
    return [np.array(interp.get_output(i), copy=True) for i in range(n_outputs)]


def tflm_arena(model: bytes | bytearray) -> dict[str, int]:
    """TFLite Micro's own arena accounting for `model` (its RecordingMicroAllocator): `head`
    (the planned non-persistent tensors, what our planner plans), `tail` (persistent runtime
    structures) and `total`. The wheel prints it from C++, so stdout is captured at the file
    descriptor."""
    import os
    import re
    import sys
    import tempfile

    import ctypes

    interp = tflm_interpreter(model)
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as tmp:
        for fd in saved:
            os.dup2(tmp.fileno(), fd)
        try:
            interp.print_allocations()
            libc.fflush(None)  # the report sits in C stdio's buffer until flushed
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
        tmp.seek(0)
        text = tmp.read().decode("utf-8", "replace")
    found = {k: int(v) for k, v in re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", text)}
    if set(found) != {"total", "head", "tail"}:
        raise OracleUnavailable(f"tflite_micro printed no arena report: {text[:200]!r}")
    return found
