"""MAX_POOL_2D: the largest in-image tap, clamped to the fused activation's range."""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.base import INT8, Kernel, Prepared, PrepareContext, Step
from tinyswap.kernels.conv_common import PlannedInput
from tinyswap.kernels.pooling import Pool2DParams, WindowTaps, prepare_pool, reduce_max
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

    def bind(self, prepared: Prepared[Pool2DParams], inputs: list[np.ndarray | None], outputs: list[np.ndarray]) -> Step:
        """int8: a -128 border (never larger than an in-image tap, and every window has one),
        one max over each window's taps, the clamp written into the output view."""
        p = prepared.params
        x, out = inputs[0], outputs[0]
        windows = WindowTaps.of(x, p.window, -128)
        if windows is not None:
            return _tap_max_step(windows, out, int(p.act_min), int(p.act_max))
        planned = None if x.dtype != INT8 else PlannedInput.of(x, p.window, INT8, 0, pad_value=-128)
        if planned is None:
            return super().bind(prepared, inputs, outputs)

        def step() -> None:
            planned.fill()
            np.max(planned.windows, axis=(3, 4), out=out)
            np.maximum(out, p.act_min, out=out)
            np.minimum(out, p.act_max, out=out)

        return step


def _tap_max_step(windows: WindowTaps, out: np.ndarray, lo: int, hi: int) -> Step:
    """The running maximum of the taps (a -128 border never wins: every window has an in-image
    tap), then the activation's clamp where it is narrower than int8's range."""
    first, rest = windows.taps[0], windows.taps[1:]
    fill = windows.fill
    clamp = lo > -128 or hi < 127

    def step() -> None:
        if fill is not None:
            fill()
        if rest:
            np.maximum(first, rest[0], out=out)
            for tap in rest[1:]:
                np.maximum(out, tap, out=out)
        else:
            np.copyto(out, first)
        if clamp:
            np.clip(out, lo, hi, out=out)

    return step
