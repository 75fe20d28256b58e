"""The static-graph compiler: slots patched through the slot map run bit-exact everywhere.

Adapter bytes are written straight into the byte ranges `slotmap.json` names (not through the
compiler), exactly as a device would; gates are random. Our interpreter on the patched buffer
must equal TFLite Micro on the patched file bit for bit, and LiteRT BUILTIN_REF under the
LiteRT profile.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tinyswap.export.bundle import slot_map, slot_ranges
from tinyswap.export.compiler import compile_model
from tinyswap.export.slot_plan import SlotPlan, SlotTarget
from tinyswap import Interpreter
from tinyswap.oracles import LiteRTResolver, run_litert, run_tflm
from tinyswap.quantize import quantize_int8
from tinyswap.reader import read_model

from tests.tinyswap.export.model_cases import plans, specs


def patch_random_slots(data: bytearray, smap: dict, rng: np.random.Generator, constant: int | None = None) -> None:
    """Write random adapter values (or one constant, for an effect that cannot average out)
    into every slot tensor's recorded byte range."""
    for slot in smap["slots"]:
        for t in slot["tensors"]:
            n = int(np.prod(t["shape"]))
            if t["dtype"] == "int8":
                values = rng.integers(-127, 128, size=n).astype(np.int8)
                if constant is not None:
                    values[:] = constant
            else:
                values = rng.integers(-2000, 2000, size=n).astype("<i4")
            raw = values.tobytes()
            assert len(raw) == t["length"]
            data[t["offset"] : t["offset"] + t["length"]] = raw


def random_inputs(compiled, rng, gates: np.ndarray | None = None) -> list[np.ndarray]:
    spec = compiled.spec
    x = rng.integers(-128, 128, size=spec.input_shape, dtype=np.int8)
    out = [x]
    for s, g in enumerate(compiled.gates):
        value = gates[s] if gates is not None else rng.integers(-128, 128)
        out.append(np.full(g.shape, value, np.int8))
    return out


@st.composite
def cases(draw):
    spec, cal = draw(specs())
    plan = draw(plans(spec))
    return spec, cal, plan, draw(st.integers(0, 2**32 - 1))


@given(cases())
def test_patched_slots_match_tflite_micro_and_litert(case) -> None:
    spec, cal, plan, seed = case
    rng = np.random.default_rng(seed)
    compiled = compile_model(spec, plan, cal)
    smap = slot_map(compiled).to_json()
    data = bytearray(compiled.data)
    patch_random_slots(data, smap, rng)
    inputs = random_inputs(compiled, rng)
    ours = Interpreter(model_content=data).run(*inputs)
    golden = run_tflm(bytes(data), inputs)
    np.testing.assert_array_equal(ours[0], golden[0])
    lite = Interpreter(model_content=data, profile="litert").run(*inputs)
    np.testing.assert_array_equal(lite[0], run_litert(bytes(data), inputs, LiteRTResolver.REF)[0])
    # Every bundle also loads and runs in LiteRT's two other resolvers (XNNPACK's int8 ADD is
    # not the reference arithmetic, so only the shape is compared there).
    for resolver in (LiteRTResolver.DEFAULT, LiteRTResolver.WITHOUT_DEFAULT_DELEGATES):
        assert run_litert(bytes(data), inputs, resolver)[0].shape == ours[0].shape


@pytest.mark.slow
@settings(max_examples=500)
@given(cases())
def test_full(case) -> None:  # the documented >= 500-example run (TINYSWAP_FULL=1 ... -m "")
    test_patched_slots_match_tflite_micro_and_litert.hypothesis.inner_test(case)


@given(cases())
def test_zero_gates_reproduce_the_slot_free_model(case) -> None:
    spec, cal, plan, seed = case
    rng = np.random.default_rng(seed)
    with_slots = compile_model(spec, plan, cal)
    without = compile_model(spec, None, cal)
    data = bytearray(with_slots.data)
    patch_random_slots(data, slot_map(with_slots).to_json(), rng)  # whatever the slots hold
    zero = np.full(len(with_slots.gates), -128)  # gate 0.0 is the int8 zero point -128
    inputs = random_inputs(with_slots, rng, zero)
    np.testing.assert_array_equal(Interpreter(model_content=data).run(*inputs)[0],
                                  Interpreter(model_content=without.data).run(inputs[0])[0])


