"""Shared by the Ethos-U tests: the two models they hold to the acceptance points (the digits CNN
and the examples depthwise CNN), compiled once per process and stitched once per configuration
(Vela runs are cached by `tinyswap.export.npu.vela` too)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import numpy as np

from tinyswap.export.bundle import slot_map
from tinyswap.export.compiler import Compiled, compile_model
from tinyswap.export.slot_plan import SlotPlan
from tinyswap.export.spec import load_spec

from tests.conftest import REPO

#: name -> (spec, plan) paths: the digits CNN and a MobileNet-style depthwise CNN of our examples.
MODELS = {"digits-cnn": REPO / "models" / "digits" / "cnn", "examples-cnn": REPO / "models" / "examples" / "cnn"}


@lru_cache(maxsize=None)
def source(name: str, alignment: int | None = None) -> Compiled:
    stem = MODELS[name]
    raw = json.loads(stem.with_suffix(".plan.json").read_text())
    if alignment is not None:
        raw["alignment"] = alignment
    spec = load_spec(stem.with_suffix(".json"))
    return compile_model(spec, SlotPlan.from_json(raw), np.load(stem.with_suffix(".calibration.npy")))


@lru_cache(maxsize=None)
def base_only(name: str) -> Compiled:
    """The same model compiled without slots: the base alone."""
    stem = MODELS[name]
    return compile_model(load_spec(stem.with_suffix(".json")), None, np.load(stem.with_suffix(".calibration.npy")))


@lru_cache(maxsize=None)
def npu_bundle(name: str, config: str = "ethos-u55-128", alignment: int | None = None):  # -> NpuBundle
    from tinyswap.export.npu.bundle import build_npu_bundle

    return build_npu_bundle(source(name, alignment), config)


def smap_of(compiled: Compiled) -> dict[str, Any]:
    return slot_map(compiled).to_json()
