"""PACK: stack N same-shaped tensors along a new axis."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import Kernel, Prepared, PrepareContext, Step
from tinyswap.kernels.copy_steps import pack_step
from tinyswap.kernels.layout import normalize_axis, same_quantization
from tinyswap.kernels.registry import register


@dataclass(frozen=True)
class PackParams:
    axis: int  # the new axis, normalised to [0, rank]


@register
class Pack(Kernel[PackParams]):
    op_name = "PACK"

    def prepare(self, ctx: PrepareContext) -> Prepared[PackParams]:
        count = ctx.options.get("values_count", len(ctx.inputs))
        if count != len(ctx.inputs) or count < 1:
            raise ctx.error(f"values_count {count} but {len(ctx.inputs)} inputs")
        ctx.expect_counts(count)
        first, y = ctx.input(0), ctx.output()
        for i in range(count):
            spec = ctx.input(i)
            same_quantization(ctx, spec, y)
            if spec.shape != first.shape:
                raise ctx.error(f"input {i} has shape {spec.shape}, input 0 has {first.shape}")
        axis = normalize_axis(ctx, ctx.options.get("axis", 0), len(first.shape) + 1)
        shape = list(first.shape)
        shape.insert(axis, count)
        folded = None
        if all(ctx.input(i).constant is not None for i in range(count)):
            folded = [np.stack([np.asarray(ctx.input(i).constant) for i in range(count)], axis=axis)]
        return Prepared([tuple(shape)], PackParams(axis), folded=folded)

    def eval(self, prepared: Prepared[PackParams], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [np.stack(inputs, axis=prepared.params.axis)]

    def bind(self, prepared: Prepared[PackParams], inputs: list[np.ndarray | None], outputs: list[np.ndarray]) -> Step:
        """Each input copied into its index of the new axis in the output view."""
        return pack_step(inputs, outputs[0], prepared.params.axis)  # type: ignore[arg-type]