def test_every_resolver_loads_and_runs_a_bundle() -> None:
    spec, cal = _fixed_spec()
    plan = SlotPlan(targets=(SlotTarget("conv0", "lora", 2), SlotTarget("head", "bottleneck", 2)), num_slots=2)
    compiled = compile_model(spec, plan, cal)
    inputs = random_inputs(compiled, np.random.default_rng(1))
    golden = run_tflm(compiled.data, inputs)[0]
    np.testing.assert_array_equal(Interpreter(model_content=compiled.data).run(*inputs)[0], golden)
    ours = Interpreter(model_content=compiled.data, profile="litert").run(*inputs)[0]
    for resolver in LiteRTResolver:
        theirs = run_litert(compiled.data, inputs, resolver)[0]
        assert theirs.shape == ours.shape and theirs.dtype == ours.dtype, resolver
        # BUILTIN_REF is our litert profile bit for bit; the optimised resolvers may round
        # some values the other way, by one step at most.
        tolerance = 0 if resolver == LiteRTResolver.REF else 1
        assert int(np.abs(theirs.astype(np.int32) - ours.astype(np.int32)).max()) <= tolerance, resolver


def _fixed_spec():
    from tinyswap.export.spec import parse_spec

    rng = np.random.default_rng(0)
    raw = {"name": "cnn", "input": {"shape": [1, 8, 8, 2]}, "layers": [
        {"name": "conv0", "type": "conv2d", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"name": "gap", "type": "global_avg_pool2d"},
        {"name": "head", "type": "dense", "units": 3}]}
    w = {"conv0/kernel": rng.standard_normal((3, 3, 2, 4)).astype(np.float32) * 0.3,
         "conv0/bias": np.zeros(4, np.float32), "head/kernel": rng.standard_normal((4, 3)).astype(np.float32),
         "head/bias": np.zeros(3, np.float32)}
    return parse_spec(raw, w), rng.standard_normal((16, 8, 8, 2)).astype(np.float32)


def test_patching_a_live_interpreter_equals_a_fresh_one() -> None:
    spec, cal = _fixed_spec()
    plan = SlotPlan(targets=(SlotTarget("conv0", "lora", 2),), num_slots=2)
    compiled = compile_model(spec, plan, cal)
    data = bytearray(compiled.data)
    rng = np.random.default_rng(3)
    inputs = random_inputs(compiled, rng, np.array([127, 127]))
    live = Interpreter(model_content=data)
    before = live.run(*inputs)[0]
    patch_random_slots(data, slot_map(compiled).to_json(), rng, constant=60)
    after = live.run(*inputs)[0]  # no re-allocation: the next invoke reads the new bytes
    assert not np.array_equal(before, after), "the adapter had no effect"
    np.testing.assert_array_equal(after, Interpreter(model_content=bytes(data)).run(*inputs)[0])
    np.testing.assert_array_equal(after, run_tflm(bytes(data), inputs)[0])


@given(cases())
def test_slot_ranges_touch_no_base_bytes_checked_from_the_file(case) -> None:
    spec, cal, plan, _ = case
    compiled = compile_model(spec, plan, cal)
    smap = slot_map(compiled).to_json()
    model = read_model(compiled.data)  # the file, not the compiler's bookkeeping
    slot_indices = {t["tensor_index"] for s in smap["slots"] for t in s["tensors"]}
    base_spans = []
    for t in model.main.tensors:
        buf = model.buffers[t.buffer]
        if buf.length and t.index not in slot_indices:
            base_spans.append((buf.offset - 4, buf.offset + buf.length))  # with its length prefix
    for meta in model.metadata.values():
        buf = model.buffers[meta]
        base_spans.append((buf.offset - 4, buf.offset + buf.length))
    for slot in smap["slots"]:
        start, end = slot["offset"], slot["offset"] + slot["length"]
        assert start % plan.alignment == 0 and end % plan.alignment == 0
        assert end <= len(compiled.data)
        for lo, hi in base_spans:
            assert hi <= start or lo >= end, f"slot {slot['slot']} [{start}, {end}) overlaps base bytes [{lo}, {hi})"
        for t in slot["tensors"]:  # the file agrees with the slot map on every slot tensor
            buf = model.buffers[model.main.tensors[t["tensor_index"]].buffer]
            assert (buf.offset, buf.length) == (t["offset"], t["length"])
            assert start <= t["offset"] and t["offset"] + t["length"] <= end
    others = [(s["offset"], s["offset"] + s["length"]) for s in smap["slots"]]
    for i, (a, b) in enumerate(others):
        for c, d in others[i + 1 :]:
            assert b <= c or d <= a


def test_base_digest_ignores_slot_contents() -> None:
    spec, cal = _fixed_spec()
    plan = SlotPlan(targets=(SlotTarget("conv0", "lora", 2),), num_slots=2)
    compiled = compile_model(spec, plan, cal)
    smap = slot_map(compiled).to_json()
    data = bytearray(compiled.data)
    patch_random_slots(data, smap, np.random.default_rng(0))
    from tinyswap.slotmap import base_digest

    assert base_digest(bytes(data), slot_ranges(compiled)) == smap["base_digest"]
    data[0] ^= 1  # a base byte: a different base
    assert base_digest(bytes(data), slot_ranges(compiled)) != smap["base_digest"]


