"""`tinyswap bench --swap`: switch, hot swap and cold swap, written as before (PEFT's side is
replaced here by its "not installed" path, so the test needs no torch)."""

from __future__ import annotations

import json

from tinyswap.benchmarks import swap


def test_three_operations_are_timed_and_the_files_keep_their_format(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(swap, "_peft_setup", lambda tmp: (None, "peft not measured here"))
    report = swap.run(tmp_path, repeats=4)  # one round: each operation's block of BLOCK calls
    assert [r.operation[:3] for r in report.rows] == ["(a)", "(b)", "(c)"]
    assert all(r.tinyswap_us > 0 and r.peft_us is None and r.speedup is None and r.met is None for r in report.rows)
    assert set(report.median_us) == {"a", "b", "c"} and report.slot_bytes > 0 and report.repeats == swap.BLOCK
    saved = json.loads((tmp_path / "bench_swap.json").read_text())
    assert list(saved) == ["date", "machine", "python", "repeats", "peft", "median_us", "slot_bytes", "rows"]
    assert [list(r) for r in saved["rows"]] == [["operation", "tinyswap_us", "peft_us", "speedup", "target", "met",
                                                 "tinyswap_p10_us", "tinyswap_p90_us", "speedup_p10", "speedup_p90",
                                                 "like_peft_call", "like_peft_us", "like_speedup"]] * 3
    assert [r.target for r in report.rows] == [100.0, 30.0, 3.0]
    assert all(r.tinyswap_p10_us <= r.tinyswap_us <= r.tinyswap_p90_us for r in report.rows)
    assert saved["peft"] == "peft not measured here"
    assert (tmp_path / "bench_swap.md").read_text() == report.text + "\n"
    assert report.text.startswith(f"Swap benchmark ({swap.BLOCK} interleaved repeats in blocks of {swap.BLOCK}") and "| - | - |" in report.text
    a, b, c = report.rows  # a gate flip writes no slot, (b) and (c) each write and verify one
    assert a.tinyswap_us < min(b.tinyswap_us, c.tinyswap_us)

