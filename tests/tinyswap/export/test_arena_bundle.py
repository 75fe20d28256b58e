"""Bundles carry the TFLite Micro arena beside our activation plan, each labelled: the manifest's
`arena` object, model_data.h's TINYSWAP_ARENA_BYTES (the same figure) and `tinyswap inspect`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tinyswap.arena import tflm_arena_figure
from tinyswap.cli import main
from tinyswap.commands.digits import compile_digits

from tests.conftest import TFLM_MODELS


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def digits_bundle(request, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("digits") / request.param
    compile_digits(request.param, bundle_dir=out)
    return out


def test_manifest_and_header_give_the_tflm_arena_beside_the_plan(digits_bundle: Path) -> None:
    manifest = json.loads((digits_bundle / "manifest.json").read_text())
    assert "arena_bytes" not in manifest  # the old unlabelled figure was the activation plan
    arena = manifest["arena"]
    figure = tflm_arena_figure((digits_bundle / "model.tflite").read_bytes())
    assert arena == figure.to_json()
    assert arena["measured"] and "64-bit host" in arena["method"] and "upper bound for 32-bit" in arena["method"]
    assert arena["tinyswap_plan_bytes"] < arena["tflm_smallest_bytes"] <= arena["tflm_bytes"]
    assert arena["tflm_bytes"] <= 1.25 * arena["tflm_smallest_bytes"]
    header = (digits_bundle / "model_data.h").read_text()
    defines = re.findall(r"#define TINYSWAP_ARENA_BYTES (\d+)u", header)
    assert defines == [str(arena["tflm_bytes"])]
    assert arena["method"] in header  # the comment above the define says how it was measured
    assert f"activation plan alone is {arena['tinyswap_plan_bytes']} B" in header


def test_inspect_prints_both_figures(digits_bundle: Path, capsys) -> None:
    arena = json.loads((digits_bundle / "manifest.json").read_text())["arena"]
    assert main(["inspect", str(digits_bundle)]) == 0
    text = capsys.readouterr().out
    assert f"TFLite Micro {arena['tflm_bytes']} B (kArenaSize, smallest {arena['tflm_smallest_bytes']} B" in text
    assert f"tinyswap activation plan {arena['tinyswap_plan_bytes']} B" in text
    assert main(["inspect", "--json", str(digits_bundle)]) == 0
    assert json.loads(capsys.readouterr().out)["arena"] == arena


def test_inspect_of_a_plain_model(capsys) -> None:
    model = TFLM_MODELS / "hello_world_int8.tflite"
    figure = tflm_arena_figure(model.read_bytes())
    assert main(["inspect", str(model)]) == 0
    text = capsys.readouterr().out
    assert f"TFLite Micro {figure.tflm_bytes} B" in text and f"activation plan {figure.plan_bytes} B" in text


def test_without_the_wheel_the_header_says_estimated(digits_bundle: Path, monkeypatch) -> None:
    from tinyswap import arena
    from tinyswap.export.bundle import c_sources
    from tinyswap.slotmap import SlotMap

    monkeypatch.setattr(arena, "wheel_version", lambda: None)
    model = (digits_bundle / "model.tflite").read_bytes()
    header, _ = c_sources(model, SlotMap.from_json(json.loads((digits_bundle / "slotmap.json").read_text())))
    estimate = arena.estimate_tflm_arena(model)
    assert "(kArenaSize), ESTIMATED:" in header and f"// {estimate.method}." in header
    assert f"#define TINYSWAP_ARENA_BYTES {estimate.tflm_bytes}u" in header
