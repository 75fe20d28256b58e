"""Reader fuzzing: mutated and truncated example models give a ModelError or a valid run.

Nothing else may escape (no IndexError, struct.error, MemoryError, crash), and no case may
take over a second. CI runs a bounded, seeded sample; the documented full run
(`TINYSWAP_FULL=1`) runs 20,400 cases (3,400 per model).
"""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest

from tinyswap.errors import KernelError, TinySwapError
from tinyswap.interpreter import Interpreter

from tests.conftest import FULL, REPO, TFLM_MODELS

# The TFLite Micro examples, and the converter's stateful streaming models (two subgraphs,
# resource variables).
MODEL_FILES = {name: TFLM_MODELS / f"{name}.tflite" for name in ["hello_world_int8", "micro_speech_quantized",
                                                                 "person_detect"]}
MODEL_FILES.update({name: REPO / "models" / "streaming" / f"{name}.tflite" for name in ["kws_stream", "rnn_stream"]})
# A compiled model whose slot branches sit behind IF operators (one subgraph per branch, a
# pass-through else subgraph): the control flow our own compiler writes.
CONDITIONAL = "examples_cnn_conditional"
MODELS = [*MODEL_FILES, CONDITIONAL]
CASES_PER_MODEL = 3400 if FULL else 120
INTERESTING_U32 = [0, 1, 2, 3, 4, 8, 16, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


def mutate(raw: bytes, rng: np.random.Generator) -> bytes:
    """One of: byte flips, an interesting 32-bit value at an aligned offset, truncation,
    a deleted or duplicated chunk. Offsets are biased toward the flatbuffer's metadata
    (the front and back of the file), where structure rather than weights lives."""
    data = bytearray(raw)
    kind = rng.integers(0, 6)
    n = len(data)

    def position() -> int:
        if rng.random() < 0.5:
            return int(rng.integers(0, min(n, 512)))
        if rng.random() < 0.5:
            return int(rng.integers(max(0, n - 2048), n))
        return int(rng.integers(0, n))

    if kind == 0:
        for _ in range(int(rng.integers(1, 9))):
            data[position()] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:
        pos = position() & ~3
        value = INTERESTING_U32[int(rng.integers(0, len(INTERESTING_U32)))]
        if rng.random() < 0.3:
            value = int(rng.integers(0, 2**32))
        if pos + 4 <= n:
            struct.pack_into("<I", data, pos, value)
    elif kind == 2:
        data = data[: int(rng.integers(0, n))]
    elif kind == 3:
        start = position()
        del data[start : start + int(rng.integers(1, 64))]
    elif kind == 4:
        start = position()
        chunk = data[start : start + int(rng.integers(1, 64))]
        data[start:start] = chunk
    else:
        pos = position()
        data[pos] = int(rng.integers(0, 256))
        if rng.random() < 0.5:
            data[position()] = int(rng.integers(0, 256))
    return bytes(data)


def run_case(data: bytes, rng: np.random.Generator) -> str:
    """'error' for a ModelError-family refusal, 'ran' for a valid run. Anything else raises."""
    try:
        interp = Interpreter(model_content=data, max_arena_bytes=8 << 20)
        interp.allocate_tensors()
        inputs = []
        for d in interp.get_input_details():
            dtype = np.dtype(d["dtype"])
            shape = tuple(int(s) for s in d["shape"])
            if dtype.kind in "iu":
                info = np.iinfo(dtype)
                inputs.append(rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype))
            else:
                inputs.append(rng.standard_normal(shape).astype(dtype))
        for d, x in zip(interp.get_input_details(), inputs):
            interp.set_tensor(d["index"], x)
        interp.invoke()
        if interp.variable_bytes:
            interp.invoke()  # a stateful model reads what the first invoke stored
        for d in interp.get_output_details():
            interp.get_tensor(d["index"])
        return "ran"
    except KernelError:
        raise  # a kernel crashed on something prepare accepted: a bug, not a refusal
    except TinySwapError:
        return "error"


def _model_bytes(name: str) -> bytes:
    if name == CONDITIONAL:
        from tests.adapter_cases import example_bundle

        return example_bundle("cnn", branches="conditional").compiled.data
    return MODEL_FILES[name].read_bytes()


def _fuzz(name: str, cases: int) -> dict[str, int]:
    raw = _model_bytes(name)
    rng = np.random.default_rng(sum(map(ord, name)))
    counts = {"error": 0, "ran": 0}
    slowest = 0.0
    for i in range(cases):
        mutated = mutate(raw, rng)
        start = time.perf_counter()
        try:
            outcome = run_case(mutated, rng)
        except Exception as exc:  # noqa: BLE001 - the point is to catch anything that escapes
            path = f"/tmp/tinyswap-fuzz-{name}-{i}.tflite"
            with open(path, "wb") as f:
                f.write(mutated)
            raise AssertionError(f"case {i} of {name}: {type(exc).__name__}: {exc} (saved {path})") from exc
        elapsed = time.perf_counter() - start
        slowest = max(slowest, elapsed)
        assert elapsed < 1.0, f"case {i} of {name} took {elapsed:.2f} s"
        counts[outcome] += 1
    print(f"{name}: {cases} cases, {counts['error']} refused with ModelError-family errors, "
          f"{counts['ran']} ran, slowest {slowest * 1e3:.0f} ms")
    return counts


@pytest.mark.parametrize("name", MODELS)
def test_mutated_models_fail_only_with_typed_errors(name: str) -> None:
    counts = _fuzz(name, CASES_PER_MODEL)
    assert counts["error"] + counts["ran"] == CASES_PER_MODEL
    assert counts["error"] > 0  # the mutator does reach the parser's checks
