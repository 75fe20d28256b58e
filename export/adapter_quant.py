"""Quantize a float LoRA adapter into a compiled slot's fixed scales (the packer's core).

The slot's scales were fixed at compile time, so the adapter must fit them: the effective
delta is `scaling * B @ A`; ranks above the slot's r_max are reduced by truncated SVD, smaller
ones zero-padded; each rank component's factors are rebalanced (A row * c, B column / c, which
leaves B @ A unchanged) so that both use their int8 ranges alike; then both are rounded and
clipped. The report gives what was lost: clipping per tensor, the relative error of the
effective delta, and the SVD truncation error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LoraQuantReport:
    rank_in: int
    rank_slot: int
    svd_relative_error: float  # ||delta_r - delta|| / ||delta|| from rank reduction (0 if none)
    delta_relative_error: float  # ||dequant(B_q) @ dequant(A_q) - delta|| / ||delta||
    clipped_a: float  # fraction of A entries clipped to +-127
    clipped_b: float


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
    svd_error = 0.0
    if rank > r_max:
        u, s, vt = np.linalg.svd(delta, full_matrices=False)
        root = np.sqrt(s[:r_max])
        a = root[:, None] * vt[:r_max]
        b = u[:, :r_max] * root[None, :]
        svd_error = float(np.linalg.norm(b @ a - delta)) / norm
    # Balance each component: scale A row i by c_i, B column i by 1 / c_i, so that the largest
    # entries use the same fraction of their int8 ranges.
    a_use = np.abs(a).max(axis=1) / (127 * a_scale)
    b_use = np.abs(b).max(axis=0) / (127 * b_scale)
    c = np.where((a_use > 0) & (b_use > 0), np.sqrt(np.maximum(b_use, 1e-30) / np.maximum(a_use, 1e-30)), 1.0)
    a = a * c[:, None]
    b = b / c[None, :]
    a_q = np.zeros((r_max, a.shape[1]), np.int8)
    b_q = np.zeros((b.shape[0], r_max), np.int8)
    a_raw = np.round(a / a_scale)
    b_raw = np.round(b / b_scale)
    a_q[: a.shape[0]] = np.clip(a_raw, -127, 127).astype(np.int8)
    b_q[:, : b.shape[1]] = np.clip(b_raw, -127, 127).astype(np.int8)
    got = (b_q.astype(np.float64) * b_scale) @ (a_q.astype(np.float64) * a_scale)
    report = LoraQuantReport(
        rank_in=rank, rank_slot=r_max, svd_relative_error=svd_error,
        delta_relative_error=float(np.linalg.norm(got - delta)) / norm,
        clipped_a=float(np.mean(np.abs(a_raw) > 127)), clipped_b=float(np.mean(np.abs(b_raw) > 127)),
    )
    return a_q, b_q, report
