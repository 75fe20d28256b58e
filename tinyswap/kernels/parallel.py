"""Intra-op parallelism over the batch dimension (the `num_threads` of `tf.lite.Interpreter`).

Rows of a batch are independent inside one convolution or matrix product, so a kernel may
compute contiguous batch slices concurrently; NumPy releases the GIL inside its loops and BLAS,
so two threads use two cores. Results are identical for any thread count (integer arithmetic,
no reductions across slices).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

_POOLS: dict[int, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    with _LOCK:
        if threads not in _POOLS:
            _POOLS[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tinyswap")
        return _POOLS[threads]


# Work on about this many output values at a time: temporaries of a slice stay in cache and in
# malloc's reuse lists instead of fresh page-faulted mappings per operation, while slices stay
# big enough that per-call Python overhead is small. Measured on person_detect at batch 64:
# 2**15 -> 144 ms, 2**16 -> 119, 2**17 -> 108, 2**18 -> 106, 2**19 -> 111; one slice per
# layer was ~210 ms.
TARGET_SLICE_VALUES = 1 << 18


def map_batches(fn: Callable[[slice], np.ndarray], batch: int, threads: int, values_per_row: int) -> np.ndarray:
    """fn(rows) over contiguous slices of [0, batch), concatenated along axis 0.

    Slices hold about TARGET_SLICE_VALUES output values; with threads > 1 they run
    concurrently on a shared pool (NumPy and BLAS release the GIL).
    """
    rows = max(1, TARGET_SLICE_VALUES // max(values_per_row, 1))
    slices = [slice(a, min(a + rows, batch)) for a in range(0, batch, rows)]
    if len(slices) == 1:
        return fn(slices[0])
    parts = min(threads, len(slices))
    if parts <= 1:
        return np.concatenate([fn(s) for s in slices])

    # Each thread takes a contiguous run of slices: long stretches of NumPy work per thread
    # keep GIL hand-offs rare (one task per slice measured no faster than one thread).
    def run(group: list[slice]) -> np.ndarray:
        return np.concatenate([fn(s) for s in group])

    bounds = np.linspace(0, len(slices), parts + 1).astype(int)
    groups = [slices[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    return np.concatenate(list(_pool(parts).map(run, groups)))
