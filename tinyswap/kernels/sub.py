"""SUB, int8 (with broadcasting) and float32.

Same arithmetic as ADD with the scaled second input subtracted, except that TFLM's
`micro/kernels/sub_common.cc` computes the real multipliers in float32 before widening them.
"""

from __future__ import annotations

from tinyswap.kernels.add import Add
from tinyswap.kernels.registry import register


@register
class Sub(Add):
    op_name = "SUB"
    sign = -1
    single_precision_multipliers = True
