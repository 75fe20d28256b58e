"""Slot injection into an existing int8 `.tflite` (`tinyswap.export.inject`): what is kept, how
targets are named, what is refused, and that the result is a bundle the packer, the swap manager
and TFLite Micro take. The sweep over every converter-made model is tests/models/test_converted_models.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyswap import Interpreter
from tinyswap.cli import main as cli_main
from tinyswap.export.adapter_source import FloatAdapter
from tinyswap.export.build import bundle_from_compiled
from tinyswap.export.errors import InjectError, UnknownTargetError
from tinyswap.export.inject import base_weights, inject_slots
from tinyswap.export.pack import pack
from tinyswap.export.slot_plan import SlotPlan, SlotTarget
from tinyswap.oracles import run_tflm
from tinyswap.package import Keyring
from tinyswap.reader import operator_names, read_model
from tinyswap.swap import SwapManager

from tests.conftest import KERAS_MODELS, REPO

DEPTHWISE = (KERAS_MODELS / "depthwise.tflite").read_bytes()  # DW(relu) DW MEAN FC SOFTMAX
CONV_STACK = (KERAS_MODELS / "conv_stack.tflite").read_bytes()
DS_CNN = (REPO / "models" / "converted" / "ds_cnn.tflite").read_bytes()


def plan(*targets: SlotTarget, **kwargs) -> SlotPlan:
    return SlotPlan(targets, **kwargs)


def off(n: int = 2, batch: int = 1) -> list[np.ndarray]:
    return [np.full((batch, 1), -128, np.int8)] * n


def random_rows(data: bytes, n: int, seed: int = 0) -> np.ndarray:
    shape = Interpreter(model_content=data).get_input_details()[0]["shape"]
    return np.random.default_rng(seed).integers(-128, 128, (n, *shape[1:]), dtype=np.int8)


def test_the_base_operators_tensors_and_constants_are_kept_in_order() -> None:
    compiled = inject_slots(CONV_STACK, plan(SlotTarget("#0"), SlotTarget("#6", max_rank=2)))
    before, after = read_model(CONV_STACK).main, read_model(compiled.data).main
    slot_ops = {"RESHAPE", "MUL", "ADD", "CONV_2D", "FULLY_CONNECTED"}
    # A targeted operator writes `<target>/pre`; the slots' last ADD writes its original output.
    base_names = [(op.op_name, f"#{op.index}/pre" if op.index in (0, 6) else before.tensors[op.outputs[0]].name)
                  for op in before.operators]
    # The original operators appear in their order; the slot operators sit between them.
    remaining = iter((op.op_name, after.tensors[op.outputs[0]].name) for op in after.operators)
    for want in base_names:
        for got in remaining:
            if got == want:
                break
            assert got[0] in slot_ops, f"unexpected operator {got} before {want}"
        else:
            raise AssertionError(f"{want} is missing or out of order")
    old = {t.name: t for t in before.tensors}
    new = {t.name: t for t in after.tensors}
    for name, t in old.items():
        u = new[name]
        assert (u.shape, u.type) == (t.shape, t.type)
        if t.quantization is not None:
            np.testing.assert_array_equal(u.quantization.scale, t.quantization.scale)
            np.testing.assert_array_equal(u.quantization.zero_point, t.quantization.zero_point)
        a, b = read_model(CONV_STACK).tensor_data(t), read_model(compiled.data).tensor_data(u)
        assert (a is None) == (b is None) and (a is None or np.array_equal(a, b))
    assert sorted(read_model(compiled.data).metadata) == sorted(read_model(CONV_STACK).metadata)


def test_targets_by_index_and_by_output_tensor_name_are_the_same_slots() -> None:
    names = operator_names(read_model(DEPTHWISE))
    by_index = inject_slots(DEPTHWISE, plan(SlotTarget("#1"), SlotTarget("#3")))
    by_name = inject_slots(DEPTHWISE, plan(SlotTarget(names[1].output), SlotTarget(names[3].output)))
    # Same graph; only the slot tensors' names (which carry the target's name) differ.
    assert [t.role for t in by_index.slot_tensors] == [t.role for t in by_name.slot_tensors]
    x = random_rows(DEPTHWISE, 1)
    rng = np.random.default_rng(1)
    gates = [rng.integers(-128, 128, (1, 1), dtype=np.int8) for _ in range(2)]
    a = bytearray(by_index.data)
    b = bytearray(by_name.data)
    for ca, cb in zip(by_index.slot_tensors, by_name.slot_tensors):
        assert (ca.role, ca.slot, ca.tensor.shape) == (cb.role, cb.slot, cb.tensor.shape)
        oa, la = by_index.built.buffer_ranges[ca.tensor]
        ob, lb = by_name.built.buffer_ranges[cb.tensor]
        fill = rng.integers(-20, 20, la, dtype=np.int8).tobytes() if ca.tensor.dtype == np.int8 else bytes(la)
        a[oa:oa + la], b[ob:ob + lb] = fill, fill
    np.testing.assert_array_equal(Interpreter(model_content=bytes(a)).run(x, *gates)[0],
                                  Interpreter(model_content=bytes(b)).run(x, *gates)[0])


def test_unknown_targets_are_refused_in_one_error_listing_the_valid_names() -> None:
    with pytest.raises(UnknownTargetError) as err:
        inject_slots(DEPTHWISE, plan(SlotTarget("dense"), SlotTarget("#3"), SlotTarget("#99")))
    message = str(err.value)
    assert "'dense'" in message and "'#99'" in message and "tinyswap inspect" in message
    assert "#0" in message and "#3" in message and "DEPTHWISE_CONV_2D" in message
    assert "#2" not in message.split("operators:")[1]  # MEAN takes no LoRA, so it is not offered


@pytest.mark.parametrize("target, match", [
    (SlotTarget("#2"), "LoRA slots go on"),  # MEAN
    (SlotTarget("#4", kind="bottleneck"), None),  # SOFTMAX output: rank 2, int8: allowed
])
def test_lora_only_on_weighted_operators(target: SlotTarget, match: str | None) -> None:
    if match is None:
        assert inject_slots(DEPTHWISE, plan(target)).slot_tensors
    else:
        with pytest.raises(InjectError, match=match):
            inject_slots(DEPTHWISE, plan(target))


def test_a_float_model_is_refused_naming_the_operator() -> None:
    data = (KERAS_MODELS / "float_mlp.tflite").read_bytes()
    with pytest.raises(InjectError, match=r"operator #0.*int8"):
        inject_slots(data, plan(SlotTarget("#0")))


def test_bad_calibration_is_refused_before_anything_is_built() -> None:
    with pytest.raises(InjectError, match="does not fit the model input"):
        inject_slots(DEPTHWISE, plan(SlotTarget("#0")), np.zeros((4, 3, 3, 4), np.float32))
    with pytest.raises(InjectError, match="NaN"):
        inject_slots(DEPTHWISE, plan(SlotTarget("#0")), np.full((2, 10, 10, 4), np.nan, np.float32))


def test_calibration_sets_slot_ranges_from_what_the_base_sees_and_keeps_the_identity() -> None:
    x = random_rows(DEPTHWISE, 8)
    q = read_model(DEPTHWISE).main.tensors[read_model(DEPTHWISE).main.inputs[0]].quantization
    real = (x.astype(np.float32) - float(q.zero_point[0])) * float(q.scale[0])
    quiet = inject_slots(DEPTHWISE, plan(SlotTarget("#3")), real * 0.01)
    loud = inject_slots(DEPTHWISE, plan(SlotTarget("#3")))

    def a_scale(c) -> float:
        return next(float(t.quant.scale[0]) for t in c.built.tensor_indices if t.name == "slot0/#3/a")

    assert a_scale(quiet) < a_scale(loud)  # the calibrated input is 100x smaller than its int8 range
    original = Interpreter(model_content=DEPTHWISE).run(x)[0]
    np.testing.assert_array_equal(Interpreter(model_content=quiet.data).run(x, *off(batch=8))[0], original)


def test_gates_off_is_the_original_and_a_packed_adapter_runs_as_tflite_micro_runs_it(tmp_path) -> None:
    """DS-CNN (RESIZE_NEAREST_NEIGHBOR, CONV_2D, DEPTHWISE_CONV_2D): LoRA on a depthwise and a
    pointwise convolution and the classifier, a bottleneck on the pooled features; a tinyswap
    adapter packed from the bundle's slot map, loaded by the swap manager."""
    p = plan(SlotTarget("#3", max_rank=2), SlotTarget("#4"), SlotTarget("#8"),
             SlotTarget("#7", kind="bottleneck", max_rank=4, delta_ratio=2.0))
    built = bundle_from_compiled(inject_slots(DS_CNN, p, name="ds_cnn"), tmp_path / "bundle")
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["model"] == "ds_cnn" and manifest["num_slots"] == 2
    assert (tmp_path / "bundle" / "model.tflite").read_bytes() == built.data
    rng = np.random.default_rng(3)
    weights = {"#3": base_weights(DS_CNN, "#3"), "#4": base_weights(DS_CNN, "#4"), "#8": base_weights(DS_CNN, "#8")}
    fan_in = {"#3": 9 * 16, "#4": 16, "#8": 16}
    outs = {k: w.kernel.shape[-1] if w.op == "DEPTHWISE_CONV_2D" else w.kernel.shape[0] for k, w in weights.items()}
    targets = {k: (rng.standard_normal((2, fan_in[k])) * 0.2, rng.standard_normal((outs[k], 2)) * 0.05, 1.0)
               for k in weights}
    key = Ed25519PrivateKey.generate()
    package, report = pack(FloatAdapter("mirror", "1.0.0", 1, {}, targets), built.slotmap, key)
    assert max(r["delta_relative_error"] for r in report.layers.values()) < 0.1
    manager = SwapManager(bytearray(built.data), built.slotmap, Keyring([key.public_key()]))
    manager.load_adapter(package)
    x = random_rows(DS_CNN, 6, seed=4)
    original = Interpreter(model_content=DS_CNN).run(x)[0]
    np.testing.assert_array_equal(manager.infer(x, adapters="__base__")[0], original)
    adapted = manager.infer(x, adapters="mirror")[0]
    assert np.any(adapted != original)
    gates = manager.gates_for("mirror", batch=1)
    image = bytes(manager.image.buffer)
    for r in range(len(x)):
        np.testing.assert_array_equal(run_tflm(image, [x[r:r + 1], *[g[:1] for g in gates]])[0], adapted[r:r + 1])


