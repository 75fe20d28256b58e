"""Stateful streaming models made by the real TensorFlow Lite converter, trained on real data.

A streaming model sees one frame per invoke and keeps what it needs of the past in a
`tf.Variable`; the converter (`experimental_enable_resource_variables`) turns the variable into
TFLite resource variables: VAR_HANDLE / READ_VARIABLE / ASSIGN_VARIABLE in the main subgraph,
and a CALL_ONCE that runs a second subgraph to initialise them on the first invoke.

Data: scikit-learn's bundled 8x8 handwritten digits (real data; BSD-3-Clause, from the UCI ML
repository), streamed row by row: frame t is row t of the image (8 values, pixels / 16), so
after the 8th frame the model has seen the whole digit, as a keyword spotter has heard the
whole word. Split: `train_test_split(test_size=0.3, stratify=labels, random_state=0)`, the
split of `models/digits/`.

- `kws_stream`: a keyword-spotting-style streaming convolution. State: the last 8 frames (a
  ring buffer, [1, 8, 8]); each frame shifts the buffer, a 3x8 convolution over time (16
  channels, ReLU) and a dense layer classify the buffer.
- `rnn_stream`: a recurrent model. State: a 16-value hidden vector; h = tanh(x W + h U + b),
  then a dense layer classifies h.
- `reset_probe`: a four-value state initialised to non-zero values, accumulating its input:
  pins what `reset` does to a variable whose initial value is not zero (TFLite Micro refills
  it with zeros and does not run the initialiser again).

Regenerate (needs the `training` extra: tensorflow-cpu, scikit-learn):

    python models/streaming/make_models.py      # writes models/streaming/*.tflite, *.npz, MODELS.md

Seeded; the converter's output can change between TensorFlow versions (recorded in MODELS.md).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

HERE = Path(__file__).resolve().parent
L = tf.keras.layers
FRAMES, FEATURES, CLASSES = 8, 8, 10


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)  # [n, 8 frames, 8 features]
    return train_test_split(x, data.target, test_size=0.3, stratify=data.target, random_state=0)


def train(model: tf.keras.Model, x: np.ndarray, y: np.ndarray, epochs: int) -> None:
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, shuffle=True)


class KwsStream(tf.Module):
    def __init__(self, conv: np.ndarray, conv_bias: np.ndarray, dense: np.ndarray, dense_bias: np.ndarray):
        super().__init__()
        self.frames = tf.Variable(tf.zeros([1, FRAMES, FEATURES]), trainable=False, name="frames")
        self.conv = tf.constant(conv)  # [3, 8, 1, 16] (HWIO)
        self.conv_bias = tf.constant(conv_bias)
        self.dense = tf.constant(dense)
        self.dense_bias = tf.constant(dense_bias)

    @tf.function(input_signature=[tf.TensorSpec([1, FEATURES], tf.float32)])
    def __call__(self, frame: tf.Tensor) -> tf.Tensor:
        frames = tf.concat([self.frames[:, 1:, :], frame[:, None, :]], axis=1)
        self.frames.assign(frames)
        h = tf.nn.relu(tf.nn.conv2d(frames[..., None], self.conv, 1, "VALID") + self.conv_bias)
        logits = tf.matmul(tf.reshape(h, [1, -1]), self.dense) + self.dense_bias
        return tf.nn.softmax(logits)


class RnnStream(tf.Module):
    def __init__(self, w: np.ndarray, u: np.ndarray, b: np.ndarray, dense: np.ndarray, dense_bias: np.ndarray):
        super().__init__()
        self.hidden = tf.Variable(tf.zeros([1, u.shape[0]]), trainable=False, name="hidden")
        self.w, self.u, self.b = tf.constant(w), tf.constant(u), tf.constant(b)
        self.dense, self.dense_bias = tf.constant(dense), tf.constant(dense_bias)

    @tf.function(input_signature=[tf.TensorSpec([1, FEATURES], tf.float32)])
    def __call__(self, frame: tf.Tensor) -> tf.Tensor:
        h = tf.tanh(tf.matmul(frame, self.w) + tf.matmul(self.hidden, self.u) + self.b)
        self.hidden.assign(h)
        return tf.nn.softmax(tf.matmul(h, self.dense) + self.dense_bias)


class KwsStateIO(tf.Module):
    """`kws_stream` with its state as a graph input and output: the application feeds it back."""

    def __init__(self, stream: KwsStream):
        super().__init__()
        self.stream = stream

    @tf.function(input_signature=[tf.TensorSpec([1, FEATURES], tf.float32),
                                  tf.TensorSpec([1, FRAMES, FEATURES], tf.float32)])
    def __call__(self, frame: tf.Tensor, state: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        s = self.stream
        frames = tf.concat([state[:, 1:, :], frame[:, None, :]], axis=1)
        h = tf.nn.relu(tf.nn.conv2d(frames[..., None], s.conv, 1, "VALID") + s.conv_bias)
        logits = tf.matmul(tf.reshape(h, [1, -1]), s.dense) + s.dense_bias
        return tf.nn.softmax(logits), frames


class RnnStateIO(tf.Module):
    """`rnn_stream` with its hidden state as a graph input and output."""

    def __init__(self, stream: RnnStream):
        super().__init__()
        self.stream = stream

    @tf.function(input_signature=[tf.TensorSpec([1, FEATURES], tf.float32),
                                  tf.TensorSpec([1, 16], tf.float32)])
    def __call__(self, frame: tf.Tensor, hidden: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        s = self.stream
        h = tf.tanh(tf.matmul(frame, s.w) + tf.matmul(hidden, s.u) + s.b)
        return tf.nn.softmax(tf.matmul(h, s.dense) + s.dense_bias), h


class ResetProbe(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.total = tf.Variable(tf.constant([[0.5, -0.25, 1.0, 0.75]]), trainable=False, name="total")

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        total = self.total + 0.1 * x
        self.total.assign(total)
        return total


def convert(module: tf.Module, frames: np.ndarray, states: np.ndarray | None = None) -> bytes:
    """Full-integer int8 conversion; the representative data streams whole digits in order
    (with `states`, the state each frame met in the float stream, for state-in/out models)."""
    fn = module.__call__.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], module)
    converter.experimental_enable_resource_variables = True
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8

    def representative():
        for i, frame in enumerate(frames.reshape(-1, frames.shape[-1])):
            if states is None:
                yield [frame[None, :].astype(np.float32)]
            else:  # by name: the converter orders a concrete function's inputs its own way
                yield {"frame": frame[None, :].astype(np.float32), names[1]: states[i][None].astype(np.float32)}

    names = [t.name.split(":")[0] for t in fn.inputs]
    converter.representative_dataset = representative
    return converter.convert()


def float_accuracy(module: tf.Module, x: np.ndarray, y: np.ndarray, state: tf.Variable) -> float:
    hits = 0
    for image, label in zip(x, y):
        state.assign(tf.zeros_like(state))
        for frame in image:
            out = module(frame[None, :])
        hits += int(np.argmax(out.numpy()) == label)
    return hits / len(y)


def main() -> None:
    tf.keras.utils.set_random_seed(0)
    x_train, x_test, y_train, y_test = digits()
    rows: list[tuple[str, str, int, str, float]] = []

    conv_model = tf.keras.Sequential([
        L.Input((FRAMES, FEATURES, 1)),
        L.Conv2D(16, (3, FEATURES), activation="relu"),
        L.Flatten(),
        L.Dense(CLASSES, activation="softmax"),
    ])
    train(conv_model, x_train[..., None], y_train, epochs=40)
    conv, dense = conv_model.layers[0], conv_model.layers[2]
    kws = KwsStream(*[w.astype(np.float32) for w in conv.get_weights() + dense.get_weights()])
    rnn_model = tf.keras.Sequential([
        L.Input((FRAMES, FEATURES)),
        L.SimpleRNN(16, activation="tanh"),
        L.Dense(CLASSES, activation="softmax"),
    ])
    train(rnn_model, x_train, y_train, epochs=60)
    w, u, b = rnn_model.layers[0].get_weights()
    rnn = RnnStream(w, u, b, *rnn_model.layers[1].get_weights())

    calibration = x_train[:200]
    for name, module, state, what in [
        ("kws_stream", kws, kws.frames, "ring buffer of the last 8 frames, Conv2D 3x8x16 + ReLU, Dense 10, softmax"),
        ("rnn_stream", rnn, rnn.hidden, "tanh recurrent cell of 16, Dense 10, softmax"),
    ]:
        data = convert(module, calibration)
        (HERE / f"{name}.tflite").write_bytes(data)
        accuracy = float_accuracy(module, x_test, y_test, state)
        rows.append((name, what, len(data), hashlib.sha256(data).hexdigest()[:16], accuracy))
    # State-in/state-out twins: the state the float stream carried before each calibration frame.
    for name, module, state, what in [
        ("kws_state_io", KwsStateIO(kws), kws.frames, "kws_stream with the ring buffer as input 1 and output 1"),
        ("rnn_state_io", RnnStateIO(rnn), rnn.hidden, "rnn_stream with the hidden vector as input 1 and output 1"),
    ]:
        states = []
        for image in calibration:
            state.assign(tf.zeros_like(state))
            for frame in image:
                states.append(state.numpy()[0].copy())
                module.stream(frame[None, :])
        data = convert(module, calibration, np.array(states))
        (HERE / f"{name}.tflite").write_bytes(data)
        rows.append((name, what, len(data), hashlib.sha256(data).hexdigest()[:16], float("nan")))
    probe = ResetProbe()
    probe_data = convert(probe, np.random.default_rng(0).normal(size=(50, 1, 4)).astype(np.float32))
    (HERE / "reset_probe.tflite").write_bytes(probe_data)
    rows.append(("reset_probe", "a 4-value accumulator initialised to [0.5, -0.25, 1, 0.75]", len(probe_data),
                 hashlib.sha256(probe_data).hexdigest()[:16], float("nan")))
    # The test split as streams, for tests and the demo (uint8 0..16 like models/digits).
    np.savez_compressed(HERE / "digit_rows_test.npz", images=(x_test * 16).round().astype(np.uint8),
                        labels=y_test.astype(np.uint8))

    lines = [
        "# Streaming models made by the real TensorFlow Lite converter",
        "",
        f"Generated by `python models/streaming/make_models.py` with TensorFlow {tf.__version__}",
        "(full-integer int8, resource variables enabled; representative data: 200 training digits",
        "streamed row by row). Trained on scikit-learn's bundled digits (BSD-3-Clause, UCI ML",
        "repository), one image row per frame; float accuracy after the 8th frame of each of the",
        f"{len(y_test)} test digits, state reset to zeros between digits.",
        "",
        "| model | what | bytes | sha256 (first 16) | float accuracy |",
        "|---|---|---:|---|---:|",
    ]
    lines += [f"| {n} | {w} | {size} | `{digest}` | {'' if acc != acc else f'{100 * acc:.1f}%'} |"
              for n, w, size, digest, acc in rows]
    lines += ["", "`digit_rows_test.npz`: the test split (`images` uint8 0..16, [n, 8, 8]; `labels`).", ""]
    (HERE / "MODELS.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
