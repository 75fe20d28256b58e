"""The byte-moving plan steps against NumPy's own concatenate / stack / fancy indexing, with
sources that are live views (bytes written between two invokes are the ones copied)."""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.copy_steps import (
    concatenation_step,
    copy_step,
    fixed_view,
    gather_step,
    pack_step,
    rows_gather_step,
)

RNG = np.random.default_rng(7)


def _int8(*shape: int) -> np.ndarray:
    return RNG.integers(-128, 128, shape).astype(np.int8)


def test_copy_step_reads_its_source_at_every_invoke() -> None:
    buffer = bytearray(24)
    x = np.frombuffer(buffer, np.int8).reshape(2, 3, 4)  # a constant's live view into a model buffer
    out = np.empty((6, 4), np.int8)
    step = copy_step(x, out)
    buffer[:] = bytes(range(24))
    step()
    np.testing.assert_array_equal(out, np.arange(24).reshape(6, 4))
    buffer[5] = 99  # patched in place between two invokes
    step()
    assert out[1, 1] == 99


def test_a_source_that_needs_a_copy_to_take_the_shape_gets_no_fixed_view() -> None:
    x = _int8(4, 6)[:, :3]  # rows 6 apart: flattening it needs a copy
    assert fixed_view(x, (12,)) is None and copy_step(x, np.empty(12, np.int8)) is None
    assert fixed_view(x, (4, 3)) is not None


def test_concatenation_and_pack_match_numpy_on_every_axis() -> None:
    for axis in range(3):
        parts = [_int8(*[2 + (i if a == axis else 0) for a in range(3)]) for i in range(3)]
        out = np.empty(np.concatenate(parts, axis=axis).shape, np.int8)
        concatenation_step(parts, out, axis)()
        np.testing.assert_array_equal(out, np.concatenate(parts, axis=axis))
        same = [_int8(2, 3, 4) for _ in range(3)]
        packed = np.empty(np.stack(same, axis=axis).shape, np.int8)
        pack_step(same, packed, axis)()
        np.testing.assert_array_equal(packed, np.stack(same, axis=axis))
    scalars = [np.array(5, np.int32), np.array(-7, np.int32)]  # PACK of two scalars (a shape vector)
    vector = np.zeros(2, np.int32)
    step = pack_step(scalars, vector, 0)
    step()
    np.testing.assert_array_equal(vector, [5, -7])
    scalars[1][...] = 3  # the destinations are views: a new value is copied on the next invoke
    step()
    np.testing.assert_array_equal(vector, [5, 3])


def test_gathers_match_fancy_indexing() -> None:
    x = _int8(3, 5, 7)
    mesh = np.ix_([0, 2], [4, 1, 1], [6, 0])
    out = np.empty((2, 3, 2), np.int8)
    gather_step(x, np.ravel_multi_index(np.broadcast_arrays(*mesh), x.shape), out)()
    np.testing.assert_array_equal(out, x[mesh])
    image = _int8(2, 4, 5, 3)
    rows, cols = np.array([0, 0, 1, 3, 3, 2]), np.array([4, 0, 2])
    resized = np.empty((2, 6, 3, 3), np.int8)
    rows_gather_step(image, rows[:, None] * 5 + cols[None, :], resized)()
    np.testing.assert_array_equal(resized, image[:, rows][:, :, cols])
