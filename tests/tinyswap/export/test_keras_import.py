"""Keras -> ModelSpec: the float reference reproduces Keras' own outputs.

Needs TensorFlow (the `training` extra); CI does not install it, so this module is skipped
there and run by hand with TensorFlow present (see the README's full-run notes).
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tinyswap.export.float_model import forward  # noqa: E402
from tinyswap.export.keras_import import spec_from_keras  # noqa: E402


def test_functional_model_round_trip() -> None:
    L = tf.keras.layers
    tf.keras.utils.set_random_seed(0)
    x = tf.keras.Input((12, 12, 2), batch_size=1)
    h = L.Conv2D(6, 3, strides=2, padding="same", activation="relu")(x)
    h = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu6")(h)
    r = L.Conv2D(12, 1)(h)
    h = L.ReLU()(L.Add()([h, r]))
    h = L.MaxPooling2D(2)(h)
    h = L.GlobalAveragePooling2D()(h)
    y = L.Softmax()(L.Dense(4)(h))
    model = tf.keras.Model(x, y)
    spec = spec_from_keras(model)
    data = np.random.default_rng(0).standard_normal((5, 12, 12, 2)).astype(np.float32)
    ours = forward(spec, data)[spec.output]
    np.testing.assert_allclose(ours, model(data).numpy(), rtol=1e-4, atol=1e-5)
