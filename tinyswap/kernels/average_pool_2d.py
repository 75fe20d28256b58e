"""AVERAGE_POOL_2D: the mean of the in-image taps (TFLM reference `integer_ops/pooling.h`).

Int8: the int32 sum is divided by the tap count rounding half away from zero,
`acc > 0 ? (acc + n/2) / n : (acc - n/2) / n` in C's truncating division, then clamped.
"""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.base import Kernel, Prepared, PrepareContext
from tinyswap.kernels.conv_common import in_bounds_counts, patches
from tinyswap.kernels.pooling import prepare_pool
from tinyswap.kernels.registry import register


@register
class AveragePool2D(Kernel):
    op_name = "AVERAGE_POOL_2D"

    def prepare(self, ctx: PrepareContext) -> Prepared:
        prepared = prepare_pool(ctx)
        in_h, in_w = prepared.params["in_hw"]
        counts = in_bounds_counts(in_h, in_w, prepared.params["window"])
        if counts.min() == 0:
            raise ctx.error("an output position has no input tap (TFLM fails on it)")
        prepared.params["counts"] = counts[None, :, :, None]
        return prepared

    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        n = p["counts"]
        lo, hi = p["range"]
        if p["float"]:
            total = patches(x.astype(np.float32), p["window"], 0).sum(axis=(3, 4), dtype=np.float32)
            return [np.clip(total / n.astype(np.float32), lo, hi).astype(np.float32)]
        acc = patches(x.astype(np.int64), p["window"], 0).sum(axis=(3, 4))
        half = n // 2
        avg = np.where(acc > 0, (acc + half) // n, -((half - acc) // n))
        return [np.clip(avg, lo, hi).astype(np.int8)]
