"""The adapter packer: a float LoRA adapter + a bundle's slot map -> a signed package.

Adapter source (tinyswap format): a directory with `adapter.json`

    {"name": "wake-word-de", "version": "1.2.0", "sequence": 7, "kind": "lora",
     "tags": {"task": "kws", "user": null, "tenant": "acme"},
     "targets": {"fc1": {"rank": 8, "alpha": 16}, "conv2": {"rank": 4, "alpha": 4}}}

and `adapter.npz` with `<layer>/A` of shape [rank, K] and `<layer>/B` of shape [out, rank];
for a conv2d layer K = kh * kw * cin in TFLite filter order (kh, kw, cin). The effective
delta is (alpha / rank) * B @ A, as in PEFT.

Every slot target the adapter does not name is zero-filled (its slot stays inert); a layer
the slot plan does not have is refused; ranks above the slot's are reduced by truncated SVD
and the error is reported.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from export.adapter_quant import LoraQuantReport, quantize_lora
from tinyswap.errors import TinySwapError
from tinyswap.package import build_package


class PackError(TinySwapError):
    """The adapter cannot be packed for this bundle (unknown layer, wrong kind, bad files)."""


@dataclass
class FloatLora:
    name: str
    version: str
    sequence: int
    tags: dict[str, Any]
    targets: dict[str, tuple[np.ndarray, np.ndarray, float]]  # layer -> (A, B, scaling)


def load_adapter(path: str | Path) -> FloatLora:
    path = Path(path)
    try:
        config = json.loads((path / "adapter.json").read_text())
        with np.load(path / "adapter.npz", allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k], np.float64) for k in npz.files}
    except (OSError, ValueError) as exc:
        raise PackError(f"cannot read adapter {path}: {exc}") from exc
    if config.get("kind", "lora") != "lora":
        raise PackError(f"adapter kind {config.get('kind')!r}: only 'lora' adapters are packed so far")
    targets = {}
    for layer, spec in config.get("targets", {}).items():
        try:
            a, b = arrays[f"{layer}/A"], arrays[f"{layer}/B"]
            rank, alpha = int(spec["rank"]), float(spec.get("alpha", spec["rank"]))
        except KeyError as exc:
            raise PackError(f"adapter layer {layer!r}: missing {exc}") from None
        if a.shape[0] != rank or b.shape[1] != rank:
            raise PackError(f"adapter layer {layer!r}: A {a.shape} and B {b.shape} do not have rank {rank}")
        targets[layer] = (a, b, alpha / rank)
    for key in ("name", "version", "sequence"):
        if key not in config:
            raise PackError(f"adapter.json lacks {key!r}")
    return FloatLora(str(config["name"]), str(config["version"]), int(config["sequence"]),
                     dict(config.get("tags", {})), targets)


@dataclass
class PackReport:
    name: str
    bytes: int
    layers: dict[str, dict[str, Any]]


def pack(adapter: FloatLora, slotmap: dict[str, Any], private_key: Ed25519PrivateKey) -> tuple[bytes, PackReport]:
    if not slotmap.get("slots"):
        raise PackError("the bundle has no slots")
    layout = slotmap["slots"][0]["tensors"]  # every slot has the same layout
    by_layer: dict[str, dict[str, dict[str, Any]]] = {}
    for t in layout:
        by_layer.setdefault(t["layer"], {})[t["role"]] = t
    unknown = sorted(set(adapter.targets) - set(by_layer))
    if unknown:
        raise PackError(f"adapter layers {unknown} have no slot in this bundle; slots exist for {sorted(by_layer)}")
    tensors: list[tuple[str, str, np.ndarray]] = []
    reports: dict[str, dict[str, Any]] = {}
    for t in layout:
        layer, role = t["layer"], t["role"]
        if layer in adapter.targets and t["kind"] != "lora":
            raise PackError(f"layer {layer!r} has a {t['kind']} slot; a LoRA adapter cannot fill it")
        tensors.append((layer, role, np.zeros(t["shape"], np.dtype(t["dtype"]))))  # zero-fill by default
    index = {(layer, role): i for i, (layer, role, _) in enumerate(tensors)}
    for layer, (a, b, scaling) in adapter.targets.items():
        ta, tb = by_layer[layer]["A"], by_layer[layer]["B"]
        r_max, fan_in = ta["shape"][0], int(np.prod(ta["shape"][1:]))
        out = tb["shape"][0]
        if a.shape[1] != fan_in or b.shape[0] != out:
            raise PackError(f"layer {layer!r}: adapter A {a.shape} / B {b.shape} do not fit the slot's "
                            f"fan-in {fan_in} and {out} outputs")
        a_q, b_q, report = quantize_lora(a, b, scaling, ta["scales"][0], tb["scales"][0], r_max)
        tensors[index[(layer, "A")]] = (layer, "A", a_q.reshape(ta["shape"]))
        tensors[index[(layer, "B")]] = (layer, "B", b_q.reshape(tb["shape"]))
        reports[layer] = asdict(report)
    macs = sum(int(np.prod(t["shape"])) for t in layout if t["role"] in ("A", "B"))
    metadata = {"name": adapter.name, "version": adapter.version, "sequence": adapter.sequence, "kind": "lora",
                "tags": adapter.tags, "base_digest": slotmap["base_digest"],
                "performance": {"slot_weights": macs, "bytes": sum(x.nbytes for _, _, x in tensors)}}
    data = build_package(metadata, tensors, private_key)
    return data, PackReport(adapter.name, len(data), reports)


def keygen(out_dir: str | Path) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private = out / "signing_key.pem"
    public = out / "signing_key.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise PackError(f"cannot read signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise PackError(f"{path} is not an Ed25519 private key")
    return key


__all__ = ["FloatLora", "LoraQuantReport", "PackError", "PackReport", "keygen", "load_adapter", "load_private_key", "pack"]
