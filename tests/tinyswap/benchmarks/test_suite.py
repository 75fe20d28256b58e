"""`tinyswap bench`: the command line reaches each benchmark lazily, with the same arguments as
before, and the all-in-one table assembles every part into bench.md and bench.json."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from tinyswap.benchmarks import compiler, interpreter, slot_overhead, suite, swap
from tinyswap.benchmarks.interpreter import InterpreterReport, Row
from tinyswap.benchmarks.swap import SwapReport, SwapRow
from tinyswap.cli import main
from tinyswap.resources import models_dir

from tests.conftest import TFLM_MODELS


def _interpreter_report() -> InterpreterReport:
    return InterpreterReport("2026-01-01", "test machine", [
        Row("hello_world_int8", "batch 1 (latency)", "tinyswap", 0.5, 0.25),
        Row("hello_world_int8", "batch 1 (latency)", "tflite_micro", 2.0, 1.0),
        Row("hello_world_int8", "batch 1 (latency)", "litert-ref", float("nan"), None, "refused by LiteRT: x")])


def _swap_report() -> SwapReport:
    return SwapReport("2026-01-01", "test machine", "3.11", 20, "peft 0, torch 0", {"a": 1.0, "b": 10.0, "c": 100.0},
                      4096, [SwapRow("(a) switch", 1.0, 500.0, 500.0, 100.0, True),
                             SwapRow("(b) hot swap", 10.0, 500.0, 50.0, 20.0, True),
                             SwapRow("(c) cold swap", 100.0, None, None, 1.0, None)])


def test_each_flag_reaches_its_benchmark_with_the_same_arguments_as_before(tmp_path, monkeypatch, capsys) -> None:
    calls: list[tuple] = []
    monkeypatch.setattr(suite, "run", lambda out, tflm, repeats: calls.append(("all", out, tflm, repeats))
                        or suite.SuiteReport("ALL TABLE", 1.0))
    monkeypatch.setattr(interpreter, "run", lambda models, out, repeats:
                        calls.append(("interpreter", models, out, repeats)) or _interpreter_report())
    monkeypatch.setattr(swap, "run", lambda out, repeats: calls.append(("swap", out, repeats)) or _swap_report())
    monkeypatch.setattr(compiler, "run", lambda out, repeats: calls.append(("compiler", out, repeats))
                        or compiler.CompilerReport([]))
    out = tmp_path / "b"
    assert main(["bench", "--out", str(out)]) == 0
    assert calls[-1] == ("all", out, models_dir() / "tflm", 20)  # no --models: the shipped TFLM examples
    assert "ALL TABLE" in capsys.readouterr().out
    assert main(["bench", "--interpreter", "--models", str(tmp_path), "--repeats", "3", "--out", str(out)]) == 0
    assert calls[-1] == ("interpreter", tmp_path, out, 3)
    assert "Measured 2026-01-01 on test machine." in capsys.readouterr().out
    assert main(["bench", "--swap", "--repeats", "3", "--out", str(out)]) == 0
    assert calls[-1] == ("swap", out, 30)
    assert main(["bench", "--swap", "--repeats", "1", "--out", str(out)]) == 0
    assert calls[-1] == ("swap", out, 20)
    assert main(["bench", "--compiler", "--repeats", "30", "--out", str(out)]) == 0
    assert calls[-1] == ("compiler", out, 3)
    assert main(["bench", "--compiler", "--repeats", "5", "--out", str(out)]) == 0
    assert calls[-1] == ("compiler", out, 1)


def test_the_command_line_imports_no_benchmark_until_bench_runs() -> None:
    code = ("import sys, tinyswap.cli\n"
            "print(sorted(m for m in sys.modules if m.startswith(('tinyswap.benchmarks', 'tinyswap.export'))))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_suite_assembles_every_part_into_one_table(tmp_path, monkeypatch) -> None:
    tflm = tmp_path / "tflm"
    tflm.mkdir()
    shutil.copy(TFLM_MODELS / "hello_world_int8.tflite", tflm)
    monkeypatch.setattr(interpreter, "run", lambda models, out, repeats, progress: _interpreter_report())
    monkeypatch.setattr(swap, "run", lambda out, repeats: _swap_report())
    monkeypatch.setattr(slot_overhead, "run", lambda out, repeats, progress: slot_overhead.SlotOverheadReport(
        "2026-01-01", "test machine", [slot_overhead.SlotOverheadRow("m", "conditional", 1, 110, 0.1, 1.0, 2.0, 64)]))
    seen: list[str] = []
    report = suite.run(tmp_path / "out", tflm, repeats=2, progress=seen.append)
    assert [line[:5] for line in seen] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]", "slot "]
    text = (tmp_path / "out" / "bench.md").read_text()
    assert text == report.text
    for heading in ("## Summary", "## Interpreter", "## Swapping vs PEFT", "## Simulated swap per storage",
                    "## Arena"):
        assert heading in text
    assert ("| interpreter | hello_world_int8, batch 1 (latency) | 0.500 ms | tflite_micro 2.000 ms | "
            "4.00x faster |") in text
    assert ("| swap | (a) switch | 1.0 us | PEFT hotswap_adapter 500.0 us | 500.0x faster, target >= 100x |"
            in text)
    assert "(c) cold swap | 100.0 us | PEFT" not in text  # no PEFT figure, no summary row
    saved = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert list(saved) == ["date", "machine", "seconds", "interpreter", "swap", "simulated_swap", "arena",
                           "slot_overhead"]
    assert "| slot overhead | m, 1 of 2 slots active (rank 8, IF-gated) | 110 MACs | slot-free model | +10.0% MACs |" in text
    assert [r["device"] for r in saved["simulated_swap"]] == ["mcu-qspi", "mcu-qspi", "mcu-ram", "gateway"]
    arena = {r["model"]: r for r in saved["arena"]}
    assert {"hello_world_int8", "digits/cnn (with slots)", "digits/mlp (with slots)"} <= set(arena)
    assert list(arena["hello_world_int8"]) == ["model", "tinyswap_arena", "tflm_head", "tflm_tail", "tflm_total",
                                               "ratio", "tflm_smallest"]
    # The recorder's total understates what AllocateTensors needs: hello_world's smallest working
    # arena is above it (the measured figure is what TINYSWAP_ARENA_BYTES is built from).
    hello = arena["hello_world_int8"]
    assert hello["tflm_smallest"] is not None and hello["tflm_smallest"] > hello["tflm_total"]
    assert saved["swap"]["rows"][0]["operation"] == "(a) switch" and saved["interpreter"]["machine"] == "test machine"
    summary = [line for line in text.splitlines() if line.startswith("| simulated swap |")]
    assert len(summary) == 2  # the two XIP configurations have a flash floor; RAM ones do not
    # Each names its idle step, the erases left on the request path (none) and the ratio without the step.
    assert all(", 0 erases |" in line and "(without the idle step" in line for line in summary)
