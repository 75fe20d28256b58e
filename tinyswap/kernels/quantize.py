"""QUANTIZE: float32 -> int8 (TFLM reference `quantize.h`: round(x / scale) in float32, halves
away from zero, + zero point, clamped) and int8 -> int8 requantization (`requantize.h`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from tinyswap.kernels.base import FLOAT32, INT8, Kernel, Prepared, PrepareContext, Step, claim_new_pair_table
from tinyswap.kernels.elementwise import int8_table_step
from tinyswap.kernels.quantized import Rescale, checked_multiplier, round_half_away_f32
from tinyswap.kernels.registry import register


@dataclass(frozen=True)
class QuantizeParams:
    """float32 -> int8: the output's scale (a float32 value) and zero point."""

    scale: float
    zero_point: int


@register
class Quantize(Kernel[QuantizeParams | Rescale]):
    op_name = "QUANTIZE"

    def prepare(self, ctx: PrepareContext) -> Prepared[QuantizeParams | Rescale]:
        ctx.expect_counts(1)
        x, y = ctx.input(0), ctx.output()
        ctx.require_types(x, FLOAT32, INT8)
        ctx.require_types(y, INT8)
        if y.quantization is None or y.quantization.per_channel:
            raise ctx.error("the output needs per-tensor quantization parameters")
        ys, yzp = ctx.per_tensor(y)
        if x.dtype == FLOAT32:
            return Prepared([x.shape], QuantizeParams(float(np.float32(ys)), yzp))
        xs, xzp = ctx.per_tensor(x)
        m, s = checked_multiplier(xs / ys)
        return Prepared([x.shape], Rescale(xzp, yzp, m, s))

    def eval(self, prepared: Prepared[QuantizeParams | Rescale], inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        p = prepared.params
        x = inputs[0]
        if isinstance(p, QuantizeParams):
            return [quantize_float(p, x).astype(np.int8)]
        return [np.clip(p.apply(x), -128, 127).astype(np.int8)]

    def bind(self, prepared: Prepared[QuantizeParams | Rescale], inputs: list[np.ndarray | None],
             outputs: list[np.ndarray]) -> Step:
        """int8 -> int8: one gather from the 256 values `eval` gives. float32 -> int8: straight
        into the output view."""
        p = prepared.params
        if isinstance(p, QuantizeParams):
            return _float_step(p, inputs[0], outputs[0])
        return int8_table_step(self.eval, prepared, inputs[0], outputs[0])


# The float32 keys of +-infinity in `_float32_at`'s order (every other non-NaN value between).
_INFINITY_KEY = 0x7F800000


def _float32_at(keys: np.ndarray) -> np.ndarray:
    """The float32 values of int64 `keys` in order: k >= 0 is the float with bit pattern k, k < 0
    is -(the float with pattern -k), so keys and values increase together (both zeros are 0)."""
    magnitude = np.abs(keys).astype(np.int32).view(np.float32)
    return np.where(keys < 0, -magnitude, magnitude)


_THRESHOLDS: dict[QuantizeParams, bytes | None] = {}  # shared by equal parameters, like pair tables
_CACHED_THRESHOLDS = 256
_THRESHOLDS_LOCK = threading.Lock()


def _thresholds(p: QuantizeParams) -> bytes | None:
    """The 255 float32 thresholds of `quantize_float` (see `_float_step`), or None if the check
    refutes them; cached by parameters (a bisection costs a few milliseconds)."""
    if p in _THRESHOLDS:
        return _THRESHOLDS[p]
    levels = np.arange(-127, 128, dtype=np.int64)
    lo = np.full(levels.shape, -_INFINITY_KEY, np.int64)  # -inf gives -128: below every level
    hi = np.full(levels.shape, _INFINITY_KEY, np.int64)  # +inf gives 127: reaches every level
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        while np.any(hi - lo > 1):  # invariant: lo below the level, hi reaching it
            mid = (lo + hi) // 2
            reaches = quantize_float(p, _float32_at(mid)) >= levels
            hi, lo = np.where(reaches, mid, hi), np.where(reaches, lo, mid)
        thresholds = _float32_at(hi)
        refuted = np.any(quantize_float(p, thresholds) < levels) or np.any(
            quantize_float(p, _float32_at(hi - 1)) >= levels)
    found = None if refuted else thresholds.astype(np.float32).tobytes()
    with _THRESHOLDS_LOCK:  # interpreters may be built on several threads
        while len(_THRESHOLDS) >= _CACHED_THRESHOLDS:
            _THRESHOLDS.pop(next(iter(_THRESHOLDS)))
        _THRESHOLDS[p] = found
    return found


def _float_step(p: QuantizeParams, x: np.ndarray, out: np.ndarray) -> Step:
    """`quantize_float` by threshold search: the float32 quantization is non-decreasing in x
    (a correctly rounded division by a positive scale, a rounding, a shift and a clamp), so it
    is described by the smallest float32 reaching each output above -128. Those 255 thresholds
    are found at bind by bisection over the ordered float32 values, evaluating `quantize_float`
    itself, and checked (each reaches its level; the float below it does not); a plan builds
    as many new ones as pair tables (`PlanBudget`), then steps through `quantize_float`. An invoke is
    then one `searchsorted` (its count of thresholds at or below x is the output + 128) and one
    gather into the output; NaN, which sorts last, counts a last NaN key and gets its own
    entry (the zero point)."""
    found = _thresholds(p) if p in _THRESHOLDS or claim_new_pair_table() else None
    if found is None:
        return lambda: np.copyto(out, quantize_float(p, x), casting="unsafe")
    # NaN sorts after every float (np.sort's order, which searchsorted keeps): as a last key it
    # counts only for NaN inputs, whose output is then the table's last entry; no NaN pass.
    keys = np.append(np.frombuffer(found, np.float32), np.float32(np.nan))
    nan_value = np.int8(quantize_float(p, np.array([np.nan], np.float32))[0])
    by_count = np.append(np.arange(-128, 128, dtype=np.int8), nan_value)
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)

    def step() -> None:
        np.take(by_count, np.searchsorted(keys, flat_x, side="right"), out=flat_out, mode="clip")

    return step


def quantize_float(p: QuantizeParams, x: np.ndarray) -> np.ndarray:
    """round(x / scale) in float32, halves away from zero, NaN as 0, + zero point, clamped to
    int8's range; float64 values (exact integers) ready for the int8 cast."""
    with np.errstate(invalid="ignore", over="ignore"):
        q = round_half_away_f32(np.divide(x, np.float32(p.scale), dtype=np.float32))
    q[np.isnan(q)] = 0.0
    q += p.zero_point
    np.maximum(q, -128, out=q)  # +-inf clamp too
    np.minimum(q, 127, out=q)
    return q
