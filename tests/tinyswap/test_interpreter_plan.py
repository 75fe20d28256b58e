"""The execution plan (`Kernel.bind` steps built at allocate_tensors) against the generic
`eval` steps and TFLite Micro, per row and batched, on every model family of the benchmark set;
and `num_threads` capping BLAS threads while invoking."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from tinyswap import Interpreter
from tinyswap.benchmarks.interpreter import standard_models
from tinyswap.kernels.base import Kernel
from tinyswap.kernels.registry import get_kernel, supported_ops
from tinyswap.oracles import tflm_interpreter
from tinyswap.resources import models_dir

CASES = {c.label: c.path for c in standard_models(models_dir())}
STATELESS = sorted(label for label in CASES if not label.startswith("streaming/"))
# Rows per model: enough to cross from the bound steps into the kernels' batch paths on the
# small models; person_detect's batch path is the one the other tests already cover at 20 rows.
ROWS = {"tflm/person_detect": 2}


def use_generic_steps(monkeypatch) -> None:
    """Every kernel bound through the default step (`eval` + copy): the reference path."""
    for name in supported_ops():
        kernel_class = type(get_kernel(name))
        if kernel_class.bind is not Kernel.bind:
            monkeypatch.setattr(kernel_class, "bind", Kernel.bind)


@pytest.fixture
def generic_steps(monkeypatch):
    use_generic_steps(monkeypatch)


def _inputs(interp: Interpreter, rows: int, seed: int = 0) -> np.ndarray:
    d = interp.get_input_details()[0]
    return np.random.default_rng(seed).integers(-128, 128, size=(rows, *d["shape"][1:])).astype(d["dtype"])


def _golden(raw: bytes, x: np.ndarray) -> np.ndarray:
    tflm = tflm_interpreter(raw)
    outs = []
    for row in x:
        tflm.set_input(row[None], 0)
        tflm.invoke()
        outs.append(tflm.get_output(0).copy())
    return np.concatenate(outs)


def _ours(raw: bytes, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row by row at batch 1, one batched run) through the interpreter."""
    one = Interpreter(model_content=raw)
    per_row = np.concatenate([one.run(row[None])[0] for row in x])
    batched = Interpreter(model_content=raw).run(x)[0]
    return per_row, batched


@pytest.mark.parametrize("label", STATELESS)
def test_bound_plan_is_bit_exact_per_row_and_batched(label: str) -> None:
    raw = CASES[label].read_bytes()
    x = _inputs(Interpreter(model_content=raw), ROWS.get(label, 9))
    golden = _golden(raw, x)
    per_row, batched = _ours(raw, x)
    np.testing.assert_array_equal(per_row, golden)
    np.testing.assert_array_equal(batched.reshape(golden.shape), golden)


@pytest.mark.parametrize("label", STATELESS)
def test_generic_eval_steps_give_the_same_bits(label: str, generic_steps) -> None:
    raw = CASES[label].read_bytes()
    x = _inputs(Interpreter(model_content=raw), ROWS.get(label, 9), seed=1)
    interp = Interpreter(model_content=raw)
    interp.allocate_tensors()
    assert not any("bind" in getattr(step, "__qualname__", "") for step in interp._main.steps)  # really generic
    golden = _golden(raw, x)
    per_row, batched = _ours(raw, x)
    np.testing.assert_array_equal(per_row, golden)
    np.testing.assert_array_equal(batched.reshape(golden.shape), golden)


def test_hot_kernels_really_bind_their_own_steps() -> None:
    interp = Interpreter(model_path=CASES["converted/mobilenet"])
    interp.allocate_tensors()
    bound = {op.name: getattr(op.step, "__qualname__", "") for op in interp._main.ops}
    for name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX"):
        assert any(kind in bound[name] for kind in (".bind.", "._frozen_step.", "._shifted_step.")), (name, bound[name])
    assert "SumLookup" in bound["MEAN"]
    assert bound["SUB"].startswith(("pair_lookup_step", "_single_operand_step"))


def test_streaming_frames_through_the_plan_and_the_generic_steps_match_tflite_micro(monkeypatch) -> None:
    raw = CASES["streaming/kws_stream"].read_bytes()
    frames = _inputs(Interpreter(model_content=raw), 12, seed=2)
    golden = _golden(raw, frames)  # one TFLM interpreter: its state carries frame to frame
    planned = Interpreter(model_content=raw)
    ours = np.concatenate([planned.run(f[None])[0] for f in frames])
    use_generic_steps(monkeypatch)
    generic = Interpreter(model_content=raw)
    theirs = np.concatenate([generic.run(f[None])[0] for f in frames])
    np.testing.assert_array_equal(ours, golden)
    np.testing.assert_array_equal(theirs, golden)


def _blas_threads() -> int:
    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def _invoke_under_two_blas_threads(interp: Interpreter) -> tuple[int, int, int]:
    """Invoke with the process's BLAS set to 2 threads: (before, as the plan's first step saw
    it, after)."""
    seen: list[int] = []
    first = interp._main.steps[0]

    def spy() -> None:  # what BLAS is set to while the plan runs
        seen.append(_blas_threads())
        first()

    interp._main.steps = (spy, *interp._main.steps[1:])
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        interp.invoke()
        after = _blas_threads()
    interp._main.steps = (first, *interp._main.steps[1:])
    (during,) = seen
    return before, during, after


