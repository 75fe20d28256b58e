"""Shared by the oracle tests: run a model in tinyswap and in the real runtimes, compare bytes."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tinyswap import Interpreter
from tinyswap.oracles import LiteRTResolver, run_litert, run_tflm


def _ours(model: bytes, inputs: Sequence[np.ndarray], profile: str) -> list[np.ndarray]:
    """Our outputs, checked to be the same both ways the interpreter can hold a model: as
    immutable `bytes` (kernels convert constant weights and fold biases once, at bind) and as a
    `bytearray` (constants read in place on every invoke, as slots need)."""
    frozen = Interpreter(model_content=bytes(model), profile=profile).run(*inputs)
    live = Interpreter(model_content=bytearray(model), profile=profile).run(*inputs)
    for i, (a, b) in enumerate(zip(frozen, live)):
        diff = int(np.sum(a != b))
        assert diff == 0, f"output {i}: {diff} of {a.size} values differ between constant and live weights"
    return frozen


def assert_matches_tflm(model: bytes, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Our `tflm` profile equals the tflite_micro wheel bit for bit; returns our outputs."""
    ours = _ours(model, inputs, "tflm")
    golden = run_tflm(model, inputs)
    assert len(ours) == len(golden)
    for i, (a, b) in enumerate(zip(ours, golden)):
        assert a.dtype == b.dtype, f"output {i}: dtype {a.dtype} vs TFLM {b.dtype}"
        assert a.shape == b.shape, f"output {i}: shape {a.shape} vs TFLM {b.shape}"
        diff = int(np.sum(a != b))
        assert diff == 0, f"output {i}: {diff} of {a.size} values differ from TFLite Micro"
    return ours


def assert_matches_litert_ref(model: bytes, inputs: Sequence[np.ndarray]) -> None:
    """Our `litert` profile equals LiteRT's BUILTIN_REF resolver bit for bit."""
    ours = _ours(model, inputs, "litert")
    theirs = run_litert(model, inputs, LiteRTResolver.REF)
    assert len(ours) == len(theirs), f"{len(ours)} outputs vs LiteRT's {len(theirs)}"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a.dtype == b.dtype, f"output {i}: dtype {a.dtype} vs LiteRT {b.dtype}"
        assert a.shape == b.shape, f"output {i}: shape {a.shape} vs LiteRT {b.shape}"
        diff = int(np.sum(a != b))
        assert diff == 0, f"output {i}: {diff} of {a.size} values differ from LiteRT BUILTIN_REF"


def random_int8(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    return rng.integers(-128, 128, size=tuple(shape), dtype=np.int8)
