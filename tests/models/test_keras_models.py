"""Models made by the real TensorFlow converter (models/keras/) against TFLite Micro and LiteRT.

Bit for bit for the int8 models, on 64 random inputs each (TFLM row by row, ours batched);
float models within float rounding (libm vs NumPy exp in SOFTMAX).
"""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap import Interpreter
from tinyswap.oracles import LiteRTResolver, run_litert, run_tflm, tflm_interpreter

from tests.conftest import KERAS_MODELS

INT8_MODELS = sorted(p.stem for p in KERAS_MODELS.glob("*.tflite") if not p.stem.startswith("float_"))
FLOAT_MODELS = sorted(p.stem for p in KERAS_MODELS.glob("*.tflite") if p.stem.startswith("float_"))
ROWS = 64


def test_the_conformance_set_is_there() -> None:
    assert len(INT8_MODELS) >= 8 and FLOAT_MODELS


def rows_for(interp: Interpreter, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for d in interp.get_input_details():
        shape = (n, *[int(s) for s in d["shape"][1:]])
        if np.dtype(d["dtype"]) == np.int8:
            out.append(rng.integers(-128, 128, size=shape, dtype=np.int8))
        else:
            out.append(rng.standard_normal(shape).astype(np.float32))
    return out


@pytest.mark.parametrize("name", INT8_MODELS)
def test_int8_bit_exact_with_tflite_micro(name: str) -> None:
    raw = (KERAS_MODELS / f"{name}.tflite").read_bytes()
    ours = Interpreter(model_content=raw)
    inputs = rows_for(ours, ROWS, seed=len(name))
    got = ours.run(*inputs)
    golden = tflm_interpreter(raw)
    expected = [run_tflm(raw, [x[r : r + 1] for x in inputs], interpreter=golden) for r in range(ROWS)]
    for k, g in enumerate(got):
        e = np.concatenate([row[k] for row in expected])
        mismatches = int(np.sum(g.reshape(e.shape) != e))
        assert mismatches == 0, f"{name} output {k}: {mismatches} of {e.size} values differ from TFLM"
        assert len(np.unique(e)) > 1, "degenerate outputs prove nothing"


@pytest.mark.parametrize("name", INT8_MODELS)
def test_int8_litert_profile_matches_litert_reference(name: str) -> None:
    raw = (KERAS_MODELS / f"{name}.tflite").read_bytes()
    ours = Interpreter(model_content=raw, profile="litert")
    inputs = rows_for(ours, 16, seed=7)
    got = ours.run(*inputs)
    for r in range(16):
        theirs = run_litert(raw, [x[r : r + 1] for x in inputs], LiteRTResolver.REF)
        for g, t in zip(got, theirs):
            np.testing.assert_array_equal(g[r : r + 1].reshape(t.shape), t)


@pytest.mark.parametrize("name", FLOAT_MODELS)
def test_float_models_close_to_tflite_micro(name: str) -> None:
    raw = (KERAS_MODELS / f"{name}.tflite").read_bytes()
    ours = Interpreter(model_content=raw)
    inputs = rows_for(ours, 16, seed=1)
    got = ours.run(*inputs)[0]
    expected = np.concatenate([run_tflm(raw, [x[r : r + 1] for x in inputs])[0] for r in range(16)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_dynamic_batch_flatten_runs_batched() -> None:
    raw = (KERAS_MODELS / "flatten_dynamic_batch.tflite").read_bytes()
    ours = Interpreter(model_content=raw)
    x = rows_for(ours, 9, seed=2)[0]
    batched = ours.run(x)[0]
    single = np.concatenate([Interpreter(model_content=raw).run(x[r : r + 1])[0] for r in range(9)])
    np.testing.assert_array_equal(batched, single)
