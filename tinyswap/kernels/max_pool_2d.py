"""MAX_POOL_2D: the largest in-image tap, clamped to the fused activation's range."""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.base import Kernel, Prepared, PrepareContext
from tinyswap.kernels.conv_common import patches
from tinyswap.kernels.pooling import prepare_pool
from tinyswap.kernels.registry import register


@register
class MaxPool2D(Kernel):
    op_name = "MAX_POOL_2D"

    def prepare(self, ctx: PrepareContext) -> Prepared:
        return prepare_pool(ctx)

    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        lo, hi = p["range"]
        # Padding with the dtype's lowest value never wins a max over at least one real tap.
        pad = -np.inf if p["float"] else np.iinfo(x.dtype).min
        out = patches(x, p["window"], pad).max(axis=(3, 4))
        return [np.clip(out, lo, hi).astype(x.dtype)]
