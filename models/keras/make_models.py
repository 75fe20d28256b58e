"""Build small Keras models and convert them with the real TensorFlow Lite converter.

These files are the conformance set for the reference interpreter: whatever graph the
converter emits for common Keras layers (the glue ops of Flatten, Conv1D, dilated Conv2D,
GlobalAveragePooling2D ...) must run bit-exact against TFLite Micro. The generated `.tflite`
files are committed so that CI needs no TensorFlow.

Regenerate (needs the `training` extra, i.e. tensorflow-cpu):

    python models/keras/make_models.py            # writes models/keras/*.tflite and MODELS.md

Everything is seeded, but the converter's output can change between TensorFlow versions; the
version used is recorded in MODELS.md.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = Path(__file__).resolve().parent
L = tf.keras.layers


def dense_mlp() -> tf.keras.Model:
    x = tf.keras.Input((20,), batch_size=1)
    h = L.Dense(32, activation="relu")(x)
    h = L.Dense(16)(h)
    h = L.ReLU(max_value=6.0)(h)
    y = L.Dense(5)(h)
    return tf.keras.Model(x, L.Softmax()(y))


def conv_stack() -> tf.keras.Model:
    """Conv2D with strides and both paddings, max and average pooling, Flatten (fixed batch)."""
    x = tf.keras.Input((16, 16, 3), batch_size=1)
    h = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    h = L.Conv2D(8, 3, padding="valid", activation="relu")(h)
    h = L.MaxPooling2D(2)(h)
    h = L.Conv2D(12, 1, activation="relu6")(h)
    h = L.AveragePooling2D(pool_size=(2, 1), strides=(1, 1), padding="same")(h)
    h = L.Flatten()(h)
    return tf.keras.Model(x, L.Dense(4, activation="softmax")(h))


def flatten_dynamic_batch() -> tf.keras.Model:
    """Flatten with an unknown batch size: the converter emits SHAPE/STRIDED_SLICE/PACK."""
    x = tf.keras.Input((6, 6, 2))
    h = L.Conv2D(4, 3, activation="relu")(x)
    h = L.Flatten()(h)
    return tf.keras.Model(x, L.Dense(3)(h))


def dilated_conv() -> tf.keras.Model:
    """Dilated Conv2D (SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND around a CONV_2D, or a dilated
    CONV_2D, whichever this converter chooses). VALID padding and sizes divisible by the rate,
    so that no SPACE_TO_BATCH_ND padding is needed (TFLM pads with uninitialised memory)."""
    x = tf.keras.Input((12, 12, 2), batch_size=1)
    h = L.Conv2D(6, 3, dilation_rate=2, padding="valid", activation="relu")(x)
    h = L.Conv2D(6, 3, dilation_rate=(2, 1), padding="valid")(h)
    return tf.keras.Model(x, L.GlobalAveragePooling2D()(h))


def depthwise() -> tf.keras.Model:
    x = tf.keras.Input((10, 10, 4), batch_size=1)
    h = L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same", activation="relu")(x)
    h = L.DepthwiseConv2D(3, depth_multiplier=1, padding="valid")(h)
    h = L.ReLU()(h)
    h = L.GlobalAveragePooling2D()(h)
    return tf.keras.Model(x, L.Dense(3, activation="softmax")(h))


def conv1d() -> tf.keras.Model:
    """Conv1D: EXPAND_DIMS + CONV_2D + RESHAPE/SQUEEZE in TFLite."""
    x = tf.keras.Input((32, 3), batch_size=1)
    h = L.Conv1D(8, 5, strides=2, padding="same", activation="relu")(x)
    h = L.Conv1D(8, 3, padding="valid")(h)
    h = L.GlobalAveragePooling1D()(h)
    return tf.keras.Model(x, L.Dense(4)(h))


def merge_ops() -> tf.keras.Model:
    """Add, Subtract, Multiply and Concatenate of two branches."""
    x = tf.keras.Input((24,), batch_size=1)
    a = L.Dense(16, activation="relu")(x)
    b = L.Dense(16)(x)
    s = L.Add()([a, b])
    d = L.Subtract()([a, b])
    m = L.Multiply()([s, d])
    c = L.Concatenate()([s, m])
    return tf.keras.Model(x, L.Dense(6, activation="softmax")(c))


def residual_conv() -> tf.keras.Model:
    x = tf.keras.Input((8, 8, 4), batch_size=1)
    h = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    h = L.Conv2D(4, 3, padding="same")(h)
    h = L.ReLU()(L.Add()([x, h]))
    c = L.Concatenate()([h, L.Conv2D(2, 1)(x)])
    return tf.keras.Model(x, L.Dense(3)(L.Flatten()(c)))


def float_mlp() -> tf.keras.Model:
    x = tf.keras.Input((12,), batch_size=1)
    a = L.Dense(10, activation="relu")(x)
    b = L.Dense(10, activation="relu6")(x)
    h = L.Multiply()([L.Add()([a, b]), b])
    return tf.keras.Model(x, L.Dense(4, activation="softmax")(h))


INT8_MODELS: dict[str, Callable[[], tf.keras.Model]] = {
    "dense_mlp": dense_mlp,
    "conv_stack": conv_stack,
    "flatten_dynamic_batch": flatten_dynamic_batch,
    "dilated_conv": dilated_conv,
    "depthwise": depthwise,
    "conv1d": conv1d,
    "merge_ops": merge_ops,
    "residual_conv": residual_conv,
}
FLOAT_MODELS: dict[str, Callable[[], tf.keras.Model]] = {"float_mlp": float_mlp}


def representative(model: tf.keras.Model, seed: int) -> Callable:
    shape = [1, *model.input_shape[1:]]
    rng = np.random.default_rng(seed)

    def gen():
        for _ in range(100):
            yield [rng.normal(0.0, 1.0, size=shape).astype(np.float32)]

    return gen


def convert(model: tf.keras.Model, int8: bool, seed: int) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative(model, seed)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def op_names(data: bytes) -> list[str]:
    interp = tf.lite.Interpreter(model_content=data)
    return sorted({d["op_name"] for d in interp._get_ops_details()})


def main() -> None:
    rows = []
    all_ops: set[str] = set()
    for seed, (name, build) in enumerate({**INT8_MODELS, **FLOAT_MODELS}.items()):
        tf.keras.utils.set_random_seed(1000 + seed)
        model = build()
        data = convert(model, name in INT8_MODELS, seed)
        (HERE / f"{name}.tflite").write_bytes(data)
        ops = op_names(data)
        all_ops.update(ops)
        layers = sorted({type(layer).__name__ for layer in model.layers} - {"InputLayer"})
        rows.append((name, ", ".join(layers), ", ".join(ops), len(data), hashlib.sha256(data).hexdigest()[:16]))
        print(f"{name}: {len(data)} bytes, ops {ops}")
    lines = [
        "# Models made by the real TensorFlow Lite converter",
        "",
        f"Generated by `python models/keras/make_models.py` with TensorFlow {tf.__version__}",
        "(full-integer int8: int8 inputs and outputs, 100 seeded N(0, 1) representative samples;",
        "`float_*` are unquantized float32). Seeded Keras initialisation; the weights are random, the",
        "graphs are what the converter emits for these layers.",
        "",
        "| model | Keras layers | TFLite ops | bytes | sha256 (first 16) |",
        "|---|---|---|---:|---|",
        *[f"| {n} | {layers} | {ops} | {size} | `{digest}` |" for n, layers, ops, size, digest in rows],
        "",
        f"All ops over the set: {', '.join(sorted(all_ops))}.",
        "",
    ]
    (HERE / "MODELS.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