@given(cases())
def test_headroom_bound_at_the_adapted_layers(case) -> None:
    # With headroom the pre-activation sum has its own (wider) range, so all-zero gates give
    # the base model up to two roundings: the sum rounds to s_pre, the last ADD rounds to
    # s_out. Bound at each adapted layer's output: 0.5 + 0.5 * s_pre / s_out LSB, rounded up.
    spec, cal, plan, seed = case
    order = [layer.name for layer in spec.layers]
    lora = sorted((t for t in plan.targets if t.kind == "lora"), key=lambda t: order.index(t.layer))
    assume(lora)  # a plan without a LoRA target has no bound to check: discarded, not passed
    plan = SlotPlan(targets=plan.targets, num_slots=plan.num_slots, alignment=plan.alignment, headroom=True)
    rng = np.random.default_rng(seed)
    with_slots, without = compile_model(spec, plan, cal), compile_model(spec, None, cal)
    inputs = random_inputs(with_slots, rng, np.full(len(with_slots.gates), -128))
    # Inputs from the calibration distribution: beyond it the two models saturate at
    # different points (pre-activation vs output range), which no rounding bound covers.
    q = with_slots.input_quant
    sample = cal[rng.integers(0, len(cal))][None]
    inputs[0] = quantize_int8(sample, q.scale, q.zero_point)
    a = Interpreter(model_content=with_slots.data, experimental_preserve_all_tensors=True)
    b = Interpreter(model_content=without.data, experimental_preserve_all_tensors=True)
    a.run(*inputs)
    b.run(inputs[0])
    names_a = {t.name: t for t in a.model.main.tensors}
    names_b = {t.name: t for t in b.model.main.tensors}
    for target in lora:
        pre, out = names_a[f"{target.layer}/pre"], names_a[target.layer]
        ratio = float(pre.quantization.scale[0]) / float(out.quantization.scale[0])
        bound = int(np.ceil(0.5 + 0.5 * ratio))
        # Checked at the first LoRA layer in graph order: later ones also inherit upstream
        # differences.
        if target is lora[0]:
            diff = np.abs(a.get_tensor(out.index).astype(int) - b.get_tensor(names_b[target.layer].index).astype(int))
            assert diff.max() <= bound, (target.layer, diff.max(), bound)


def test_a_layer_that_never_fires_on_calibration_data_still_loads_in_every_litert_resolver() -> None:
    """Found by the full property run: a ReLU layer that is always 0 on the calibration data
    had a calibrated range of 0, a scale near 1e-9 and requantization multipliers XNNPACK
    refuses ("failed to prepare"). Activation ranges now have a floor (export/quantize.py)."""
    from tinyswap.export.quantize import MIN_ACTIVATION_RANGE
    from tinyswap.export.spec import parse_spec

    rng = np.random.default_rng(0)
    raw = {"name": "dead", "input": {"shape": [1, 4]}, "layers": [
        {"name": "fc0", "type": "dense", "units": 3, "activation": "relu"},
        {"name": "fc1", "type": "dense", "units": 2, "activation": "relu"}]}
    weights = {"fc0/kernel": rng.standard_normal((4, 3)).astype(np.float32) * 0.1,
               "fc0/bias": np.full(3, -50.0, np.float32),  # never positive on N(0, 1) inputs
               "fc1/kernel": rng.standard_normal((3, 2)).astype(np.float32),
               "fc1/bias": np.full(2, -1.0, np.float32)}
    spec = parse_spec(raw, weights)
    cal = rng.standard_normal((32, 4)).astype(np.float32)
    compiled = compile_model(spec, SlotPlan(targets=(SlotTarget("fc0", "lora", 1),), num_slots=2), cal)
    model = read_model(compiled.data)
    scales = [float(t.quantization.scale[0]) for t in model.main.tensors
              if t.quantization is not None and t.name in ("fc0", "fc1")]
    assert scales and min(scales) >= MIN_ACTIVATION_RANGE / 255 * 0.999
    inputs = random_inputs(compiled, np.random.default_rng(1))
    ours = Interpreter(model_content=compiled.data).run(*inputs)[0]
    np.testing.assert_array_equal(ours, run_tflm(compiled.data, inputs)[0])
    for resolver in LiteRTResolver:
        assert run_litert(compiled.data, inputs, resolver)[0].shape == ours.shape
