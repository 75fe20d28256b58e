"""Int8 results of int8 sums by table: MEAN and AVERAGE_POOL_2D after their reduction.

Why: both ops reduce n int8 values to one int sum and then map it to int8 (MEAN by a fixed-point
requantization, AVERAGE_POOL_2D by a rounded division and a clamp), and that map costs five
to ten NumPy passes per invoke. But the sum of n int8 values is one of only 255 * n + 1
integers, so the map is tabulated at bind by running the kernel's own arithmetic once on every
possible sum, and an invoke is the reduction plus one gather. The table depends only on
quantization parameters and window shapes, never on constant bytes.

Each tap count n gets a segment laid out so that the sum s itself is the index modulo the
segment's length (s >= 0 at the start, s < 0 wrapped to the end): with one count (a global
average, a MEAN) the gather takes the sum as it is, in "wrap" mode; with several (a padded
pooling window near the border) each position adds its segment's start first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinyswap.kernels.base import Step, claim_buffer_bytes
from tinyswap.kernels.copy_steps import fixed_view

# Table entries per op at most (64 KB of int8): tap counts up to 257 with a single count.
MAX_TABLE_ENTRIES = 1 << 16


@dataclass(frozen=True, eq=False)
class SumLookup:
    """`fn(sum, n)` for every possible sum of n int8 values, for each tap count n in use."""

    table: np.ndarray  # int8, the segments end to end
    starts: dict[int, int]  # tap count -> its segment's first index
    sizes: dict[int, int]  # tap count -> its segment's length (255 * n + 1)

    @classmethod
    def of(cls, counts: np.ndarray, fn: Callable[[np.ndarray, int], np.ndarray]) -> "SumLookup | None":
        """None past MAX_TABLE_ENTRIES or the plan's buffer budget (the caller keeps its passes)."""
        distinct = sorted({int(n) for n in np.asarray(counts).reshape(-1)})
        total = sum(255 * n + 1 for n in distinct)
        if not distinct or distinct[0] < 1 or total > MAX_TABLE_ENTRIES or not claim_buffer_bytes(total):
            return None
        segments, starts, sizes, start = [], {}, {}, 0
        for n in distinct:
            sums = np.concatenate([np.arange(0, 127 * n + 1), np.arange(-128 * n, 0)]).astype(np.int64)
            values = np.asarray(fn(sums, n)).reshape(-1)
            if values.shape != sums.shape or values.min() < -128 or values.max() > 127:
                raise ValueError("a sum lookup needs one int8 result per possible sum")
            segments.append(values.astype(np.int8))
            starts[n], sizes[n], start = start, len(sums), start + len(sums)
        return cls(np.concatenate(segments), starts, sizes)

    def step(self, reduce: Callable[[np.ndarray], None], acc: np.ndarray, counts: np.ndarray,
             out: np.ndarray) -> Step | None:
        """The plan step: `reduce(acc)` writes the int sums into `acc` (intp, shaped like `out`
        or broadcasting `counts` against it), then one gather into `out`. None when `out` has
        no view of `acc`'s shape."""
        destination = fixed_view(out, acc.shape)
        if destination is None:
            return None
        table = self.table
        if len(self.starts) == 1:  # one segment: the sum is its own index, modulo the length
            def uniform() -> None:
                reduce(acc)
                np.take(table, acc, out=destination, mode="wrap")

            return uniform
        # Per position: the segment's start, and its length where the sum is negative. Folded
        # as start + 128 * n + s into a table re-laid in value order (-128n first) per segment.
        ordered = np.concatenate([np.roll(self.table[self.starts[n]: self.starts[n] + self.sizes[n]], 128 * n)
                                  for n in sorted(self.starts)])
        bases = np.vectorize(lambda n: self.starts[int(n)] + 128 * int(n), otypes=[np.intp])(counts)

        def mixed() -> None:
            reduce(acc)
            np.add(acc, bases, out=acc)
            np.take(ordered, acc, out=destination, mode="clip")  # every index is in range

        return mixed