def test_base_weights_are_dequantized_per_channel() -> None:
    w = base_weights(DS_CNN, "#2")
    model = read_model(DS_CNN)
    op = model.main.operators[2]
    t = model.main.tensors[op.inputs[1]]
    q = model.tensor_data(t).astype(np.float64)
    np.testing.assert_allclose(w.kernel, q * t.quantization.scale.reshape(-1, 1, 1, 1))
    assert w.op == "CONV_2D" and w.kernel.shape == t.shape and w.bias is not None
    with pytest.raises(InjectError, match="no constant weights"):
        base_weights(DS_CNN, "#7")  # MEAN


def test_inspect_lists_every_operator_with_its_plan_names(capsys) -> None:
    path = str(REPO / "models" / "converted" / "ds_cnn.tflite")
    assert cli_main(["inspect", path]) == 0
    text = capsys.readouterr().out
    for n in operator_names(read_model(DS_CNN)):
        assert f"{n.ref} {n.op}" in text and f"name {n.output}" in text
    assert cli_main(["inspect", "--json", path]) == 0
    ops = json.loads(capsys.readouterr().out)["operators"]
    assert [(o["ref"], o["name"]) for o in ops] == [(n.ref, n.output) for n in operator_names(read_model(DS_CNN))]


def test_tinyswap_pack_maps_peft_module_paths_to_injected_targets(tmp_path, capsys) -> None:
    """The committed ds_cnn PEFT adapter (module paths `layers.op2`, `layers.op8`) packed by the
    command line for a bundle with slots injected on operators 2 and 8."""
    from tests.models.converted_adapters import CASES, adapter_dir, plan_for

    bundle = tmp_path / "bundle"
    bundle_from_compiled(inject_slots(DS_CNN, plan_for(CASES["ds_cnn"])), bundle, keys_dir=tmp_path)
    common = ["pack", str(adapter_dir("ds_cnn")), "--bundle", str(bundle), "--key", str(tmp_path / "signing_key.pem"),
              "-o", str(tmp_path / "a.tsap"), "--name", "mirrored", "--version", "1.0.0", "--sequence", "1"]
    assert cli_main([*common, "--layer-map", "layers.op2=#2", "--layer-map", "layers.op8=#8"]) == 0
    out = capsys.readouterr().out
    assert "#2" in out and "#8" in out and (tmp_path / "a.tsap").stat().st_size > 0
    assert cli_main(common) != 0  # without the map, 'op2' names no slot: refused, not guessed
    assert "op2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main([*common, "--layer-map", "layers.op2"])
