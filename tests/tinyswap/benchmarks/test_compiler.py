"""`tinyswap bench --compiler`: compile time and the flash cost of slots, written as before."""

from __future__ import annotations

import json

from tinyswap.benchmarks.compiler import CompilerRow, mlp_of, run

OLD_KEYS = ["weights", "slots", "alignment", "compile_s", "bundle_bytes", "base_bytes", "slot_bytes",
            "slot_payload_bytes", "slot_overhead", "flash_ratio"]


def test_one_size_gives_six_rows_and_the_same_files_as_before(tmp_path) -> None:
    seen: list[str] = []
    report = run(tmp_path, repeats=1, progress=seen.append, weight_bytes=(10_000,))
    assert len(report.rows) == len(seen) == 6
    assert {(r.slots, r.alignment) for r in report.rows} == {(s, a) for s in (2, 4, 8) for a in (16, 4096)}
    for r in report.rows:
        assert isinstance(r, CompilerRow)
        assert r.slot_overhead >= 1.0 and r.flash_ratio > 1.0 and r.bundle_bytes > r.base_bytes
        if r.alignment == 4096:
            assert r.slot_bytes % 4096 == 0
    rows = json.loads((tmp_path / "bench_compiler.json").read_text())
    assert [list(r) for r in rows] == [OLD_KEYS] * 6
    assert (tmp_path / "bench_compiler.md").read_text() == report.text + "\n"
    assert report.text.splitlines()[0].startswith("| int8 weights | S | alignment | compile s |")
    assert len(report.text.splitlines()) == 2 + 6


def test_more_slots_cost_more_flash(tmp_path) -> None:
    report = run(tmp_path, repeats=1, progress=lambda _: None, weight_bytes=(10_000,))
    by = {(r.slots, r.alignment): r for r in report.rows}
    for alignment in (16, 4096):
        assert by[(2, alignment)].bundle_bytes < by[(4, alignment)].bundle_bytes < by[(8, alignment)].bundle_bytes


def test_the_model_has_about_the_asked_number_of_weights() -> None:
    spec, cal = mlp_of(100_000)
    weights = sum(w.size for k, w in spec.weights.items() if k.endswith("kernel"))
    assert 90_000 < weights < 110_000 and cal.shape[1] == spec.input_shape[1]
