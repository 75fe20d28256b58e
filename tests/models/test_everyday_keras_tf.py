"""The parts of the Keras import checks that need TensorFlow itself (the `training` extra); CI
does not install it, so this module is skipped there. Everything it does not cover runs in CI
from the committed models (`tests/tinyswap/export/test_keras_import.py`).

1. The committed converter models are what the TensorFlow converter makes: converting the
   committed `.keras` file again, as `models/everyday/make_models.py` does, gives a model whose
   outputs under TFLite Micro equal the committed file's on every held-out row (one model per
   network here, all of them in the slow run).
2. The everyday-Keras journey from code: the keyword-spotting model as first written, built and
   trained with TensorFlow, exports from the model object in one call and agrees with Keras.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tinyswap.export.front_door import export_model  # noqa: E402
from tinyswap.export.slot_plan import SlotPlan, SlotTarget  # noqa: E402

from tests import everyday_models as everyday  # noqa: E402
from tests.conftest import FULL  # noqa: E402
from tests.export_cases import gates_off_outputs  # noqa: E402

ALL = [(name, fold.name) for name in everyday.TARGETS for fold in everyday.data_set(name)[2]]
SAMPLE = [(name, model) for name, model in ALL if model in ("kws", "cnn", "iris_fold0")]


def reconverted(name: str, model_name: str) -> None:
    x, _, folds = everyday.data_set(name)
    fold = next(f for f in folds if f.name == model_name)
    model = tf.keras.models.load_model(fold.keras, compile=False)
    fresh = everyday.MAKE.convert(model, everyday.calibration(x, fold))
    rows = x[fold.test]
    np.testing.assert_array_equal(everyday.converter_outputs(fresh, rows), everyday.converter_outputs(fold.converter.read_bytes(), rows))


@pytest.mark.parametrize("name, model_name", SAMPLE)
def test_the_committed_converter_models_are_what_the_converter_makes(name: str, model_name: str) -> None:
    reconverted(name, model_name)


@pytest.mark.slow
@pytest.mark.parametrize("name, model_name", ALL if FULL else [m for m in ALL if m not in SAMPLE][:2])
def test_the_committed_converter_models_are_what_the_converter_makes_full(name: str, model_name: str) -> None:
    reconverted(name, model_name)


def test_everyday_keras_journey_from_code() -> None:
    """Built in code as first written (Conv1D, BatchNormalization, Dropout, a softmax Dense),
    trained a few epochs, exported from the model object with no rewriting."""
    x, y, (fold,) = everyday.data_set("kws")
    tf.keras.utils.set_random_seed(0)
    model = everyday.load_script("networks").kws_model()
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x[fold.train], y[fold.train], epochs=20, batch_size=64, verbose=0)
    plan = SlotPlan(targets=(SlotTarget("conv2", max_rank=4), SlotTarget("classifier", max_rank=4)))
    built = export_model(model, plan, calibration=everyday.calibration(x, fold))
    rows = x[fold.test][:200]
    reference = model(rows).numpy()
    assert float(np.mean(reference.argmax(1) == y[fold.test][:200])) >= 0.85
    assert float(np.mean(gates_off_outputs(built, rows).argmax(1) == reference.argmax(1))) >= 0.95
