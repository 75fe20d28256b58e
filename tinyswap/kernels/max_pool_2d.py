"""MAX_POOL_2D: the largest in-image tap, clamped to the fused activation's range."""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.base import Kernel, Prepared, PrepareContext
from tinyswap.kernels.pooling import Pool2DParams, prepare_pool, reduce_max
from tinyswap.kernels.registry import register


@register
class MaxPool2D(Kernel[Pool2DParams]):
    op_name = "MAX_POOL_2D"

    def prepare(self, ctx: PrepareContext) -> Prepared[Pool2DParams]:
        shape, params = prepare_pool(ctx)
        return Prepared([shape], params)

    def eval(self, prepared: Prepared[Pool2DParams], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        out = reduce_max(x, p)  # in-image taps only, as the reference kernel
        return [np.clip(out, p.act_min, p.act_max).astype(x.dtype)]
