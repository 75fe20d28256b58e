"""`tinyswap bench --interpreter`: tinyswap vs TFLite Micro vs LiteRT, interleaved."""

from __future__ import annotations

import json
import math

import pytest

from tinyswap.benchmarks.errors import BenchmarkError
from tinyswap.benchmarks.interpreter import BUSY, IDLE, Row, model_cases, run, spinning_core, standard_models
from tinyswap.errors import TinySwapError
from tinyswap.resources import models_dir

from tests.conftest import TFLM_MODELS


def test_every_runtime_runs_both_workloads_and_the_files_are_written(tmp_path) -> None:
    seen: list[str] = []
    report = run(TFLM_MODELS, tmp_path, repeats=2, progress=seen.append, models=("hello_world_int8",))
    assert len(seen) == 2  # batch 1 and 64 inferences
    runtimes = {r.runtime for r in report.rows}
    assert {"tinyswap", "tflite_micro"} <= runtimes and {"litert-default", "litert-ref"} & runtimes
    for r in report.rows:
        assert isinstance(r, Row) and r.model == "hello_world_int8"
        if r.runtime == "tflite_micro":
            assert r.ratio_vs_tflm == 1.0
        if r.ratio_vs_tflm is not None:
            assert r.median_ms > 0 and math.isfinite(r.median_ms)
    saved = json.loads((tmp_path / "bench_interpreter.json").read_text())
    assert list(saved) == ["date", "machine", "rows"] and len(saved["rows"]) == len(report.rows)
    assert list(saved["rows"][0]) == ["model", "workload", "runtime", "median_ms", "ratio_vs_tflm", "note",
                                      "operators", "us_per_operator", "condition", "first_ms",
                                      "first_ratio_vs_tflm"]
    for r in report.rows:  # both medians, each with its ratio (TFLM's own: 1)
        if r.ratio_vs_tflm is not None:
            assert r.first_ms > 0 and math.isfinite(r.first_ms)
            assert r.first_ratio_vs_tflm == pytest.approx(1.0 if r.runtime == "tflite_micro" else
                                                          r.first_ms / next(t.first_ms for t in report.rows
                                                                            if t.runtime == "tflite_micro"
                                                                            and t.workload == r.workload))
    ours = [r for r in report.rows if r.runtime == "tinyswap"]
    # hello_world has 3 operators; microseconds per operator only on the batch-1 row.
    assert [r.operators for r in ours] == [3, 3] and {r.condition for r in report.rows} == {IDLE}
    assert ours[0].us_per_operator == pytest.approx(ours[0].median_ms * 1e3 / 3) and ours[1].us_per_operator is None
    assert (tmp_path / "bench_interpreter.md").read_text() == report.text + "\n"
    assert report.text.startswith(f"Measured {report.date} on {report.machine}.")


def test_a_directory_without_models_is_a_typed_refusal(tmp_path) -> None:
    from tinyswap.errors import InputFileError

    with pytest.raises(InputFileError, match="holds no .tflite model"):
        run(tmp_path, tmp_path / "out", repeats=1)
    assert not (tmp_path / "out").exists()


def test_a_missing_model_directory_is_a_typed_refusal(tmp_path) -> None:
    with pytest.raises(BenchmarkError, match="does not exist") as info:
        run(tmp_path / "nowhere", tmp_path / "out", repeats=1)
    assert isinstance(info.value, TinySwapError)
    assert not (tmp_path / "out").exists()


def test_the_standard_set_covers_every_model_family_the_issue_names() -> None:
    labels = [c.label for c in standard_models(models_dir())]
    assert labels[:3] == ["tflm/hello_world_int8", "tflm/micro_speech_quantized", "tflm/person_detect"]
    assert {"converted/ds_cnn", "converted/mobilenet", "converted/resnet", "converted/autoencoder",
            "streaming/kws_stream", "keras/depthwise", "keras/dense_mlp"} <= set(labels)
    assert not any(label.startswith("keras/float_") for label in labels)  # int8 only
    assert all(c.path.is_file() for c in standard_models(models_dir()))
    # A folder without tflm/ means every model in it; explicit stems win.
    assert [f"tflm/{c.label}" for c in model_cases(TFLM_MODELS, None)] == labels[:3]
    assert [c.label for c in model_cases(TFLM_MODELS, ("person_detect",))] == ["person_detect"]


def test_a_stateful_model_runs_frame_by_frame_and_busy_rows_are_reported_separately(tmp_path) -> None:
    report = run(models_dir() / "streaming", tmp_path, repeats=1, progress=lambda _: None,
                 models=("kws_stream",), busy=True)
    ours = [r for r in report.rows if r.runtime == "tinyswap"]
    assert [r.condition for r in ours] == [IDLE, IDLE, BUSY, BUSY]
    assert ours[1].note == "64 frames, one invoke each (stateful)" and ours[0].note == ""
    assert "64 inferences, 1 core busy" in report.text


def test_the_spinner_really_occupies_a_core_and_stops() -> None:
    import multiprocessing
    import os
    import time

    with spinning_core():
        (child,) = multiprocessing.active_children()
        status = open(f"/proc/{child.pid}/status").read()
        pinned = next(line for line in status.splitlines() if line.startswith("Cpus_allowed_list"))
        before = float(open(f"/proc/{child.pid}/stat").read().split()[13])  # user-mode clock ticks
        time.sleep(0.5)
        after = float(open(f"/proc/{child.pid}/stat").read().split()[13])
    # Pinned to one core, and running: it gains CPU time (any amount: a loaded machine shares it).
    assert pinned.split(":")[1].strip() == str(min(os.sched_getaffinity(0)))
    assert after > before
    assert multiprocessing.active_children() == []
