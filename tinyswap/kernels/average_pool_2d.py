"""AVERAGE_POOL_2D: the mean of the in-image taps (TFLM reference `integer_ops/pooling.h`).

Int8: the int32 sum is divided by the tap count rounding half away from zero,
`acc > 0 ? (acc + n/2) / n : (acc - n/2) / n` in C's truncating division, then clamped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import INT8, INT32, Kernel, Prepared, PrepareContext, Step, frozen_array
from tinyswap.kernels.conv_common import PlannedInput
from tinyswap.kernels.pooling import Pool2DParams, WindowTaps, prepare_pool, sum_float_in_order, sum_int, tap_counts
from tinyswap.kernels.registry import register
from tinyswap.kernels.sum_tables import SumLookup


@dataclass(frozen=True, eq=False)
class AveragePool2DParams:
    pool: Pool2DParams
    tap_counts: np.ndarray  # [1, out_h, out_w, 1] in-image taps per output position (read-only)


@register
class AveragePool2D(Kernel[AveragePool2DParams]):
    op_name = "AVERAGE_POOL_2D"

    def prepare(self, ctx: PrepareContext) -> Prepared[AveragePool2DParams]:
        shape, pool = prepare_pool(ctx, taps_in_order=True)  # refuses windows without taps
        counts = tap_counts(pool)
        return Prepared([shape], AveragePool2DParams(pool, frozen_array(counts[None, :, :, None])))

    def eval(self, prepared: Prepared[AveragePool2DParams], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params.pool
        x = inputs[0]
        n = prepared.params.tap_counts
        lo, hi = p.act_min, p.act_max
        if p.is_float:
            total = sum_float_in_order(x.astype(np.float32, copy=False), p)
            return [np.clip(total / n.astype(np.float32), lo, hi).astype(np.float32)]
        return [np.clip(rounded_average(sum_int(x, p), n), lo, hi).astype(np.int8)]

    def bind(self, prepared: Prepared[AveragePool2DParams], inputs: list[np.ndarray | None],
             outputs: list[np.ndarray]) -> Step:
        """int8: each window's sum over its in-image taps (the input's own sum for a global
        average; else over a zero border, which adds nothing), then the rounded division by
        the tap count and the clamp by a table of every possible sum (`SumLookup`); past the
        table's bound, computed with the passes of `eval`."""
        p = prepared.params.pool
        n = prepared.params.tap_counts
        x, out = inputs[0], outputs[0]
        if x.dtype != INT8:
            return super().bind(prepared, inputs, outputs)
        w = p.window
        lookup = SumLookup.of(
            n, lambda sums, taps: np.clip(rounded_average(sums, np.int64(taps)), p.act_min, p.act_max))
        acc = np.empty(out.shape, np.intp)
        whole_image = w.out_h == w.out_w == 1 and int(n.reshape(-1)[0]) == p.in_height * p.in_width
        if lookup is not None and whole_image:
            step = lookup.step(lambda acc: np.add.reduce(x, axis=(1, 2), dtype=np.intp, out=acc, keepdims=True),
                               acc, n, out)
            if step is not None:
                return step
        windows = WindowTaps.of(x, w, 0) if lookup is not None else None
        if windows is not None:
            step = lookup.step(_tap_sums(windows), acc, n, out)
            if step is not None:
                return step
        planned = PlannedInput.of(x, w, INT32, 0)
        if planned is None:
            return super().bind(prepared, inputs, outputs)

        def step() -> None:
            planned.fill()
            avg = rounded_average(planned.windows.sum(axis=(3, 4), dtype=np.int64), n)
            np.copyto(out, np.clip(avg, p.act_min, p.act_max), casting="unsafe")

        return step


def _tap_sums(windows: WindowTaps):
    """A reduction for `SumLookup.step`: the taps added one by one into the int sums (a zero
    border adds nothing)."""
    taps, fill = windows.taps, windows.fill

    def reduce(acc: np.ndarray) -> None:
        if fill is not None:
            fill()
        np.copyto(acc, taps[0])
        for tap in taps[1:]:
            np.add(acc, tap, out=acc)

    return reduce


def rounded_average(acc: np.ndarray, n: np.ndarray) -> np.ndarray:
    """TFLM's int8 average: acc / n rounded half away from zero, in C's truncating division."""
    half = n // 2
    return np.where(acc > 0, (acc + half) // n, -((half - acc) // n))
