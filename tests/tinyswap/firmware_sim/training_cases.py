"""Shared by the on-device training tests and the training power-cut sweep: the digits CNN
bundle, its domains' int8 test images, devices on it, and a deterministic training key.

Local samples are drawn from the committed test split (`models/digits/digits_test.npz`, 540
rows per domain) with a fixed seed: the first `LOCAL` rows of a seeded permutation are the
user's local samples, the other 440 the held-out evaluation rows, never trained on.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyswap.commands.digits import DIGITS, compile_digits
from tinyswap.firmware_sim.device import Device
from tinyswap.package import Keyring
from tinyswap.quantize import quantize_int8

LOCAL = 100
SPLIT_SEED = 7
#: The device's training key (fixed, so that runs on identical devices sign identical packages).
TRAINING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
VENDOR_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


@dataclass(frozen=True)
class Digits:
    model: bytes
    slotmap: dict[str, Any]
    images: dict[str, np.ndarray]  # domain -> int8 model inputs [540, 8, 8, 1]
    labels: np.ndarray
    local: np.ndarray  # row indices of the local samples
    held: np.ndarray  # row indices of the held-out evaluation rows


@lru_cache(maxsize=None)
def digits() -> Digits:
    built = compile_digits("cnn", Path(tempfile.mkdtemp(prefix="tinyswap-train-")) / "bundle")
    images = {}
    with np.load(DIGITS / "digits_test.npz") as npz:
        labels = npz["labels"].astype(np.int64)
        for domain in npz.files:
            if domain != "labels":
                x = npz[domain].astype(np.float32).reshape(-1, 8, 8, 1) / 16.0
                images[domain] = quantize_int8(x, built.input_scale, built.input_zero_point)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    return Digits(built.data, built.slotmap, images, labels, np.sort(order[:LOCAL]), np.sort(order[LOCAL:]))


def new_device(profile: str = "mcu-qspi", **kw: Any) -> Device:
    d = digits()
    device = Device(profile, d.model, d.slotmap, Keyring([VENDOR_KEY.public_key()]), **kw)
    if "flash_images" not in kw:
        device.provision()
    return device


def tflm_outputs(model: bytes, x: np.ndarray, gates: list[np.ndarray]) -> np.ndarray:
    """TFLite Micro (the wheel, one interpreter) on `model`, row by row: the golden output 0."""
    from tinyswap.oracles import tflm_interpreter

    interp = tflm_interpreter(model)
    rows = []
    for r in range(len(x)):
        for i, value in enumerate([x[r:r + 1], *[g[r:r + 1] for g in gates]]):
            interp.set_input(np.ascontiguousarray(value), i)
        interp.invoke()
        rows.append(np.array(interp.get_output(0), copy=True))
    return np.concatenate(rows)
