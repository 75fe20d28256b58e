"""Conformance on real converter-made models: TFLite Micro's example models, byte for byte.

Expected outputs come from the `tflite_micro` wheel itself on the same inputs (the golden);
our interpreter runs all rows in one batched call, TFLM row by row (it cannot batch).
"""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap import Interpreter
from tinyswap.oracles import LiteRTResolver, run_litert, run_tflm, tflm_interpreter

from tests.conftest import TFLM_MODELS

CASES = {"hello_world_int8": 256, "micro_speech_quantized": 200, "person_detect": 20}


def random_rows(interp: Interpreter, n: int, seed: int) -> np.ndarray:
    d = interp.get_input_details()[0]
    shape = (n, *[int(s) for s in d["shape"][1:]])
    return np.random.default_rng(seed).integers(-128, 128, size=shape, dtype=np.int8)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bit_exact_with_tflite_micro(name: str) -> None:
    raw = (TFLM_MODELS / f"{name}.tflite").read_bytes()
    ours = Interpreter(model_content=raw)
    ours.allocate_tensors()
    x = random_rows(ours, CASES[name], seed=len(name))
    if name == "hello_world_int8":
        x = np.arange(-128, 128, dtype=np.int8).reshape(256, 1)  # every possible input
    got = ours.run(x)[0]
    golden = tflm_interpreter(raw)
    expected = np.concatenate([run_tflm(raw, [row[None]], interpreter=golden)[0] for row in x])
    assert got.shape == expected.shape
    mismatches = int(np.sum(got != expected))
    assert mismatches == 0, f"{mismatches} of {expected.size} outputs differ from TFLite Micro"
    # The outputs are not degenerate: the inputs exercise more than one output value.
    assert len(np.unique(expected)) > 1


@pytest.mark.parametrize("name", ["hello_world_int8", "micro_speech_quantized"])
def test_litert_profile_matches_litert_reference_kernels(name: str) -> None:
    # LiteRT refuses person_detect (its bias quantization), which TFLM accepts.
    raw = (TFLM_MODELS / f"{name}.tflite").read_bytes()
    ours = Interpreter(model_content=raw, profile="litert")
    ours.allocate_tensors()
    x = random_rows(ours, 50, seed=3)
    got = ours.run(x)[0]
    expected = np.concatenate([run_litert(raw, [row[None]], LiteRTResolver.REF)[0] for row in x])
    np.testing.assert_array_equal(got, expected)
