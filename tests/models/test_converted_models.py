"""Slot injection into converter-made int8 models: the four trained on real data in
models/converted/ (DS-CNN, MobileNet-style, ResNet-style, dense autoencoder), the converter's
conformance set in models/keras/ and TFLite Micro's own examples in models/tflm/.

- the base models themselves run bit for bit as TFLite Micro runs them, on real digits;
- injected without headroom, all gates at zero give the original model's outputs bit for bit,
  in our interpreter and in TFLite Micro, whatever bytes the slots hold;
- random slot bytes and random gates: our interpreter equals TFLite Micro byte for byte
  (property test: a CI sample, every model in the full run);
- a real PEFT LoRA, trained on mirrored digits on the float mirror of the file, packed for the
  injected model, raises accuracy on that domain as much in INT8 as in float (within 3 points):
  the committed adapter in CI, all four retrained from scratch in the full run.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyswap import Interpreter
from tinyswap.export.bundle import slot_tensor_records
from tinyswap.export.compiler import Compiled
from tinyswap.export.inject import LORA_OPS, inject_slots
from tinyswap.export.slot_plan import SlotPlan, SlotTarget
from tinyswap.oracles import run_tflm, tflm_interpreter
from tinyswap.reader import operator_names, read_model

from tests.conftest import FULL, KERAS_MODELS, REPO, TFLM_MODELS
from tests.models.converted_adapters import (CASES, CONVERTED, FLOAT_SCORES, adapter_dir, digits, domain, measure,
                                             measure_float, measure_int8, mirrored, train_peft)

CONVERTED_MODELS = ("ds_cnn", "mobilenet", "resnet", "autoencoder")
MODEL_FILES = {
    **{name: CONVERTED / f"{name}.tflite" for name in CONVERTED_MODELS},
    **{f"keras/{p.stem}": p for p in sorted(KERAS_MODELS.glob("*.tflite")) if not p.stem.startswith("float_")},
    **{f"tflm/{p.stem}": p for p in sorted(TFLM_MODELS.glob("*.tflite"))},
}
# person_detect has 14 convolutions of up to 256 channels: slots on its last three keep the run short.
MAX_TARGETS = 3


def targets_of(data: bytes) -> tuple[SlotTarget, ...]:
    """LoRA on every weighted operator (the last MAX_TARGETS of a model with more), and a
    bottleneck on the first rank-2 or rank-4 int8 output that has no LoRA."""
    model = read_model(data)
    names = operator_names(model)
    weighted = [n for n in names if n.op in LORA_OPS][-MAX_TARGETS:]
    targets = [SlotTarget(n.ref, "lora", 2 + n.index % 3, 0.5) for n in weighted]
    taken = {n.index for n in weighted}
    for n, op in zip(names, model.main.operators):
        out = model.main.tensors[op.outputs[0]]
        if n.index not in taken and out.dtype == np.int8 and len(out.shape) in (2, 4) and n.op in LORA_OPS + ("MEAN", "ADD"):
            targets.append(SlotTarget(n.output, "bottleneck", 3, 2.0))  # named by its output tensor
            break
    return tuple(targets)


_INJECTED: dict[str, Compiled] = {}


def injected(name: str) -> tuple[bytes, Compiled]:
    data = MODEL_FILES[name].read_bytes()
    if name not in _INJECTED:
        _INJECTED[name] = inject_slots(data, SlotPlan(targets_of(data), num_slots=2))
    return data, _INJECTED[name]


def with_random_slots(compiled: Compiled, rng: np.random.Generator) -> bytes:
    """The injected file with random bytes in every slot tensor: any int8 value, int32 biases
    within +-2^20 (larger ones overflow TFLM's int32 accumulators, undefined behaviour in C)."""
    data = bytearray(compiled.data)
    for t in slot_tensor_records(compiled):
        if t.dtype == "int8":
            values = rng.integers(-128, 128, t.length, dtype=np.int8).tobytes()
        else:
            values = rng.integers(-(1 << 20), 1 << 20, t.length // 4, dtype=np.int32).astype("<i4").tobytes()
        data[t.offset:t.offset + t.length] = values
    return bytes(data)


def real_inputs(name: str, data: bytes, rows: int, rng: np.random.Generator) -> np.ndarray:
    """Real digits (test split) for the converted models, random int8 rows for the others."""
    detail = Interpreter(model_content=data).get_input_details()[0]
    shape = tuple(int(s) for s in detail["shape"][1:])
    if name in CONVERTED_MODELS:
        return domain(data, digits()["x_test"][:rows], digits()["y_test"][:rows], True).xq
    if np.dtype(detail["dtype"]) == np.int8:
        return rng.integers(-128, 128, (rows, *shape), dtype=np.int8)
    return rng.standard_normal((rows, *shape)).astype(np.float32)


def test_the_converted_models_are_small_and_recorded() -> None:
    record = json.loads((CONVERTED / "MODELS.json").read_text())
    for name in CONVERTED_MODELS:
        raw = (CONVERTED / f"{name}.tflite").read_bytes()
        assert len(raw) < 40_000
        assert record["models"][name]["sha256"] == hashlib.sha256(raw).hexdigest()
        assert record["models"][name]["bytes"] == len(raw)


@pytest.mark.parametrize("name", CONVERTED_MODELS)
def test_converted_models_run_bit_exact_with_tflite_micro_on_real_digits(name: str) -> None:
    data = MODEL_FILES[name].read_bytes()
    x = real_inputs(name, data, 24, np.random.default_rng(0))
    ours = Interpreter(model_content=data).run(x)[0]
    golden = tflm_interpreter(data)
    expected = np.concatenate([run_tflm(data, [x[r:r + 1]], interpreter=golden)[0] for r in range(len(x))])
    np.testing.assert_array_equal(ours, expected)
    assert len(np.unique(expected)) > 1


# person_detect (300 KB, 96x96 input) takes about 30 s here: in the full run only.
SLOW_MODELS = {"tflm/person_detect"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_MODELS else n
                                  for n in sorted(MODEL_FILES)])
def test_gates_off_give_the_original_model_bit_for_bit_whatever_the_slots_hold(name: str) -> None:
    data, compiled = injected(name)
    assert compiled.plan is not None and not compiled.plan.headroom
    rng = np.random.default_rng(len(name))
    slotted = with_random_slots(compiled, rng)
    x = real_inputs(name, data, 3, rng)
    off = [np.full((1, 1), -128, np.int8)] * compiled.plan.num_slots
    base_ours, slotted_ours = Interpreter(model_content=data), Interpreter(model_content=slotted)
    base_tflm, slotted_tflm = tflm_interpreter(data), tflm_interpreter(slotted)
    for r in range(len(x)):
        row = x[r:r + 1]
        original = base_ours.run(row)
        assert all(np.array_equal(a, b) for a, b in zip(slotted_ours.run(row, *off), original))
        golden = run_tflm(data, [row], interpreter=base_tflm)
        assert all(np.array_equal(a, b) for a, b in zip(golden, original))
        assert all(np.array_equal(a, b) for a, b in zip(run_tflm(slotted, [row, *off], interpreter=slotted_tflm), golden))


def _random_slots_match_tflite_micro(name: str, seed: int) -> None:
    data, compiled = injected(name)
    assert compiled.plan is not None
    rng = np.random.default_rng(seed)
    slotted = with_random_slots(compiled, rng)
    x = real_inputs(name, data, 1, rng)
    gates = [rng.integers(-128, 128, (1, 1), dtype=np.int8) for _ in range(compiled.plan.num_slots)]
    ours = Interpreter(model_content=slotted).run(x, *gates)
    golden = run_tflm(slotted, [x, *gates])
    for a, b in zip(ours, golden):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert int(np.sum(a != b)) == 0, f"{name}: {int(np.sum(a != b))} of {a.size} values differ from TFLite Micro"


# CI: every converted model and two of the others, a few slot contents each (person_detect,
# 300 KB, only in the full run); full: every model, the full profile's examples.
CI_SAMPLE = (*CONVERTED_MODELS, "keras/depthwise", "tflm/micro_speech_quantized")


@settings(max_examples=8)
@given(st.sampled_from(CI_SAMPLE), st.integers(0, 2**32 - 1))
def test_random_slot_bytes_and_gates_match_tflite_micro(name: str, seed: int) -> None:
    _random_slots_match_tflite_micro(name, seed)


@pytest.mark.slow
@given(st.sampled_from(sorted(MODEL_FILES)), st.integers(0, 2**32 - 1))
def test_random_slot_bytes_and_gates_match_tflite_micro_full(name: str, seed: int) -> None:
    _random_slots_match_tflite_micro(name, seed)


def _assert_gain(name: str, adapter: object) -> None:
    case = CASES[name]
    data = (CONVERTED / f"{name}.tflite").read_bytes()
    d = digits()
    test = domain(data, mirrored(d["x_test"]), d["y_test"], case.classifier)
    report = measure(case, adapter, test)  # type: ignore[arg-type]
    assert report.float_gain >= 10.0, f"{name}: the adapter barely helps in float ({report})"
    assert abs(report.int8_gain - report.float_gain) <= 3.0, f"{name}: {report}"
    assert report.int8_base == pytest.approx(report.float_base, abs=3.0)


def test_committed_peft_adapter_raises_int8_accuracy_as_much_as_float() -> None:
    """ds_cnn's committed PEFT LoRA (trained by `python -m tests.models.converted_adapters`):
    INT8 measured now, float as recorded when it was trained (the full run recomputes it)."""
    case = CASES["ds_cnn"]
    data = (CONVERTED / "ds_cnn.tflite").read_bytes()
    d = digits()
    test = domain(data, mirrored(d["x_test"]), d["y_test"], case.classifier)
    recorded = json.loads((adapter_dir("ds_cnn") / FLOAT_SCORES).read_text())
    q = measure_int8(case, adapter_dir("ds_cnn"), test)
    float_gain = recorded["float_adapted"] - recorded["float_base"]
    assert float_gain >= 10.0
    assert abs((q.adapted - q.base) - float_gain) <= 3.0, (q, recorded)
    assert q.base == pytest.approx(recorded["float_base"], abs=3.0)


@pytest.mark.slow
def test_committed_adapters_float_scores_are_what_peft_computes() -> None:
    for name, case in CASES.items():
        data = (CONVERTED / f"{name}.tflite").read_bytes()
        d = digits()
        test = domain(data, mirrored(d["x_test"]), d["y_test"], case.classifier)
        recorded = json.loads((adapter_dir(name) / FLOAT_SCORES).read_text())
        base, adapted = measure_float(case, adapter_dir(name), test)
        assert (base, adapted) == pytest.approx((recorded["float_base"], recorded["float_adapted"]), abs=0.2)


@pytest.mark.slow
@pytest.mark.parametrize("name", CONVERTED_MODELS)
def test_peft_adapter_trained_now_raises_int8_accuracy_as_much_as_float(name: str, tmp_path) -> None:
    case = CASES[name]
    data = (CONVERTED / f"{name}.tflite").read_bytes()
    d = digits()
    train = domain(data, mirrored(d["x_train"]), d["y_train"], case.classifier)
    _assert_gain(name, train_peft(case, data, train, tmp_path / "adapter"))


def test_the_sample_covers_the_model_families() -> None:
    assert set(CONVERTED_MODELS) <= set(MODEL_FILES) and len(MODEL_FILES) >= 15
    assert not FULL or REPO.exists()
