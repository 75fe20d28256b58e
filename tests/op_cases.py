"""Shared by the per-op tests: hypothesis strategies (scales, zero points, conv windows) and
helpers that prepare and run a kernel on hand-written tensor descriptions, with no model."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

import tinyswap.kernels  # noqa: F401  (registers every kernel)
from tinyswap.export.tflite_builder import Quant
from tinyswap.kernels.base import Prepared, PrepareContext, Profile, TensorQuant, TensorSpec
from tinyswap.kernels.registry import get_kernel

ACTIVATIONS = st.sampled_from([0, 1, 2, 3])  # NONE, RELU, RELU_N1_TO_1, RELU6


@st.composite
def activation_quant(draw, lo: float = 0.005, hi: float = 0.2) -> Quant:
    return Quant(draw(st.floats(lo, hi)), draw(st.integers(-128, 127)))


def out_size(size: int, k: int, stride: int, dilation: int, same: bool) -> int:
    eff = (k - 1) * dilation + 1
    return math.ceil(size / stride) if same else (size - eff) // stride + 1


@st.composite
def window(draw, max_hw: int = 12, max_k: int = 4, dilations: bool = True):
    """(h, w, kh, kw, stride_h, stride_w, dil_h, dil_w, same, out_h, out_w) that TFLM accepts."""
    h, w = draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw))
    kh, kw = draw(st.integers(1, max_k)), draw(st.integers(1, max_k))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilations else (1, 1)
    same = draw(st.booleans())
    oh, ow = out_size(h, kh, sh, dh, same), out_size(w, kw, sw, dw, same)
    if oh < 1 or ow < 1:  # VALID window larger than the input: fall back to SAME
        same = True
        oh, ow = out_size(h, kh, sh, dh, True), out_size(w, kw, sw, dw, True)
    return h, w, kh, kw, sh, sw, dh, dw, same, oh, ow


def output_scale_for(x_scale: float, w_scale: float, terms: int, factor: float) -> float:
    """An output scale near the accumulator's spread, so outputs use the int8 range."""
    return x_scale * w_scale * 80.0 * math.sqrt(max(terms, 1)) / 64.0 * factor


def rng_from(draw) -> np.random.Generator:
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


# -- kernels without a graph: hand-written tensor descriptions, prepare and eval on arrays ----


def spec(index: int, shape: tuple[int, ...], dtype, scale=None, zero_point=0, constant=None,
         axis: int = 0) -> TensorSpec:
    """A kernel-side tensor description; `scale` (one value or one per channel) quantizes it."""
    quant = None
    if scale is not None:
        scales = np.atleast_1d(np.asarray(scale, np.float32))
        zps = np.broadcast_to(np.asarray(zero_point, np.int64), scales.shape).copy()
        quant = TensorQuant(scales, zps, axis)
    return TensorSpec(index, f"t{index}", tuple(shape), np.dtype(dtype), quant,
                      None if constant is None else np.asarray(constant))


def prepare(op_name: str, inputs: list, outputs: list, options: dict | None = None,
            profile: Profile = Profile.TFLM) -> Prepared:
    """The registered kernel's `prepare` on hand-written tensor descriptions (no model)."""
    ctx = PrepareContext(0, op_name, dict(options or {}), list(inputs), list(outputs), profile)
    return get_kernel(op_name).run_prepare(ctx)


def run_kernel(op_name: str, prepared: Prepared, *arrays: np.ndarray) -> list[np.ndarray]:
    return get_kernel(op_name).eval(prepared, list(arrays))
