"""The committed everyday Keras models (`models/everyday/`): their data, folds and files.

Keras is imported on the PyTorch backend where TensorFlow is not installed (CI), so the
`.keras` files load and the networks build without TensorFlow; where TensorFlow is installed
Keras keeps its default backend.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from tests.conftest import REPO

if importlib.util.find_spec("tensorflow") is None:
    os.environ.setdefault("KERAS_BACKEND", "torch")

EVERYDAY = REPO / "models" / "everyday"
#: Data set -> the layers the tests put LoRA slots on.
TARGETS = {"kws": ("conv2", "classifier"), "cnn": ("conv_a", "head"), "wine": ("fc1", "out"),
           "cancer": ("fc1", "fc2"), "iris": ("fc1", "out")}


def load_script(name: str) -> ModuleType:
    """`models/everyday/<name>.py` as a module (`networks`, `make_models`)."""
    spec = importlib.util.spec_from_file_location(f"everyday_{name}", EVERYDAY / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE = load_script("make_models")


@dataclass(frozen=True)
class Fold:
    """One trained model of a data set: its files and which rows it was trained and held out on."""

    name: str
    keras: Path
    converter: Path
    train: np.ndarray  # bool mask over the data set's rows
    test: np.ndarray


def data_set(name: str) -> tuple[np.ndarray, np.ndarray, list[Fold]]:
    """(x float32 rows as the models take them, labels, the set's folds)."""
    with np.load(EVERYDAY / "data.npz") as npz:
        x, y, fold = npz[f"{name}/x"], npz[f"{name}/y"], npz[f"{name}/fold"]
    folds = []
    for k in MAKE.folds(fold):
        model = MAKE.model_name(name, fold, k)
        folds.append(Fold(model, EVERYDAY / f"{model}.keras", EVERYDAY / f"{model}.converter.tflite",
                          fold != k, fold == k))
    return x, y, folds


#: The converter's int8 model run by TFLite Micro, one row at a time (`make_models.tflm_outputs`).
converter_outputs = MAKE.tflm_outputs


def calibration(x: np.ndarray, fold: Fold) -> np.ndarray:
    """The rows both our export and the converter were calibrated on."""
    return x[fold.train][:MAKE.CALIBRATION_ROWS]
