"""The operator registry resolves names to kernels that compute the right thing, and refuses
unknown names with a typed error that lists what is supported."""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap.errors import UnsupportedOpError
from tinyswap.kernels.add import Add
from tinyswap.kernels.base import Kernel
from tinyswap.kernels.registry import get_kernel, register, supported_ops
from tinyswap.kernels.sub import Sub

from tests.op_cases import prepare, run_kernel, spec

README_OPS = {
    "FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "SUB", "MUL", "RELU", "RELU6", "SOFTMAX",
    "AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "RESHAPE", "CONCATENATION", "QUANTIZE", "DEQUANTIZE", "SQUEEZE",
    "EXPAND_DIMS", "SHAPE", "STRIDED_SLICE", "PACK", "PAD", "PADV2", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND",
    "LOGISTIC", "TANH", "LEAKY_RELU", "HARD_SWISH", "MAXIMUM", "MINIMUM", "TRANSPOSE", "RESIZE_NEAREST_NEIGHBOR",
    "GREATER",
}


def test_every_documented_operator_resolves_to_its_own_kernel() -> None:
    assert set(supported_ops()) == README_OPS
    for name in README_OPS:
        assert get_kernel(name).op_name == name


def test_resolved_add_and_sub_compute_a_hand_golden() -> None:
    # Equal scales 0.5 everywhere, zero points 0: out = a + b (ADD), a - b (SUB), clamped.
    # 100 + 50 = 150 saturates at 127; -100 - 50 = -150 at -128.
    a, b, y = spec(0, (3,), np.int8, 0.5), spec(1, (3,), np.int8, 0.5), spec(2, (3,), np.int8, 0.5)
    x1, x2 = np.array([1, 100, -100], np.int8), np.array([2, 50, 50], np.int8)
    add = prepare("ADD", [a, b], [y], {"fused_activation_function": 0})
    sub = prepare("SUB", [a, b], [y], {"fused_activation_function": 0})
    assert isinstance(get_kernel("ADD"), Add) and isinstance(get_kernel("SUB"), Sub)
    np.testing.assert_array_equal(run_kernel("ADD", add, x1, x2)[0], [3, 127, -50])
    np.testing.assert_array_equal(run_kernel("SUB", sub, x1, x2)[0], [-1, 50, -128])


def test_unknown_operator_is_a_typed_refusal_naming_it_and_the_supported_ones() -> None:
    with pytest.raises(UnsupportedOpError, match=r"operator 3 \(LSTM\): operator LSTM is not supported; supported: ADD"):
        get_kernel("LSTM", "operator 3 (LSTM)")


def test_a_second_kernel_for_one_operator_is_refused() -> None:
    class AnotherAdd(Kernel):
        op_name = "ADD"

        def prepare(self, ctx):  # pragma: no cover - never registered
            raise AssertionError

        def eval(self, prepared, inputs):  # pragma: no cover
            raise AssertionError

    with pytest.raises(RuntimeError, match="two kernels registered for ADD"):
        register(AnotherAdd)
    assert isinstance(get_kernel("ADD"), Add)
