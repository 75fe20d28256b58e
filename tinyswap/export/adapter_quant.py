"""Quantize a float adapter into a compiled slot's fixed scales (the packer's core).

The slot's scales were fixed at compile time, so the adapter must fit them.

LoRA: `tinyswap.slot_quant` (re-exported here), in the runtime layer because the simulated
device's on-device training fits its trained factors with the same maths and must not import
the compiler.

Bottleneck: `h + U relu(D h + bD) + bU`. ReLU is positively homogeneous, so unit i may be
written (c * D_i, c * bD_i, U_i / c); the same split search applies to each (D_i, U_i) pair.
A bottleneck wider than the slot cannot be reduced exactly (there is no SVD through a ReLU)
and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.export.errors import AdapterQuantError
from tinyswap.slot_quant import INT32_RANGE, LoraQuantReport, best_splits, q8, quantize_lora


@dataclass(frozen=True)
class BottleneckQuantReport:
    rank_in: int
    rank_slot: int
    delta_relative_error: float  # ||U_q D_q - U D|| / ||U D|| (dequantized)
    bias_d_relative_error: float
    bias_u_relative_error: float
    clipped_d: float
    clipped_u: float


def quantize_bottleneck(down: np.ndarray, down_bias: np.ndarray, up: np.ndarray, up_bias: np.ndarray,
                        d_scale: float, bd_scale: float, u_scale: float, bu_scale: float, r_max: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, BottleneckQuantReport]:
    """down [r, C], down_bias [r], up [C, r], up_bias [C] -> int8 D [r_max, C], int32 bias_D
    [r_max], int8 U [C, r_max], int32 bias_U [C] at the slot's scales."""
    d = np.asarray(down, np.float64)
    bd = np.asarray(down_bias, np.float64)
    u = np.asarray(up, np.float64)
    bu = np.asarray(up_bias, np.float64)
    rank = d.shape[0]
    if rank > r_max:
        raise AdapterQuantError(f"bottleneck of width {rank} does not fit a slot of width {r_max}: there is no exact "
                                "reduction through the ReLU; train it at the slot's width or compile a wider slot")
    c, _ = best_splits(d, u, d_scale, u_scale)
    d, bd, u = d * c[:, None], bd * c, u / c[None, :]
    d_q = np.zeros((r_max, d.shape[1]), np.int8)
    u_q = np.zeros((u.shape[0], r_max), np.int8)
    d_q[:rank], clipped_d = q8(d, d_scale)
    u_q[:, :rank], clipped_u = q8(u, u_scale)
    bd_q = np.zeros(r_max, np.int32)
    bd_q[:rank] = np.clip(np.round(bd / bd_scale), *INT32_RANGE).astype(np.int32)
    bu_q = np.clip(np.round(bu / bu_scale), *INT32_RANGE).astype(np.int32)
    delta = u @ d
    got = (u_q[:, :rank] * u_scale) @ (d_q[:rank] * d_scale)

    def rel(err: float, ref: np.ndarray) -> float:
        return err / (float(np.linalg.norm(ref)) or 1.0)

    report = BottleneckQuantReport(
        rank_in=rank, rank_slot=r_max,
        delta_relative_error=rel(float(np.linalg.norm(got - delta)), delta),
        bias_d_relative_error=rel(float(np.linalg.norm(bd_q[:rank] * bd_scale - bd)), bd),
        bias_u_relative_error=rel(float(np.linalg.norm(bu_q * bu_scale - bu)), bu),
        clipped_d=clipped_d * d.size / d_q.size, clipped_u=clipped_u * u.size / u_q.size,
    )
    return d_q, bd_q, u_q, bu_q, report


__all__ = ["AdapterQuantError", "BottleneckQuantReport", "LoraQuantReport", "quantize_bottleneck", "quantize_lora"]