def _dense_mlp(rows: int, threads: int | None = None) -> Interpreter:
    interp = Interpreter(model_path=CASES["keras/dense_mlp"], num_threads=threads)
    index = interp.get_input_details()[0]["index"]
    interp.resize_tensor_input(index, (rows, int(interp.get_input_details()[0]["shape"][1])))
    interp.allocate_tensors()
    return interp


@pytest.mark.parametrize("threads, expected", [(None, 1), (1, 1), (2, 2)])
def test_num_threads_caps_blas_threads_while_invoking_and_restores_them(threads, expected) -> None:
    # 512 rows: the first layer's product (512 x 20 x 32) is one OpenBLAS would spread over
    # threads (above 4 * 65536 multiply-adds).
    interp = _dense_mlp(512, threads)
    assert interp._main.ops[0].prepared.matmul == (512, 20, 32)
    before, during, after = _invoke_under_two_blas_threads(interp)
    assert during == min(expected, before) and after == before
    assert interp.num_threads == (threads or 1)


def test_a_plan_of_single_threaded_products_leaves_the_blas_threads_alone() -> None:
    # 64 rows: every product (at most 64 x 20 x 32) is below OpenBLAS's threading limits, so
    # the invoke skips the cap (a few microseconds) and BLAS keeps what the process set.
    from tinyswap.threads import blas_may_thread

    interp = _dense_mlp(64)
    shapes = [op.prepared.matmul for op in interp._main.ops]
    assert shapes == [(64, 20, 32), (64, 32, 16), (64, 16, 5), (0, 0, 0)]
    assert not any(blas_may_thread(*shape) for shape in shapes)
    before, during, _ = _invoke_under_two_blas_threads(interp)
    assert during == before
    # Resized to 512 rows, the same model's plan is capped again.
    interp.resize_tensor_input(interp.get_input_details()[0]["index"], (512, 20))
    interp.allocate_tensors()
    _, during, _ = _invoke_under_two_blas_threads(interp)
    assert during == 1


def test_a_failing_step_is_named_and_the_blas_threads_still_come_back() -> None:
    interp = _dense_mlp(512)

    def broken() -> None:
        raise ValueError("boom")

    interp._main.steps = (*interp._main.steps[:2], broken, *interp._main.steps[3:])
    from tinyswap.errors import KernelError

    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        with pytest.raises(KernelError, match=r"operator 2 \(FULLY_CONNECTED\) failed: ValueError\('boom'\)"):
            interp.invoke()
        assert _blas_threads() == before


def test_past_the_plan_budget_kernels_bind_their_eval_step_with_the_same_bits(monkeypatch) -> None:
    import tinyswap.interpreter as interpreter_module
    from tinyswap.kernels.base import PlanBudget, plan_budget

    monkeypatch.setattr(interpreter_module, "plan_budget", lambda: plan_budget(PlanBudget(0, 0)))
    raw = CASES["converted/mobilenet"].read_bytes()
    interp = Interpreter(model_content=raw)
    interp.allocate_tensors()
    bound = {op.name: getattr(op.step, "__qualname__", "") for op in interp._main.ops}
    # No scratch buffers, no new tables: convolutions and SUB run their plain eval (tables
    # built earlier in this process are shared and cost nothing, so SUB may still gather).
    assert all(bound[name].startswith("eval_step") for name in ("CONV_2D", "DEPTHWISE_CONV_2D"))
    x = _inputs(interp, 3, seed=4)
    np.testing.assert_array_equal(np.concatenate([interp.run(r[None])[0] for r in x]), _golden(raw, x))


def test_mutable_ranges_keep_slot_bytes_live_and_fold_the_rest() -> None:
    # A writable model whose second layer's weights may change (as a slot's do): after those
    # bytes are rewritten in place, the invoke equals TFLM on the rewritten model; a constant
    # outside the ranges is copied once, so later writes to it are not seen (the contract).
    raw = CASES["keras/dense_mlp"].read_bytes()
    probe = Interpreter(model_content=raw)
    model = probe.model
    weights = [model.main.tensors[op.inputs[1]] for op in model.main.operators[:2]]
    first, second = (model.buffers[t.buffer] for t in weights)
    image = bytearray(raw)
    interp = Interpreter(model_content=image, mutable_ranges=[(second.offset, second.length)])
    x = _inputs(interp, 1, seed=4)
    np.testing.assert_array_equal(interp.run(x)[0], _golden(raw, x))
    rng = np.random.default_rng(5)
    image[second.offset: second.offset + second.length] = rng.integers(-127, 128, second.length,
                                                                      dtype=np.int8).tobytes()
    np.testing.assert_array_equal(interp.run(x)[0], _golden(bytes(image), x))
    folded = interp.run(x)[0]
    image[first.offset: first.offset + first.length] = bytes(first.length)  # outside: not seen
    np.testing.assert_array_equal(interp.run(x)[0], folded)
