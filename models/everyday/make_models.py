"""Train the everyday Keras models of `networks.py` on scikit-learn's bundled data sets and make
the TensorFlow Lite converter's own full-int8 model of each: the fixtures the Keras import
tests compare against (`tests/tinyswap/export/test_keras_import.py`), so those tests run
without TensorFlow (Keras 3 on the PyTorch backend reads the `.keras` files; the `tflite_micro`
wheel runs the converter's `.tflite` files).

Data (scikit-learn's bundled sets, nothing downloaded): digits (8x8 images, 10 classes) for the
keyword-spotting Conv1D model (`kws`: pixels / 16, the 8 rows as 8 time steps) and the
functional CNN (`cnn`: raw pixels 0..16, its Rescaling layer scales them); wine (13 features, 3
classes), breast cancer (30 features, 2 classes) and iris (4 features, 3 classes), min-max
scaled to [0, 1] over the whole set (one int8 input tensor cannot hold features that span 0.1
and 1,000 at once: the converter's int8 model loses 30 points on raw wine features); the
models' own Normalization layer then standardizes them.

Held-out rows: digits, one stratified 70/30 split (540 held-out rows, one row 0.19 points).
The tabular sets are small (a 30% split of iris is 45 rows, one row 2.2 points), so each is
5-fold stratified cross-validation: five models, each trained on four folds and held out on
the fifth, every row held out once (iris 150 rows, one row 0.67 points).

Each model: `keras.utils.set_random_seed(0)`, Adam(0.01), sparse categorical cross-entropy; the
tabular sets 150 epochs of batch 32, digits 40 epochs of batch 64. Normalization layers adapt
on the training rows. The converter (`Optimize.DEFAULT`, `TFLITE_BUILTINS_INT8`, int8 input
and output) is calibrated on the first 200 training rows, the rows our export calibrates on.

Writes, beside this file: `<model>.keras`, `<model>.converter.tflite`, `data.npz` (per data set
`<set>/x` float32 rows as the model takes them, `<set>/y` labels, `<set>/fold` the fold each
row is held out in, -1 for training-only rows) and `MODELS.md` (versions, accuracy).

    python models/everyday/make_models.py     # needs the `training` extra (tensorflow-cpu, scikit-learn)
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 0
FOLDS = 5
CALIBRATION_ROWS = 200


def data_sets() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Data set -> (x float32 as the model takes it, y, held-out fold per row; -1 = training only)."""
    from sklearn import datasets, model_selection

    def single_split(y: np.ndarray) -> np.ndarray:
        _, test = model_selection.train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=SEED)
        fold = np.full(len(y), -1, np.int8)
        fold[test] = 0
        return fold

    def k_fold(y: np.ndarray) -> np.ndarray:
        fold = np.empty(len(y), np.int8)
        splitter = model_selection.StratifiedKFold(FOLDS, shuffle=True, random_state=SEED)
        for k, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y)):
            fold[test] = k
        return fold

    def table(x: np.ndarray) -> np.ndarray:
        return ((x - x.min(axis=0)) / np.maximum(x.max(axis=0) - x.min(axis=0), 1e-12)).astype(np.float32)

    d = datasets.load_digits()
    out = {"kws": ((d.images / 16.0).astype(np.float32), d.target, single_split(d.target)),
           "cnn": (d.images[..., None].astype(np.float32), d.target, single_split(d.target))}
    for name, loader in (("wine", datasets.load_wine), ("cancer", datasets.load_breast_cancer),
                         ("iris", datasets.load_iris)):
        x, y = loader(return_X_y=True)
        out[name] = (table(x), y, k_fold(y))
    return out


def folds(fold: np.ndarray) -> list[int]:
    return sorted(int(k) for k in set(fold.tolist()) if k >= 0)


def model_name(data_set: str, fold: np.ndarray, k: int) -> str:
    """`kws`, or `iris_fold2` where the set is cross-validated."""
    return data_set if len(folds(fold)) == 1 else f"{data_set}_fold{k}"


