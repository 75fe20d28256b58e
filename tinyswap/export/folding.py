"""BatchNorm at inference, as the Keras and PyTorch imports both lower it.

`y = gamma * (x - mean) / sqrt(var + eps) + beta` is a per-channel `x * scale + offset`;
folded into the weighted spec layer before it, the kernel's output channels are multiplied by
`scale` and its bias becomes `bias * scale + offset`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def batch_norm_affine(mean: Any, var: Any, gamma: Any, beta: Any, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) per channel, float64."""
    mean, var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
    scale = np.asarray(gamma, np.float64) / np.sqrt(var + float(eps))
    return scale, np.asarray(beta, np.float64) - mean * scale


def fold_into(entry: dict[str, Any], weights: dict[str, np.ndarray], scale: np.ndarray, offset: np.ndarray) -> None:
    """Fold `x * scale + offset` into the weighted spec layer `entry` (its raw JSON and weights)."""
    name = entry["name"]
    kernel = weights[f"{name}/kernel"].astype(np.float64)
    if entry["type"] == "depthwise_conv2d":  # [kh, kw, cin, multiplier]: output channel cin * m + j
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:  # dense [in, out], conv2d [kh, kw, in, out]: the output channel is the last axis
        kernel = kernel * scale
    bias = weights.get(f"{name}/bias", np.zeros_like(scale)).astype(np.float64)
    weights[f"{name}/kernel"] = kernel.astype(np.float32)
    weights[f"{name}/bias"] = (bias * scale + offset).astype(np.float32)
    entry["use_bias"] = True


__all__ = ["batch_norm_affine", "fold_into"]
