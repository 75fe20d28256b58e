"""PADV2: PAD with an explicit constant value as a third input."""

from __future__ import annotations

from tinyswap.kernels.base import Prepared, PrepareContext
from tinyswap.kernels.pad import Pad, PadParams, prepare_pad
from tinyswap.kernels.registry import register


@register
class PadV2(Pad):
    op_name = "PADV2"

    def prepare(self, ctx: PrepareContext) -> Prepared[PadParams]:
        return prepare_pad(ctx, (2, 3))
