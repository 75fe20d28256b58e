"""The committed digits models and adapters (models/digits/) hold their accuracy targets (models/digits/README.md).

Runs models/digits/evaluate.py on the committed files only (no training, no scikit-learn):
compiles both bundles, packs and signs every adapter, loads it through a SwapManager, and
measures INT8 accuracy through our interpreter on the whole test split; TFLite Micro runs
the first 30 rows of every domain (base and adapted) and must agree bit for bit.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tests.conftest import REPO

DIGITS = REPO / "models" / "digits"
TFLM_ROWS = 30


def _load_evaluate():
    spec = importlib.util.spec_from_file_location("digits_evaluate", DIGITS / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results() -> dict:
    return _load_evaluate().evaluate(tflm_rows=TFLM_ROWS)


def adapters(results: dict) -> list[tuple[str, dict]]:
    return [(model, a) for model, m in results["models"].items() for a in m["adapters"]]


def test_the_committed_set_is_complete(results: dict) -> None:
    assert set(results["models"]) == {"mlp", "cnn"}
    for model, m in results["models"].items():
        kinds = [a["kind"] for a in m["adapters"]]
        assert len(kinds) >= 4 and "lora" in kinds and "bottleneck" in kinds, (model, kinds)
        plan = m["plan"]
        assert plan["num_slots"] >= 2 and plan["alignment"] == 4096
        assert all(s % 4096 == 0 for s in m["slot_bytes"])
    committed = [p for p in DIGITS.rglob("*") if p.suffix in (".npz", ".npy")]
    assert sum(p.stat().st_size for p in committed) < 500_000


def test_base_int8_matches_float_and_the_slot_free_model(results: dict) -> None:
    for model, m in results["models"].items():
        off = m["int8_gates_off"]["ours"]
        assert abs(off - m["float"]) <= 0.01, (model, off, m["float"])
        assert off == m["int8_slot_free"], (model, off, m["int8_slot_free"])


def test_each_adapter_fits_its_slot(results: dict) -> None:
    for model, a in adapters(results):
        assert all(a["rank"][layer] <= a["slot_rank"][layer] for layer in a["rank"]), (model, a["name"])
        assert a["delta_error_max"] <= 0.05 and a["clipped_max"] == 0.0, (model, a["name"], a["pack_report"])


def test_each_adapter_raises_int8_accuracy_by_ten_points(results: dict) -> None:
    for model, a in adapters(results):
        base, adapted = a["int8_base"]["ours"], a["int8_adapted"]["ours"]
        assert adapted - base >= 0.10, (model, a["name"], base, adapted)
        assert abs(adapted - a["float_adapted"]) <= 0.01, (model, a["name"], adapted, a["float_adapted"])


def test_tinyswap_equals_tflite_micro_bit_for_bit(results: dict) -> None:
    runs = [(model, "gates off", m["int8_gates_off"]) for model, m in results["models"].items()]
    runs += [(model, f"{a['name']} {which}", a[f"int8_{which}"]) for model, a in adapters(results)
             for which in ("base", "adapted")]
    for model, label, run in runs:
        assert run["tflm_rows"] == TFLM_ROWS and run["tflm_equal"] is True, (model, label)


def test_recorded_accuracy_is_what_the_float_model_gives(results: dict) -> None:
    for model, a in adapters(results):
        config = json.loads((DIGITS / a["path"] / "adapter.json").read_text())
        assert config["accuracy"] == pytest.approx(a["float_adapted"], abs=0.002), (model, a["name"])
