"""SUB, int8 (with broadcasting) and float32.

Same arithmetic as ADD with the scaled second input subtracted. The real multipliers are
computed in double precision from the float32 scales, as for ADD: the current
`sub_common.cc` source computes them in float32 first, but the `tflite_micro` wheel we hold as
the golden (and LiteRT's BUILTIN_REF) do not. Measured on s1 = s2 = 0.0625, s_out = 0.15 over
all 65,536 input pairs: float32 multipliers differ from the wheel in 880 outputs (ties such as
-12.5 rounded the other way), double-precision ones in none
(tests/tinyswap/kernels/test_sub.py).
"""

from __future__ import annotations

from tinyswap.kernels.add import Add
from tinyswap.kernels.registry import register


@register
class Sub(Add):
    op_name = "SUB"
    sign = -1
