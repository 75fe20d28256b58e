"""Train four everyday microcontroller architectures on real data and convert them to int8 with
the TensorFlow Lite converter: the `.tflite` files slot injection (`tinyswap.export.inject`) is
tested on.

Data: scikit-learn's bundled 8x8 digits (1,797 images, 10 classes, BSD-3-Clause; the data is
UCI's "Optical Recognition of Handwritten Digits"), the only real image set scikit-learn ships,
so nothing is downloaded. Split `train_test_split(test_size=0.3, stratify=labels,
random_state=0)`, the split models/digits uses. The shifted domain is those images mirrored
left-right (what the adapters in the tests are trained for).

Models (inputs are the raw pixels 0..16, batch 1; each scales its own input, so the converter's
lowering of Keras `Rescaling` / `Normalization` is in the graph):

- ds_cnn: keyword-spotting DS-CNN (Zhang et al., "Hello Edge") with the 8x8 image as its 2-D
  feature map upsampled to 16x16 (`Resizing`, nearest neighbour): Rescaling, a strided Conv2D + BN + ReLU,
  two depthwise-separable blocks (DepthwiseConv2D + BN + ReLU, 1x1 Conv2D + BN + ReLU), global
  average pooling, Dense softmax.
- mobilenet: a MobileNet-v1-style stack: Normalization (adapted on the training pixels), Conv2D
  + ReLU6, three depthwise-separable blocks with ReLU6 (one strided), global average pooling,
  Dropout, Dense softmax.
- resnet: a ResNet-style CNN: Rescaling, Conv2D, two residual blocks (the second strided with a
  1x1 projection shortcut), BN, Add, ReLU, global average pooling, Dense softmax.
- autoencoder: a dense autoencoder 64-32-12-32-64 (Rescaling, ReLU, sigmoid reconstruction of
  the scaled pixels). It has no classes: its quality is the reconstruction mean squared error.

Regenerate (needs the `training` extra: tensorflow-cpu, scikit-learn):

    python models/converted/make_models.py      # writes models/converted/*.tflite, digits.npz, MODELS.json

Seeded, but training and the converter's output can change between TensorFlow versions; the
versions used are recorded in MODELS.json.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

HERE = Path(__file__).resolve().parent
L = tf.keras.layers
EPOCHS = 40


def ds_cnn() -> tf.keras.Model:
    x = tf.keras.Input((8, 8, 1), batch_size=1, name="pixels")
    h = L.Rescaling(1.0 / 16.0)(x)
    h = L.Resizing(16, 16, interpolation="nearest", name="upsample")(h)
    h = L.Conv2D(16, (3, 3), strides=2, padding="same", use_bias=False, name="conv1")(h)
    h = L.ReLU()(L.BatchNormalization()(h))
    for i in (1, 2):
        h = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{i}")(h)
        h = L.ReLU()(L.BatchNormalization()(h))
        h = L.Conv2D(16, 1, use_bias=False, name=f"pw{i}")(h)
        h = L.ReLU()(L.BatchNormalization()(h))
    h = L.GlobalAveragePooling2D()(h)
    return tf.keras.Model(x, L.Dense(10, activation="softmax", name="fc")(h), name="ds_cnn")


def mobilenet(pixels: np.ndarray) -> tf.keras.Model:
    norm = L.Normalization(axis=None, name="normalize")
    norm.adapt(pixels)
    x = tf.keras.Input((8, 8, 1), batch_size=1, name="pixels")
    h = norm(x)
    h = L.Conv2D(8, 3, padding="same", activation="relu6", name="conv1")(h)
    for i, (width, stride) in enumerate(((16, 1), (24, 2), (32, 1)), start=1):
        h = L.DepthwiseConv2D(3, strides=stride, padding="same", activation="relu6", name=f"dw{i}")(h)
        h = L.Conv2D(width, 1, activation="relu6", name=f"pw{i}")(h)
    h = L.GlobalAveragePooling2D()(h)
    h = L.Dropout(0.2)(h)
    return tf.keras.Model(x, L.Dense(10, activation="softmax", name="fc")(h), name="mobilenet")


def resnet() -> tf.keras.Model:
    x = tf.keras.Input((8, 8, 1), batch_size=1, name="pixels")
    h = L.Rescaling(1.0 / 16.0)(x)
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same", name="stem")(h)))
    for i, (width, stride) in enumerate(((16, 1), (32, 2)), start=1):
        y = L.Conv2D(width, 3, strides=stride, padding="same", name=f"block{i}_conv1")(h)
        y = L.ReLU()(L.BatchNormalization()(y))
        y = L.BatchNormalization()(L.Conv2D(width, 3, padding="same", name=f"block{i}_conv2")(y))
        shortcut = h if stride == 1 else L.Conv2D(width, 1, strides=stride, name=f"block{i}_proj")(h)
        h = L.ReLU()(L.Add()([y, shortcut]))
    h = L.GlobalAveragePooling2D()(h)
    return tf.keras.Model(x, L.Dense(10, activation="softmax", name="fc")(h), name="resnet")


def autoencoder() -> tf.keras.Model:
    x = tf.keras.Input((64,), batch_size=1, name="pixels")
    h = L.Rescaling(1.0 / 16.0)(x)
    h = L.Dense(32, activation="relu", name="enc1")(h)
    h = L.Dense(12, activation="relu", name="code")(h)
    h = L.Dense(32, activation="relu", name="dec1")(h)
    return tf.keras.Model(x, L.Dense(64, activation="sigmoid", name="recon")(h), name="autoencoder")


def convert(model: tf.keras.Model, calibration: np.ndarray) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([row[None]] for row in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def main() -> None:
    tf.keras.utils.set_random_seed(0)
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.images.astype(np.uint8), digits.target.astype(np.uint8), test_size=0.3,
        stratify=digits.target, random_state=0)
    np.savez_compressed(HERE / "digits.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    train = x_train.astype(np.float32)[..., None]
    test = x_test.astype(np.float32)[..., None]
    record: dict[str, object] = {"tensorflow": tf.__version__, "scikit-learn": sklearn.__version__,
                                 "epochs": EPOCHS, "models": {}}
    builders = {"ds_cnn": ds_cnn, "mobilenet": lambda: mobilenet(train), "resnet": resnet,
                "autoencoder": autoencoder}
    for name, make in builders.items():
        tf.keras.utils.set_random_seed(0)
        model = make()
        if name == "autoencoder":
            flat_train, flat_test = train.reshape(-1, 64), test.reshape(-1, 64)
            model.compile(optimizer=tf.keras.optimizers.Adam(3e-3), loss="mse")
            model.fit(flat_train, flat_train / 16.0, epochs=EPOCHS * 2, batch_size=32, verbose=0)
            quality = {"float_test_mse": float(model.evaluate(flat_test, flat_test / 16.0, verbose=0))}
            calibration = flat_train[:200]
        else:
            model.compile(optimizer=tf.keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"])
            model.fit(train, y_train, epochs=EPOCHS, batch_size=32, verbose=0)
            quality = {"float_test_accuracy": float(model.evaluate(test, y_test, verbose=0)[1])}
            calibration = train[:200]
        data = convert(model, calibration)
        (HERE / f"{name}.tflite").write_bytes(data)
        record["models"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), **quality}  # type: ignore[index]
        print(name, len(data), quality, flush=True)
    (HERE / "MODELS.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
