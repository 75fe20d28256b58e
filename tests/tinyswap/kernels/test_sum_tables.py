"""Sum tables (MEAN, AVERAGE_POOL_2D): every possible sum against the function tabulated, and
the bound ops against TFLite Micro with sums at both ends of their range."""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap import Interpreter
from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap.kernels.average_pool_2d import rounded_average
from tinyswap.kernels.base import PlanBudget, plan_budget
from tinyswap.kernels.sum_tables import MAX_TABLE_ENTRIES, SumLookup
from tinyswap.oracles import run_tflm


def _average(sums: np.ndarray, n: int) -> np.ndarray:
    return np.clip(rounded_average(sums, np.int64(n)), -100, 127)  # a clamp that bites at one end


def _set(values: np.ndarray):
    def reduce(acc: np.ndarray) -> None:
        acc[...] = values

    return reduce


def test_one_count_maps_every_sum_through_the_wrapped_table() -> None:
    sums = np.arange(-128 * 9, 127 * 9 + 1)
    lookup = SumLookup.of(np.array([9]), _average)
    acc, out = np.empty(sums.shape, np.intp), np.empty(sums.shape, np.int8)
    lookup.step(_set(sums), acc, np.array(9), out)()
    np.testing.assert_array_equal(out, _average(sums, 9))


def test_mixed_counts_map_every_sum_of_each_position() -> None:
    counts = np.array([[4, 6, 4], [6, 9, 6]])
    lookup = SumLookup.of(counts, _average)
    for s in (-128, -127, -1, 0, 1, 126, 127):  # per-tap values: sums at both ends and around zero
        sums = counts * s + np.array([[0, 1, 0], [-1, 2, 3]]) * (abs(s) < 127)
        acc, out = np.empty(counts.shape, np.intp), np.empty(counts.shape, np.int8)
        lookup.step(_set(sums), acc, counts, out)()
        np.testing.assert_array_equal(out, [[_average(sums[i, j], counts[i, j]) for j in range(3)] for i in range(2)])


def test_tables_past_the_bound_or_the_budget_are_not_built() -> None:
    assert SumLookup.of(np.array([MAX_TABLE_ENTRIES // 255 + 1]), _average) is None
    with plan_budget(PlanBudget(buffer_bytes=100)):
        assert SumLookup.of(np.array([9]), _average) is None


def _extreme_inputs(shape: tuple[int, ...], seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).integers(-128, 128, shape).astype(np.int8)
    x[0] = -128  # the smallest sum
    x[1] = 127  # the largest
    return x


@pytest.mark.parametrize("padding, filt, stride, size", [(1, 3, 1, (3, 3)), (0, 3, 1, (4, 5)), (0, 2, 2, (5, 5))])
def test_average_pool_sums_at_both_ends_match_tflite_micro(padding, filt, stride, size) -> None:
    """A global average (VALID over the whole image) and SAME windows with several tap counts,
    at batch 3, rows of all -128 and all 127 included."""
    h, w = size
    if padding == 1:  # VALID
        oh, ow = (h - filt) // stride + 1, (w - filt) // stride + 1
    else:
        oh, ow = -(-h // stride), -(-w // stride)
    q = Quant(0.05, -3)
    x = Tensor("x", (3, h, w, 5), np.int8, quant=q)
    y = Tensor("y", (3, oh, ow, 5), np.int8, quant=q)
    opts = {"padding": padding, "stride_w": stride, "stride_h": stride, "filter_width": filt, "filter_height": filt,
            "fused_activation_function": 1}
    model = build_model(Model([Operator("AVERAGE_POOL_2D", [x], [y], opts)], [x], [y]))
    data = _extreme_inputs((3, h, w, 5), filt)
    interp = Interpreter(model_content=model)
    ours = interp.run(data)[0]
    assert any("SumLookup" in getattr(op.step, "__qualname__", "") for op in interp._main.ops)
    np.testing.assert_array_equal(ours, run_tflm(model, [data])[0])


@pytest.mark.parametrize("keep_dims", [False, True])
@pytest.mark.parametrize("x_quant, y_quant", [(Quant(0.02, 5), Quant(0.05, -7)), (Quant(0.1, -128), Quant(0.01, 127))])
def test_mean_sums_at_both_ends_match_tflite_micro(keep_dims, x_quant, y_quant) -> None:
    x = Tensor("x", (4, 6, 6, 3), np.int8, quant=x_quant)
    y = Tensor("y", (4, 1, 1, 3) if keep_dims else (4, 3), np.int8, quant=y_quant)
    axes = Tensor("axes", (2,), np.int32, data=np.array([1, 2], np.int32))
    model = build_model(Model([Operator("MEAN", [x, axes], [y], {"keep_dims": keep_dims})], [x], [y]))
    data = _extreme_inputs((4, 6, 6, 3), 1)
    interp = Interpreter(model_content=model)
    ours = interp.run(data)[0]
    assert any("SumLookup" in getattr(op.step, "__qualname__", "") for op in interp._main.ops)
    np.testing.assert_array_equal(ours, run_tflm(model, [data])[0])
