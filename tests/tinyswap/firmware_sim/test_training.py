"""On-device training's maths and RAM (`tinyswap.firmware_sim.training`): the slot it trains, the
RAM plan against the arrays really allocated, the refusals, the cycle model, and gradients
against finite differences."""

from __future__ import annotations

import copy
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest

from tinyswap.firmware_sim.errors import TrainingConfigError, TrainingMemoryError, TrainingPlanError
from tinyswap.firmware_sim.profiles import MCU_QSPI
from tinyswap.firmware_sim.training import (
    ADAM_CYCLES_PER_PARAMETER,
    FLOAT_CYCLES_PER_MAC,
    TrainerBuffers,
    TrainingConfig,
    TrainingWork,
    check_fits,
    find_logits_slot,
    plan_ram,
    train,
)
from tinyswap.reader import read_model

from tests.tinyswap.firmware_sim.training_cases import digits

KIB = 1024


def _slot():
    d = digits()
    return find_logits_slot(d.model, d.slotmap)


def test_the_trained_slot_is_the_lora_on_the_logits_layer() -> None:
    d = digits()
    slot = _slot()
    graph = read_model(d.model).main
    names = {t.index: t.name for t in graph.tensors}
    assert slot.layer == "fc" and (slot.features, slot.classes, slot.r_max) == (256, 10, 8)
    assert names[slot.x_tensor] == "flatten" and names[slot.pre_tensor] == "fc/pre"
    fc_a = next(t for t in d.slotmap["slots"][0]["tensors"] if t["layer"] == "fc" and t["role"] == "A")
    assert slot.a_scale == fc_a["scales"][0]


def test_a_bundle_without_a_lora_on_the_logits_layer_is_refused() -> None:
    d = digits()
    smap = copy.deepcopy(d.slotmap)
    for t in smap["slots"][0]["tensors"]:
        if t["layer"] == "fc":
            t["kind"] = "bottleneck"
    with pytest.raises(TrainingPlanError, match="LoRA slot on the dense layer"):
        find_logits_slot(d.model, smap)


def test_the_ram_plan_is_what_the_trainer_allocates_and_fits_64_kib_for_the_digits_cnn() -> None:
    slot = _slot()
    config = TrainingConfig()
    plan = plan_ram(slot, 100, 64, 75, config)
    buffers = TrainerBuffers(slot, 100, 64, 75, config)
    assert buffers.nbytes == plan.total
    # independently: int8 samples and activations, float32 factors x 4 (value, gradient, 2 moments)
    r, k, c, b = config.rank, 256, 10, config.batch
    expected = 100 * 64 + 75 * (k + c) + 75 + 4 * 4 * (r * k + c * r) + 4 * b * (k + r + c + c + r + c) + b * (r + c + c)
    assert plan.total == expected
    assert plan.total <= 64 * KIB


def test_training_allocates_nothing_big_beyond_its_accounted_buffers() -> None:
    """tracemalloc sees every NumPy allocation. Allocating the buffers costs the plan (plus the
    Python objects around them); while training, the traced peak rises above that by NumPy's
    own transient scratch only (ufunc casting buffers, index vectors, reductions; about 8 KB on
    the first run in a process, 4.4 KB after), under 10 KiB
    and never a second copy of a buffer; plan + scratch stays within 64 KiB."""
    slot = _slot()
    config = TrainingConfig(epochs=3)
    plan = plan_ram(slot, 100, 64, 75, config)
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (75, 256), dtype=np.int8)
    pre = rng.integers(-128, 128, (75, 10), dtype=np.int8)
    labels = rng.integers(0, 10, 75, dtype=np.uint8)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        buffers = TrainerBuffers(slot, 100, 64, 75, config)
        allocated = tracemalloc.get_traced_memory()[0] - start
        buffers["x"][...], buffers["pre"][...], buffers["labels"][...] = x, pre, labels
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        train(buffers, slot, config)
        scratch = tracemalloc.get_traced_memory()[1] - held
    finally:
        tracemalloc.stop()
    assert plan.total <= allocated <= plan.total + 4 * KIB, (plan.total, allocated)  # + 20 ndarray headers, a dict
    assert 0 < scratch <= 10 * KIB, scratch
    assert plan.total + scratch <= 64 * KIB


