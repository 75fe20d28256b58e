"""The int8 table steps of the elementwise ops against the tables' own `apply` (itself checked
against TFLite Micro through the ADD, SUB, MUL and activation tests), over broadcasting shapes
and with an operand patched in place between invokes."""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap.kernels.base import PlanBudget, plan_budget
from tinyswap.kernels.elementwise import bit_pattern_lookup_step, pair_lookup_step
from tinyswap.kernels.quantized import Int8Lookup, Int8PairLookup

RNG = np.random.default_rng(11)
# Not symmetric in its operands, so a swapped index order would show.
PAIRS = Int8PairLookup.of(lambda a, b: np.clip(a.astype(np.int64) * 3 - b // 2 + 5, -128, 127))


def _int8(shape: tuple[int, ...]) -> np.ndarray:
    return RNG.integers(-128, 128, shape).astype(np.int8)


@pytest.mark.parametrize("a_shape, b_shape", [((1, 16), (16,)), ((2, 3, 1), ()), ((4, 1, 5), (1, 6, 1)),
                                              ((), ()), ((8, 8, 1), (1, 1, 1)), ((1, 1), (4, 5))])
def test_pair_lookup_step_matches_apply_when_inputs_broadcast(a_shape, b_shape) -> None:
    a, b = _int8(a_shape), _int8(b_shape)
    out = np.empty(np.broadcast_shapes(a_shape, b_shape), np.int8)
    step = pair_lookup_step(PAIRS, a, b, out)
    step()
    want = PAIRS.apply(*np.broadcast_arrays(a, b))
    np.testing.assert_array_equal(out, want)
    b[...] = _int8(b_shape)  # a constant operand patched in place between invokes
    step()
    np.testing.assert_array_equal(out, PAIRS.apply(*np.broadcast_arrays(a, b)))


def test_pair_lookup_step_over_every_pair_and_past_the_buffer_budget() -> None:
    a = np.repeat(np.arange(-128, 128, dtype=np.int8), 256)
    b = np.tile(np.arange(-128, 128, dtype=np.int8), 256)
    want = PAIRS.apply(a, b)
    for budget in (PlanBudget(), PlanBudget(buffer_bytes=100)):  # the second binds the table's own step
        out = np.empty_like(a)
        with plan_budget(budget):
            pair_lookup_step(PAIRS, a, b, out)()
        np.testing.assert_array_equal(out, want)


def test_bit_pattern_lookup_step_matches_apply_on_every_value() -> None:
    lookup = Int8Lookup.of(lambda x: (x.astype(np.int64) * 7 + 3) % 251 - 125)
    x = np.arange(-128, 128, dtype=np.int8).reshape(16, 16)
    out = np.empty_like(x)
    bit_pattern_lookup_step(lookup.by_bit_pattern(), x, out)()
    np.testing.assert_array_equal(out, lookup.apply(x))
