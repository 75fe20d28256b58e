"""AVERAGE_POOL_2D: the mean of the in-image taps (TFLM reference `integer_ops/pooling.h`).

Int8: the int32 sum is divided by the tap count rounding half away from zero,
`acc > 0 ? (acc + n/2) / n : (acc - n/2) / n` in C's truncating division, then clamped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import Kernel, Prepared, PrepareContext, frozen_array
from tinyswap.kernels.conv_common import in_bounds_counts, patches
from tinyswap.kernels.pooling import Pool2DParams, prepare_pool
from tinyswap.kernels.registry import register


@dataclass(frozen=True, eq=False)
class AveragePool2DParams:
    pool: Pool2DParams
    tap_counts: np.ndarray  # [1, out_h, out_w, 1] in-image taps per output position (read-only)


@register
class AveragePool2D(Kernel[AveragePool2DParams]):
    op_name = "AVERAGE_POOL_2D"

    def prepare(self, ctx: PrepareContext) -> Prepared[AveragePool2DParams]:
        shape, pool = prepare_pool(ctx)
        counts = in_bounds_counts(pool.in_height, pool.in_width, pool.window)
        if counts.min() == 0:
            raise ctx.error("an output position has no input tap (TFLM fails on it)")
        return Prepared([shape], AveragePool2DParams(pool, frozen_array(counts[None, :, :, None])))

    def eval(self, prepared: Prepared[AveragePool2DParams], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params.pool
        x = inputs[0]
        n = prepared.params.tap_counts
        lo, hi = p.act_min, p.act_max
        if p.is_float:
            total = patches(x.astype(np.float32), p.window, 0).sum(axis=(3, 4), dtype=np.float32)
            return [np.clip(total / n.astype(np.float32), lo, hi).astype(np.float32)]
        acc = patches(x.astype(np.int64), p.window, 0).sum(axis=(3, 4))
        half = n // 2
        avg = np.where(acc > 0, (acc + half) // n, -((half - acc) // n))
        return [np.clip(avg, lo, hi).astype(np.int8)]
