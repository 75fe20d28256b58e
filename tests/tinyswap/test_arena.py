"""The TFLite Micro arena (`tinyswap.arena`): what the `tflite_micro` wheel really allocates.

For the TFLM example models, a few converter-made models and the digits bundles: the wheel
allocates and invokes the model in the recommended figure, fails 16 bytes under the smallest
arena measured, and the recommendation is within 25% of that smallest arena. The estimate used
without the wheel covers every one of them, and says it is an estimate.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import pytest

from tinyswap import Interpreter, arena
from tinyswap.arena import (
    ArenaFigure,
    estimate_tflm_arena,
    measure_tflm_arena,
    recommended_bytes,
    tflm_arena_figure,
)
from tinyswap.oracles import OracleUnavailable

from tests.conftest import KERAS_MODELS, TFLM_MODELS

MODELS = [
    "tflm/hello_world_int8", "tflm/micro_speech_quantized", "tflm/person_detect",
    "keras/conv_stack", "keras/depthwise", "keras/dense_mlp", "keras/merge_ops",
    "digits/mlp", "digits/cnn",
]


@lru_cache(maxsize=None)
def model_bytes(name: str) -> bytes:
    kind, stem = name.split("/")
    if kind == "tflm":
        return (TFLM_MODELS / f"{stem}.tflite").read_bytes()
    if kind == "keras":
        return (KERAS_MODELS / f"{stem}.tflite").read_bytes()
    from tinyswap.commands.digits import compile_digits

    return compile_digits(stem).data


def _tflm(data: bytes, size: int):
    from tflite_micro import runtime

    return runtime.Interpreter.from_bytes(data, arena_size=size)


def _invoke(interp, n_inputs: int) -> None:
    for i in range(n_inputs):
        d = interp.get_input_details(i)
        interp.set_input(np.zeros([int(s) for s in d["shape"]], dtype=d["dtype"]), i)
    interp.invoke()


@pytest.mark.parametrize("name", MODELS)
def test_the_recommended_arena_works_and_is_within_25_percent_of_the_smallest(name: str) -> None:
    data = model_bytes(name)
    fig = tflm_arena_figure(data)
    assert fig.measured and fig.wheel_version and "measured with tflite_micro" in fig.method
    assert "64-bit" in fig.method  # the host build: an upper bound for a 32-bit MCU
    assert fig.smallest_bytes is not None
    assert fig.tflm_bytes % 16 == 0 and fig.smallest_bytes % 16 == 0
    assert fig.smallest_bytes <= fig.tflm_bytes <= 1.25 * fig.smallest_bytes
    assert fig.tflm_bytes == recommended_bytes(fig.smallest_bytes)
    n_inputs = len(Interpreter(model_content=data).get_input_details())
    _invoke(_tflm(data, fig.tflm_bytes), n_inputs)
    _invoke(_tflm(data, fig.smallest_bytes), n_inputs)
    # 16 bytes less fails AllocateTensors (a clean error: the wheel only crashes when the arena
    # cannot hold its own allocator, a few hundred bytes).
    assert fig.smallest_bytes - 16 >= 1024
    with pytest.raises(RuntimeError):
        _tflm(data, fig.smallest_bytes - 16)


@pytest.mark.parametrize("name", MODELS)
def test_the_plan_is_only_the_activations_and_the_estimate_covers_the_measurement(name: str) -> None:
    data = model_bytes(name)
    fig = tflm_arena_figure(data)
    interp = Interpreter(model_content=data)
    interp.allocate_tensors()
    assert fig.plan_bytes == interp.arena_bytes < fig.smallest_bytes
    est = estimate_tflm_arena(data)
    assert not est.measured and est.smallest_bytes is None and est.wheel_version is None
    assert est.method.startswith("ESTIMATE without tflite_micro")
    assert est.plan_bytes == fig.plan_bytes
    assert 1.1 * fig.smallest_bytes <= est.tflm_bytes <= 1.5 * fig.smallest_bytes


def test_without_the_wheel_the_figure_is_the_labelled_estimate(monkeypatch) -> None:
    data = model_bytes("tflm/hello_world_int8")
    monkeypatch.setattr(arena, "wheel_version", lambda: None)
    fig = tflm_arena_figure(data)
    assert fig == estimate_tflm_arena(data) and not fig.measured
    assert fig.to_json()["measured"] is False and fig.to_json()["tflm_smallest_bytes"] is None
    assert fig.tflm_bytes > fig.plan_bytes  # never silently the activation plan
    with pytest.raises(OracleUnavailable):
        measure_tflm_arena(data)
    assert tflm_arena_figure(data, measure=False) == fig


def test_sizes_that_crash_the_wheel_count_as_too_small() -> None:
    """Under a few hundred bytes the wheel segfaults instead of raising: the search runs in a
    child process, restarted above the size that killed it, and finds the same arena."""
    data = model_bytes("tflm/hello_world_int8")
    _, crashed_at, _ = arena._run_child(data, {"granule": 16, "floor": 0, "hint": 256, "max_tries": 4, "inputs": 1,
                                               "fraction": 0.05, "margin_max": 1024})
    assert crashed_at == 256  # the child died trying 256 bytes and said so first
    again = measure_tflm_arena(data, hint=256)  # crashes at 256, restarts at 512
    assert again.smallest_bytes == tflm_arena_figure(data).smallest_bytes


def test_the_margin_and_the_record() -> None:
    assert recommended_bytes(1936) == 1936 + 112  # 5% = 96.8, rounded up to 16 bytes
    assert recommended_bytes(85264) == 85264 + 1024  # 5% would be 4263: capped at 1 KiB
    assert recommended_bytes(1000) == 1008 + 64  # 16-byte multiples: 1000 -> 1008, 50 -> 64
    fig = tflm_arena_figure(model_bytes("tflm/hello_world_int8"))
    assert isinstance(fig, ArenaFigure)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fig.tflm_bytes = 1  # type: ignore[misc]
    assert set(fig.to_json()) == {"tflm_bytes", "tflm_smallest_bytes", "measured", "method", "tinyswap_plan_bytes"}
