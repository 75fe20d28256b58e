"""MEAN over constant axes, int8 and float32 (TFLM `reduce_common.cc`, `reference/reduce.h`).

Int8: the int32 sum less n * zero point is scaled by input_scale / output_scale / n, where
the division by n is folded into the multiplier exactly as QuantizedMeanOrSum does it:
shift = min(floor(log2 n), 32, 31 + output_shift), M' = (M << shift) / n (truncating),
shift' = output_shift - shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import FLOAT32, INT8, Kernel, Prepared, PrepareContext, Step
from tinyswap.kernels.layout import constant_ints, normalize_axis
from tinyswap.kernels.quantized import Int8Requantizer, Rescale, checked_multiplier
from tinyswap.kernels.requantize_steps import ThresholdRequantizer
from tinyswap.kernels.registry import register
from tinyswap.kernels.sum_tables import SumLookup


@dataclass(frozen=True)
class MeanParams:
    """Averages `count` values over `axes`. int8: `rescale` maps the sum (its input zero point
    is zero_point * count) with the division by `count` folded into the multiplier; float32
    models have none."""

    axes: tuple[int, ...]
    keep_dims: bool
    count: int
    rescale: Rescale | None


@register
class Mean(Kernel[MeanParams]):
    op_name = "MEAN"

    def prepare(self, ctx: PrepareContext) -> Prepared[MeanParams]:
        ctx.expect_counts(2)
        x, y = ctx.input(0), ctx.output()
        rank = len(x.shape)
        axes = tuple(sorted({normalize_axis(ctx, a, rank) for a in constant_ints(ctx, ctx.input(1), "axis input")}))
        keep = bool(ctx.options.get("keep_dims", False))
        shape = tuple(1 if a in axes else d for a, d in enumerate(x.shape)) if keep else tuple(
            d for a, d in enumerate(x.shape) if a not in axes)
        n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
        if n == 0:
            raise ctx.error("averaging over an empty axis")
        if x.dtype == FLOAT32:
            ctx.require_types(y, FLOAT32)
            return Prepared([shape], MeanParams(axes, keep, n, None))
        ctx.require_types(x, INT8)
        ctx.require_types(y, INT8)
        (xs, xzp), (ys, yzp) = ctx.per_tensor(x), ctx.per_tensor(y)
        m, s = checked_multiplier(xs / ys)
        k = min(n.bit_length() - 1, 32, 31 + s)
        m_n = int((m << k) // n) if k >= 0 else int((m >> -k) // n)
        return Prepared([shape], MeanParams(axes, keep, n, Rescale(xzp * n, yzp, m_n, s - k)))

    def eval(self, prepared: Prepared[MeanParams], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        out_shape = prepared.output_shapes[0]
        if p.rescale is None:
            total = x.sum(axis=p.axes, dtype=np.float32, keepdims=p.keep_dims)
            return [(total / np.float32(p.count)).astype(np.float32).reshape(out_shape)]
        out = p.rescale.apply(x.astype(np.int64).sum(axis=p.axes, keepdims=p.keep_dims))
        return [np.clip(out, -128, 127).astype(np.int8).reshape(out_shape)]

    def bind(self, prepared: Prepared[MeanParams], inputs: list[np.ndarray | None], outputs: list[np.ndarray]) -> Step:
        """int8: the sum, then its requantization (less the summed zero point) by a table of every
        possible sum (`SumLookup`); past the table's bound, requantized with constants computed here."""
        p = prepared.params
        r = p.rescale
        if r is None:
            return super().bind(prepared, inputs, outputs)
        x, out = inputs[0], outputs[0]
        requantizer = Int8Requantizer.build(r.multiplier, r.shift, r.output_zero_point, -128, 127, False)
        lookup = SumLookup.of(np.array([p.count]), lambda sums, _n: requantizer.apply(sums - r.input_zero_point))
        if lookup is not None:
            acc = np.empty(tuple(d for a, d in enumerate(x.shape) if a not in p.axes), np.intp)
            step = lookup.step(lambda acc: np.add.reduce(x, axis=p.axes, dtype=np.intp, out=acc), acc,
                               np.array(p.count), out)
            if step is not None:
                return step
        # A few outputs (a batch-1 global average): by threshold search, 128 * count + |zp sum| bounding the sums.
        searched = ThresholdRequantizer.of(requantizer, 1, 128 * p.count + abs(r.input_zero_point), out.size)
        if searched is not None:
            def searched_step() -> None:
                total = x.sum(axis=p.axes, dtype=np.int64, keepdims=True)
                total -= r.input_zero_point
                searched.apply_with_bias(total, None, out)

            return searched_step

        def step() -> None:
            total = x.sum(axis=p.axes, dtype=np.int64, keepdims=True)  # an array even over every axis
            total -= r.input_zero_point
            requantizer.apply(total, out)

        return step