def network(data_set: str, features: int, classes: int):
    import networks

    if data_set == "kws":
        return networks.kws_model()
    if data_set == "cnn":
        return networks.cnn_model()
    return networks.dense_model(features, classes, data_set)


def train(data_set: str, x: np.ndarray, y: np.ndarray):
    import keras

    keras.utils.set_random_seed(SEED)
    model = network(data_set, x.shape[-1], int(y.max()) + 1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            layer.adapt(x)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    small = len(x) < 500  # the tabular sets: more epochs, each a few steps
    model.fit(x, y, epochs=150 if small else 40, batch_size=32 if small else 64, verbose=0)
    return model


def inference_copy(data_set: str, model):
    """The trained network without its optimizer state (a third of the file, of no use to
    inference): the same layers rebuilt uncompiled, with the trained weights and statistics."""
    copy = network(data_set, model.input_shape[-1], model.output_shape[-1])
    copy.set_weights(model.get_weights())
    return copy


def convert(model, calibration: np.ndarray) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([row[None]] for row in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def tflm_outputs(data: bytes, x: np.ndarray) -> np.ndarray:
    """An int8 model with one int8 input run by the `tflite_micro` wheel, one row of `x` (real
    values, quantized to the input) at a time: what the tests compare our export with."""
    from tinyswap.oracles import tflm_interpreter
    from tinyswap.quantize import quantize_int8
    from tinyswap.reader import read_model

    graph = read_model(data).main
    q = graph.tensors[graph.inputs[0]].quantization
    interp = tflm_interpreter(data)
    rows = []
    for row in x:
        interp.set_input(quantize_int8(row[None], float(q.scale[0]), int(q.zero_point[0])), 0)
        interp.invoke()
        rows.append(np.array(interp.get_output(0)[0], copy=True))
    return np.array(rows)


def main() -> None:
    sys.path.insert(0, str(HERE))
    import keras
    import sklearn
    import tensorflow as tf

    sets = data_sets()
    np.savez_compressed(HERE / "data.npz", **{f"{s}/{k}": v for s, arrays in sets.items()
                                               for k, v in zip(("x", "y", "fold"), arrays)})
    rows = []
    for data_set, (x, y, fold) in sets.items():
        for k in folds(fold):
            name = model_name(data_set, fold, k)
            train_rows, test_rows = fold != k, fold == k
            model = train(data_set, x[train_rows], y[train_rows])
            inference_copy(data_set, model).save(HERE / f"{name}.keras")
            data = convert(model, x[train_rows][:CALIBRATION_ROWS])
            (HERE / f"{name}.converter.tflite").write_bytes(data)
            float_acc = float(np.mean(np.argmax(model.predict(x[test_rows], verbose=0), 1) == y[test_rows]))
            int8_acc = float(np.mean(tflm_outputs(data, x[test_rows]).argmax(1) == y[test_rows]))
            rows.append(f"| {name} | {int(test_rows.sum())} | {100 * float_acc:.2f}% | {100 * int8_acc:.2f}% | "
                        f"{len(data)} | `{hashlib.sha256(data).hexdigest()[:16]}` |")
            print(rows[-1], flush=True)
    (HERE / "MODELS.md").write_text(
        "# Everyday Keras models and the TensorFlow converter's int8 models of them\n\n"
        f"Generated by `python models/everyday/make_models.py` with TensorFlow {tf.__version__}, Keras "
        f"{keras.__version__}, scikit-learn {sklearn.__version__}, seed {SEED} (how, and the data sets: the "
        "script's docstring). `<model>.keras` is the trained Keras model, `<model>.converter.tflite` the "
        "converter's full-int8 model of it; accuracies are on the model's held-out rows, the converter's run "
        "by the `tflite_micro` wheel.\n\n"
        "| model | held-out rows | Keras float | converter int8 | .tflite bytes | sha256 (first 16) |\n"
        "|---|---:|---:|---:|---:|---|\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
