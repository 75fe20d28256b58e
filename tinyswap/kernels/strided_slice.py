"""STRIDED_SLICE with begin/end/shrink masks (TFLite `strided_slice_logic.h` semantics)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import Kernel, Prepared, PrepareContext, Step, frozen_array
from tinyswap.kernels.copy_steps import copy_step
from tinyswap.kernels.layout import constant_ints, same_quantization
from tinyswap.kernels.registry import register


def _axis_indices(dim: int, begin: int, end: int, stride: int, begin_masked: bool,
                  end_masked: bool, shrink: bool) -> range:
    """TFLite `StartForAxis` / `StopForAxis`: masks, negative indices, direction-aware clamps."""
    lo, hi = (0, dim) if stride > 0 else (-1, dim - 1)
    if begin_masked:
        begin = -(2**31) if stride > 0 else 2**31 - 1
    if begin < 0:
        begin += dim
    start = min(max(begin, lo), hi)
    if shrink:
        return range(start, start + 1, stride)
    if end_masked:
        end = 2**31 - 1 if stride > 0 else -(2**31)
    if end < 0:
        end += dim
    return range(start, min(max(end, lo), hi), stride)


@dataclass(frozen=True, eq=False)
class StridedSliceParams:
    mesh: tuple[np.ndarray, ...]  # open-mesh indices (np.ix_) of the selected elements, read-only


@register
class StridedSlice(Kernel[StridedSliceParams]):
    op_name = "STRIDED_SLICE"

    def prepare(self, ctx: PrepareContext) -> Prepared[StridedSliceParams]:
        ctx.expect_counts((3, 4))
        x, y = ctx.input(0), ctx.output()
        same_quantization(ctx, x, y)
        rank = len(x.shape)
        begin = constant_ints(ctx, ctx.input(1), "begin")
        end = constant_ints(ctx, ctx.input(2), "end")
        strides = constant_ints(ctx, ctx.input(3), "strides") if len(ctx.inputs) > 3 else (1,) * len(begin)
        if not len(begin) == len(end) == len(strides) <= rank:
            raise ctx.error(f"begin/end/strides lengths {len(begin)}/{len(end)}/{len(strides)} vs rank {rank}")
        if 0 in strides:
            raise ctx.error("stride 0")
        opts = ctx.options
        if opts.get("ellipsis_mask", 0) or opts.get("new_axis_mask", 0):
            raise ctx.error("ellipsis_mask and new_axis_mask are not supported")
        bm, em, sm = opts.get("begin_mask", 0), opts.get("end_mask", 0), opts.get("shrink_axis_mask", 0)
        index: list[np.ndarray] = []
        shape: list[int] = []
        for a in range(rank):
            if a < len(begin):
                stop = begin[a] + end[a] if opts.get("offset", False) else end[a]
                shrink = bool(sm >> a & 1)
                r = _axis_indices(x.shape[a], begin[a], stop, strides[a], bool(bm >> a & 1),
                                  bool(em >> a & 1), shrink)
                if shrink and (strides[a] < 0 or not 0 <= r.start < x.shape[a]):
                    # TFLite iterates [start, start + 1) with the given stride: a negative stride
                    # yields no element and TFLM leaves the output unwritten (garbage).
                    raise ctx.error(
                        f"shrinking axis {a} at index {begin[a]} with stride {strides[a]} selects no "
                        f"element of a dimension of {x.shape[a]}"
                    )
            else:
                r = range(0, x.shape[a])
            index.append(np.array(r, dtype=np.int64))
            if not (a < len(begin) and sm >> a & 1):
                shape.append(len(r))
        mesh = tuple(frozen_array(axis) for axis in np.ix_(*index)) if rank else ()
        folded = None
        if x.constant is not None:
            folded = [np.asarray(x.constant)[mesh].reshape(shape)]
        return Prepared([tuple(shape)], StridedSliceParams(mesh), folded=folded)

    def eval(self, prepared: Prepared[StridedSliceParams], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        return [inputs[0][prepared.params.mesh].reshape(prepared.output_shapes[0])]

    def bind(self, prepared: Prepared[StridedSliceParams], inputs: list[np.ndarray | None],
             outputs: list[np.ndarray]) -> Step:
        """One copy from the input's view selecting the slice (each axis's indices are a
        progression, so the selection is basic slicing) into the output view."""
        x, mesh = inputs[0], prepared.params.mesh
        step = None if x is None or not mesh else copy_step(x[_as_slices(mesh)], outputs[0])
        return super().bind(prepared, inputs, outputs) if step is None else step


def _as_slices(mesh: tuple[np.ndarray, ...]) -> tuple[slice, ...]:
    """The basic-slicing form of an open mesh of arithmetic progressions (`_axis_indices`)."""
    slices = []
    for axis in mesh:
        r = axis.reshape(-1)
        if len(r) == 0:
            slices.append(slice(0, 0))
            continue
        step = int(r[1] - r[0]) if len(r) > 1 else 1
        stop = int(r[-1]) + step
        slices.append(slice(int(r[0]), None if stop < 0 else stop, step))
    return tuple(slices)
