"""Fitting float LoRA factors into a compiled slot's fixed int8 scales: the maths the packer
(`tinyswap.export.pack`) and the simulated device's on-device training
(`tinyswap.firmware_sim.personalise`) share.

It lives in the runtime layer because the device must not import the compiler
(docs/architecture.md, "Layers"); `tinyswap.export.adapter_quant` re-exports it beside the
bottleneck quantizer.

The effective delta is `scaling * B @ A`. Ranks above the slot's r_max are reduced by
truncated SVD, smaller ones zero-padded. A LoRA's factorisation is not unique: component i
may be written (c * a_i, b_i / c) for any c > 0, and the delta can also be refactored by its
SVD. The packer tries both factorisations and, per rank component, a grid of splits c around
the one that balances the int8 ranges, and keeps what minimises the quantized delta's error
(the rank-1 terms' errors are computed in closed form). The report gives what was lost:
clipping per tensor, the relative error of the effective delta, and the SVD truncation error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Splits tried per component: the balanced one times 2**(k/4), k = -8..8.
SPLIT_GRID = 2.0 ** (np.arange(-8, 9) / 4.0)
INT32_RANGE = (-(2**31), 2**31 - 1)


@dataclass(frozen=True)
class LoraQuantReport:
    rank_in: int
    rank_slot: int
    svd_relative_error: float  # ||delta_r - delta|| / ||delta|| from rank reduction (0 if none)
    delta_relative_error: float  # ||dequant(B_q) @ dequant(A_q) - delta|| / ||delta||
    clipped_a: float  # fraction of A entries clipped to +-127
    clipped_b: float
    factorisation: str = "given"  # "given" or "svd": which one the split search kept


def q8(values: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    raw = np.round(values / scale)
    return np.clip(raw, -127, 127).astype(np.int8), float(np.mean(np.abs(raw) > 127)) if raw.size else 0.0


def best_splits(a: np.ndarray, b: np.ndarray, a_scale: float, b_scale: float) -> tuple[np.ndarray, float]:
    """Per component i (row a_i, column b_i), the c > 0 minimising
    ||q(b_i / c) q(c a_i)^T - b_i a_i^T||_F; returns (c, total squared error)."""
    cs = np.ones(a.shape[0])
    total = 0.0
    for i in range(a.shape[0]):
        x, y = b[:, i], a[i]
        xy = float(x @ x) * float(y @ y)
        if xy == 0.0:
            continue
        a_use = np.abs(y).max() / (127 * a_scale)
        b_use = np.abs(x).max() / (127 * b_scale)
        c0 = np.sqrt(b_use / a_use)
        best = (np.inf, 1.0)
        for c in c0 * SPLIT_GRID:
            u = np.clip(np.round(x / c / b_scale), -127, 127) * b_scale
            v = np.clip(np.round(y * c / a_scale), -127, 127) * a_scale
            # ||u v^T - x y^T||^2 = |u|^2 |v|^2 + |x|^2 |y|^2 - 2 (u . x)(v . y)
            err = float(u @ u) * float(v @ v) + xy - 2.0 * float(u @ x) * float(v @ y)
            if err < best[0]:
                best = (err, float(c))
        total += max(best[0], 0.0)
        cs[i] = best[1]
    return cs, total


def quantize_lora(a: np.ndarray, b: np.ndarray, scaling: float, a_scale: float, b_scale: float,
                  r_max: int) -> tuple[np.ndarray, np.ndarray, LoraQuantReport]:
    """a: [r, K] (K = fan-in, conv kernels flattened kh*kw*cin), b: [out, r].

    Returns int8 A [r_max, K], int8 B [out, r_max] at the slot's per-tensor scales.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64) * float(scaling)
    rank = a.shape[0]
    delta = b @ a
    norm = float(np.linalg.norm(delta)) or 1.0
    u, s, vt = np.linalg.svd(delta, full_matrices=False)
    keep = min(r_max, rank, s.size)
    root = np.sqrt(s[:keep])
    svd_a, svd_b = root[:, None] * vt[:keep], u[:, :keep] * root[None, :]
    svd_error = float(np.linalg.norm(svd_b @ svd_a - delta)) / norm if rank > r_max else 0.0
    candidates = [("svd", svd_a, svd_b)]
    if rank <= r_max:
        candidates.insert(0, ("given", a, b))
    best = None
    for label, fa, fb in candidates:
        c, err = best_splits(fa, fb, a_scale, b_scale)
        if best is None or err < best[0]:
            best = (err, label, fa * c[:, None], fb / c[None, :])
    assert best is not None
    _, label, fa, fb = best
    a_q = np.zeros((r_max, a.shape[1]), np.int8)
    b_q = np.zeros((b.shape[0], r_max), np.int8)
    a_q[: fa.shape[0]], clipped_a = q8(fa, a_scale)
    b_q[:, : fb.shape[1]], clipped_b = q8(fb, b_scale)
    got = (b_q.astype(np.float64) * b_scale) @ (a_q.astype(np.float64) * a_scale)
    report = LoraQuantReport(
        rank_in=rank, rank_slot=r_max, svd_relative_error=svd_error,
        delta_relative_error=float(np.linalg.norm(got - delta)) / norm,
        clipped_a=clipped_a * fa.size / a_q.size, clipped_b=clipped_b * fb.size / b_q.size, factorisation=label,
    )
    return a_q, b_q, report


__all__ = ["INT32_RANGE", "LoraQuantReport", "best_splits", "q8", "quantize_lora"]
