"""Plan steps of the operators that only move bytes (RESHAPE, SQUEEZE, EXPAND_DIMS,
CONCATENATION, PACK, STRIDED_SLICE, RESIZE_NEAREST_NEIGHBOR): the source views, the output's
destination views and the gather indices are fixed at bind, so an invoke is one copy or one
gather per input, and nothing is allocated.

A source may be a constant, a live view into the model buffer: the steps read it at every
invoke, so bytes patched into the buffer between invokes are copied like any activation.
Each builder returns None when its view cannot be fixed (a source that would need a copy to
take the shape), and the kernel then keeps its generic step.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tinyswap.kernels.base import Kernel, Prepared, Step


def fixed_view(x: np.ndarray, shape: Sequence[int]) -> np.ndarray | None:
    """`x` under `shape` as a view of the same memory, or None when that needs a copy."""
    view = x.view()
    try:
        view.shape = tuple(shape)
    except AttributeError:  # NumPy's "incompatible shape for in-place modification"
        return None
    return view


def copy_step(x: np.ndarray, out: np.ndarray) -> Step | None:
    """RESHAPE and its kin: the input's bytes into the output under the output's shape."""
    source = fixed_view(x, out.shape)
    if source is None or source.dtype != out.dtype:
        return None
    return lambda: np.copyto(out, source)


def concatenation_step(inputs: Sequence[np.ndarray], out: np.ndarray, axis: int) -> Step:
    """Each input into its slab of the output along `axis`. Below the axis every input is a run
    of whole rows, so each slab is copied as [outer] items of one row's bytes (a void type):
    one item per row, where an int8 copy into the slab would step one byte at a time through
    short runs (four channels of eight)."""
    outer = int(np.prod(out.shape[:axis], dtype=np.int64))
    rows = fixed_view(out, (outer, out.size // outer if outer else 0))
    pairs = []
    start = 0
    for x in inputs:
        stop = start + x.shape[axis]
        slab = out[(slice(None),) * axis + (slice(start, stop),)]
        source = fixed_view(x, (outer, x.size // outer if outer else 0))
        if rows is not None and source is not None and x.size:
            width = source.shape[1]
            item = np.dtype((np.void, width * x.dtype.itemsize))
            offset = start * (rows.shape[1] // out.shape[axis])
            pairs.append((rows[:, offset: offset + width].view(item), source.view(item)))
        else:
            pairs.append((slab, x))
        start = stop
    return _copies(pairs)


def pack_step(inputs: Sequence[np.ndarray], out: np.ndarray, axis: int) -> Step:
    """Input i into the output's index i along the new `axis` (a slice squeezed, so that even a
    scalar input's destination is a view, not a copy)."""
    return _copies([(np.squeeze(out[(slice(None),) * axis + (slice(i, i + 1),)], axis=axis), x)
                    for i, x in enumerate(inputs)])


def _copies(pairs: list[tuple[np.ndarray, np.ndarray]]) -> Step:
    if len(pairs) == 1:
        (destination, source), = pairs
        return lambda: np.copyto(destination, source)

    def step() -> None:
        for destination, source in pairs:
            np.copyto(destination, source)

    return step


def gather_step(x: np.ndarray, flat_index: np.ndarray, out: np.ndarray) -> Step | None:
    """`out` (flattened) = `x` (flattened) at `flat_index`: one `take` per invoke."""
    source, destination = fixed_view(x, (x.size,)), fixed_view(out, (out.size,))
    if source is None or destination is None:
        return None
    index = np.ascontiguousarray(flat_index, dtype=np.intp).reshape(-1)
    if index.size != out.size:
        raise ValueError(f"a gather of {index.size} indices cannot fill {out.size} outputs")
    return lambda: np.take(source, index, out=destination, mode="clip")  # "raise" would buffer


def rows_gather_step(x: np.ndarray, positions: np.ndarray, out: np.ndarray) -> Step | None:
    """NHWC: output pixel p of every image and channel = input pixel `positions[p]` (flat
    row * width + column); one `take` along the pixel axis per invoke."""
    b, h, w, c = x.shape
    source = fixed_view(x, (b, h * w, c))
    destination = fixed_view(out, (out.shape[0], out.shape[1] * out.shape[2], out.shape[3]))
    if source is None or destination is None:
        return None
    index = np.ascontiguousarray(positions, dtype=np.intp).reshape(-1)
    return lambda: np.take(source, index, axis=1, out=destination, mode="clip")


class ByteCopyKernel(Kernel):
    """An operator whose output is its first input's bytes under another shape (RESHAPE,
    SQUEEZE, EXPAND_DIMS): bound as one copy."""

    def bind(self, prepared: Prepared, inputs: list[np.ndarray | None], outputs: list[np.ndarray]) -> Step:
        step = copy_step(inputs[0], outputs[0]) if inputs[0] is not None else None
        return super().bind(prepared, inputs, outputs) if step is None else step
