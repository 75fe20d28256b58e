"""SUB, int8 (with broadcasting) and float32.

Same arithmetic as ADD with the scaled second input subtracted, except that TFLM's
`micro/kernels/sub_common.cc` computes the real multipliers in float32 before widening them.
"""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.add import additive_eval, additive_params
from tinyswap.kernels.base import Kernel, Prepared, PrepareContext
from tinyswap.kernels.elementwise import float_binary_params, prepare_binary
from tinyswap.kernels.quantized import activation_range
from tinyswap.kernels.registry import register


@register
class Sub(Kernel):
    op_name = "SUB"

    def prepare(self, ctx: PrepareContext) -> Prepared:
        a, b, y, shape, is_float = prepare_binary(ctx)
        if is_float:
            return Prepared([shape], float_binary_params(ctx))
        (s1, zp1), (s2, zp2), (so, zpo) = ctx.per_tensor(a), ctx.per_tensor(b), ctx.per_tensor(y)
        params = additive_params(ctx, s1, s2, so, single_precision=True)
        params.update(float=False, zp1=zp1, zp2=zp2, zp_out=zpo,
                      range=activation_range(ctx.option("fused_activation_function"), so, zpo, y.type))
        return Prepared([shape], params)

    def eval(self, prepared: Prepared, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        if p["float"]:
            lo, hi = p["range"]
            return [np.clip(inputs[0] - inputs[1], lo, hi).astype(np.float32)]
        return [additive_eval(p, inputs[0], inputs[1], -1)]
