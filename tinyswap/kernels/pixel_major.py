"""Convolution steps over pixel-major taps (`conv_common.RowTaps`): the output written in
place, NHWC, by the scaled product (`requantize_steps.ScaledProduct`) or by an exact float
product of the integers and the affine output stage. CONV_2D takes them for constant filters;
DEPTHWISE_CONV_2D takes them for few input channels, with its filter laid out as a dense
convolution's (zero off each output's own input channel)."""

from __future__ import annotations

import numpy as np

from tinyswap.kernels.base import Step, claim_buffer_bytes
from tinyswap.kernels.conv_common import MAX_GATHERED_TAPS, RowTaps, Window
from tinyswap.kernels.quantized import OutputStage, exact_float_dtype
from tinyswap.kernels.requantize_steps import ScaledProduct, frozen_affine, frozen_scaled

# The taps are gathered channels last, as `eval` does, so these steps are taken up to the
# frozen steps' gather bound.
MAX_SCALED_TAPS = MAX_GATHERED_TAPS


def _scaled_step(scaled: ScaledProduct, taps: RowTaps, out: np.ndarray) -> Step | None:
    """Chunk by chunk, the taps gathered pixel-major, then `ScaledProduct.apply` into the NHWC
    output's rows; None when the plan's budget is spent."""
    buffers = {len(rows): scaled.buffer(len(rows)) for rows in taps.rows}
    if not claim_buffer_bytes((sum(z.size for z in buffers.values()) + scaled.weights.size) * scaled.weights.itemsize):
        return None
    chunks = [(i, buffers[len(rows)], out[pixels]) for i, (rows, pixels) in enumerate(zip(taps.rows, taps.pixels))]
    gather, apply = taps.gather, scaled.apply

    def step() -> None:
        for i, z, out_rows in chunks:
            apply(gather(i), z, out_rows)

    return step


# The scaled product runs in float64 (`frozen_scaled`), twice float32's cost per product: from
# this many terms an exact float32 product of the integers and the affine output stage on it
# are faster (measured at 64 rows on ResNet-8's 144-term layers: about 2x).
MIN_EXACT_PRODUCT_TERMS = 64


def short_scaled(stage: OutputStage, weights: np.ndarray, bias: np.ndarray | None) -> ScaledProduct | None:
    """`frozen_scaled` of a layer whose products are short (below MIN_EXACT_PRODUCT_TERMS), the
    form `pixel_major_step` prefers there; None for long ones (solved only if needed) or none."""
    return frozen_scaled(stage, weights, bias) if weights.shape[1] < MIN_EXACT_PRODUCT_TERMS else None


def pixel_major_step(stage: OutputStage, weights: np.ndarray, bias: np.ndarray | None, x: np.ndarray,
                      window: Window, out: np.ndarray, scaled: ScaledProduct | None) -> Step | None:
    """The taps gathered pixel-major (`RowTaps`, channels innermost as the input has them) and
    the output written in place, NHWC: by the scaled product for short products, else by an
    exact float32 product of the integers and the affine output stage per channel along the
    last axis (the scaled product's float64 costs twice float32's there); None when neither
    can be built. `scaled`: `short_scaled` of this layer."""
    pixels, channels = out.shape
    terms = weights.shape[1]
    dtype = exact_float_dtype(terms)
    affine = None if terms < MIN_EXACT_PRODUCT_TERMS and scaled is not None else frozen_affine(
        stage, weights, bias, dtype, pixels * channels)
    if affine is None:
        if scaled is None and terms >= MIN_EXACT_PRODUCT_TERMS:
            scaled = frozen_scaled(stage, weights, bias)
        if scaled is None:
            return None
        taps = RowTaps.of(x, window, scaled.weights.dtype, stage.input_zero_point, max_taps=MAX_SCALED_TAPS)
        return None if taps is None else _scaled_step(scaled, taps, out)
    taps = RowTaps.of(x, window, dtype, stage.input_zero_point, max_taps=MAX_SCALED_TAPS, ones=False)
    if taps is None:
        return None
    table = np.ascontiguousarray(weights.T, dtype=dtype)
    buffers = {len(rows): np.empty((len(rows), channels), dtype) for rows in taps.rows}
    if not claim_buffer_bytes((sum(acc.size for acc in buffers.values()) + table.size) * dtype.itemsize):
        return None
    chunks = [(i, buffers[len(rows)], out[pixels]) for i, (rows, pixels) in enumerate(zip(taps.rows, taps.pixels))]
    gather = taps.gather

    def step() -> None:
        for i, acc, out_rows in chunks:
            np.matmul(gather(i), table, out=acc)
            affine.apply(acc, out_rows)

    return step


__all__ = ["MAX_SCALED_TAPS", "MIN_EXACT_PRODUCT_TERMS", "pixel_major_step", "short_scaled"]
