"""The everyday Keras networks of `make_models.py`, written as a user writes them.

Plain Keras 3 (`import keras`), so they build on any backend: TensorFlow where the models are
trained and converted, PyTorch where the tests rebuild them untrained (random BatchNorm
statistics) without TensorFlow.
"""

from __future__ import annotations

import keras

L = keras.layers


def kws_model() -> keras.Model:
    """A keyword-spotting model as a user first writes it (8 frames of 8 features here)."""
    return keras.Sequential([
        keras.Input((8, 8)),
        L.Conv1D(16, 3, padding="same"),
        L.BatchNormalization(),
        L.ReLU(),
        L.MaxPooling1D(2),
        L.Dropout(0.2),
        L.Conv1D(24, 3, activation="relu", name="conv2"),
        L.GlobalAveragePooling1D(),
        L.Dense(10, activation="softmax", name="classifier"),
    ], name="kws")


def cnn_model() -> keras.Model:
    """A functional CNN: Rescaling, ZeroPadding2D, SeparableConv2D, BN, depthwise, merges, pooling."""
    x = keras.Input((8, 8, 1))
    h = L.Rescaling(1 / 16)(x)
    h = L.ZeroPadding2D(1)(h)
    h = L.SeparableConv2D(12, 3, activation="hard_silu", name="sep")(h)
    h = L.BatchNormalization()(h)
    a = L.Conv2D(12, 3, padding="same", use_bias=False, name="conv_a")(h)
    a = L.BatchNormalization()(a)
    a = L.Activation("relu6")(a)
    b = L.DepthwiseConv2D(3, padding="same")(h)
    b = L.LeakyReLU(0.1)(b)
    s = L.Add()([a, b])
    g = L.Multiply()([s, L.Activation("sigmoid")(L.Subtract()([a, b]))])
    h = L.Concatenate()([s, g])
    h = L.MaxPooling2D(2)(h)
    h = L.Concatenate()([L.GlobalMaxPooling2D()(h), L.GlobalAveragePooling2D()(h)])
    y = L.Dense(10, activation="softmax", name="head")(h)
    return keras.Model(x, y, name="cnn")


def dense_model(features: int, classes: int, name: str) -> keras.Model:
    """A tabular classifier: Normalization, tanh, BN, LeakyReLU, noise and dropout, softmax."""
    return keras.Sequential([
        keras.Input((features,)),
        L.Normalization(name="norm"),
        L.Dense(24, activation="tanh", name="fc1"),
        L.GaussianNoise(0.05),
        L.Dense(16, name="fc2"),
        L.BatchNormalization(),
        L.LeakyReLU(),
        L.Dropout(0.1),
        L.Dense(classes, name="out"),
        L.Softmax(),
    ], name=name)


def lora_model() -> keras.Model:
    """A small CNN whose `conv` and `fc` layers take LoRA (`enable_lora`)."""
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(8, 3, name="conv"),
        L.BatchNormalization(),
        L.ReLU(),
        L.Flatten(),
        L.Dense(16, activation="relu", name="fc"),
        L.Dense(10, name="out"),
    ])
