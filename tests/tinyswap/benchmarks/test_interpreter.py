"""`tinyswap bench --interpreter`: tinyswap vs TFLite Micro vs LiteRT, interleaved."""

from __future__ import annotations

import json
import math

import pytest

from tinyswap.benchmarks.errors import BenchmarkError
from tinyswap.benchmarks.interpreter import Row, run
from tinyswap.errors import TinySwapError

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
    assert list(saved["rows"][0]) == ["model", "workload", "runtime", "median_ms", "ratio_vs_tflm", "note"]
    assert (tmp_path / "bench_interpreter.md").read_text() == report.text + "\n"
    assert report.text.startswith(f"Measured {report.date} on {report.machine}.")


def test_a_missing_model_directory_is_a_typed_refusal(tmp_path) -> None:
    with pytest.raises(BenchmarkError, match="does not exist") as info:
        run(tmp_path / "nowhere", tmp_path / "out", repeats=1)
    assert isinstance(info.value, TinySwapError)
    assert not (tmp_path / "out").exists()