def test_a_step_over_its_budget_is_refused_naming_what_it_needs() -> None:
    slot = _slot()
    plan = plan_ram(slot, 100, 64, 75, TrainingConfig(rank=8))
    check_fits(plan, plan.total)
    with pytest.raises(TrainingMemoryError, match=f"needs {plan.total} bytes.*budget of {plan.total - 1}"):
        check_fits(plan, plan.total - 1)


@pytest.mark.parametrize("field,value", [("epochs", 0), ("rank", 0), ("batch", 1000), ("learning_rate", 0.0),
                                         ("learning_rate", float("nan")), ("seed", -1), ("epochs", True)])
def test_bad_training_parameters_are_refused(field, value) -> None:
    with pytest.raises(TrainingConfigError, match=field):
        replace(TrainingConfig(), **{field: value})


def test_the_cycle_model_counts_float_macs_and_adam_updates() -> None:
    work = TrainingWork(steps=10, forward_macs=1000, backward_macs=2000, parameter_updates=500)
    assert work.seconds(MCU_QSPI) == pytest.approx((3000 * FLOAT_CYCLES_PER_MAC + 500 * ADAM_CYCLES_PER_PARAMETER)
                                                   / 480e6)
    slot = _slot()
    buffers = TrainerBuffers(slot, 20, 64, 16, TrainingConfig(epochs=2, rank=2, batch=8))
    out = train(buffers, slot, TrainingConfig(epochs=2, rank=2, batch=8))
    assert out.work.steps == 4  # 2 epochs x 2 batches
    assert out.work.forward_macs == 2 * 16 * (2 * 256 + 10 * 2)
    assert out.work.parameter_updates == 4 * (2 * 256 + 10 * 2)


def _loss(slot, x, pre, labels, a, b) -> float:
    """The trainer's forward pass in float64: `a` rounded to its tensor's grid as the trainer
    does (a constant for B's gradient), u and the sum unrounded (the straight-through estimate)."""
    xs = (x.astype(np.float64) - slot.x.zero_point) * slot.x.scale
    lo, hi = slot.a.real_range
    h = np.round(np.clip(xs @ a.T, lo, hi) / slot.a.scale) * slot.a.scale
    z = (pre.astype(np.float64) - slot.pre.zero_point) * slot.pre.scale + h @ b.T
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return float(-np.log(p[np.arange(len(labels)), labels]).mean())


def test_the_gradients_match_finite_differences() -> None:
    """One Adam step from known factors moves them against the gradient; with the step's
    first-moment bias correction, the update is lr x g / (|g| + eps) per entry, so its signs
    are the gradient's signs, compared with central differences of the float loss."""
    slot = _slot()
    config = TrainingConfig(epochs=1, rank=2, batch=8, learning_rate=1e-4, seed=3)
    buffers = TrainerBuffers(slot, 8, 64, 8, config)
    rng = np.random.default_rng(1)
    buffers["x"][...] = rng.integers(-128, 20, buffers["x"].shape, dtype=np.int8)
    buffers["pre"][...] = rng.integers(-40, 40, buffers["pre"].shape, dtype=np.int8)
    buffers["labels"][...] = rng.integers(0, 10, 8, dtype=np.uint8)
    x, pre, labels = buffers["x"].copy(), buffers["pre"].copy(), buffers["labels"].astype(np.int64)
    a0 = np.random.default_rng(3).standard_normal((2, 256), dtype=np.float32) / np.float32(16.0)
    out = train(buffers, slot, config)
    np.testing.assert_allclose(out.a, a0, atol=2e-4)  # B started at 0: A's gradient was 0, A barely moved
    step_b = -out.b.astype(np.float64)  # from B = 0
    eps = 1e-4
    numeric = np.zeros((10, 2))
    for i in range(10):
        for j in range(2):
            bp, bm = np.zeros((10, 2)), np.zeros((10, 2))
            bp[i, j], bm[i, j] = eps, -eps
            numeric[i, j] = (_loss(slot, x, pre, labels, a0, bp) - _loss(slot, x, pre, labels, a0, bm)) / (2 * eps)
    big = np.abs(numeric) > 1e-3
    assert big.sum() >= 5
    assert np.all(np.sign(step_b[big]) == np.sign(numeric[big]))
