"""The adapter packer: a float adapter + a bundle's slot map -> a signed package.

Adapters come from `tinyswap.export.adapter_source` (tinyswap's directory format or a PEFT LoRA
directory). Every slot target the adapter does not name is zero-filled (its slot stays inert);
a layer the slot plan does not have is refused, and so is an adapter of the wrong kind for a
layer's slot; LoRA ranks above the slot's are reduced by truncated SVD and the error reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyswap.export.adapter_quant import BottleneckQuantReport, LoraQuantReport, quantize_bottleneck, quantize_lora
from tinyswap.export.adapter_source import AdapterSourceError, Bottleneck, FloatAdapter, FloatLora, Lora, load_adapter
from tinyswap.errors import TinySwapError
from tinyswap.export.errors import PackError
from tinyswap.keys import KeyAlgorithm, write_key_pair
from tinyswap.keys import load_private_key as load_key
from tinyswap.errors import InputFileError
from tinyswap.package import build_package


@dataclass
class PackReport:
    name: str
    bytes: int
    layers: dict[str, dict[str, Any]]
    payload_bytes: int = 0


def _slot_macs(layout: list[dict[str, Any]]) -> int:
    """Multiply-accumulates one slot adds per row: each int8 weight tensor is used once per
    output position (1 for dense layers; conv slots repeat it per pixel, not counted here)."""
    return sum(int(np.prod(t["shape"])) for t in layout if t["dtype"] == "int8")


def _finite_delta(lora: Lora) -> bool:
    """Whether `scaling * B @ A` is finite: an alpha of 1e308 passes every field check (it is a
    finite number) yet turns the delta into infinities that no int8 value can hold."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(lora.scaling) and np.isfinite((lora.b * lora.scaling) @ lora.a).all())


def _quantize_target(layer: str, target: Lora | Bottleneck, roles: dict[str, dict[str, Any]]
                     ) -> tuple[dict[tuple[str, str], np.ndarray], LoraQuantReport | BottleneckQuantReport]:
    """One layer's adapter quantized to its slot tensors' shapes and scales, with the report."""
    if isinstance(target, Lora):
        ta, tb = roles["A"], roles["B"]
        r_max, fan_in, out = ta["shape"][0], int(np.prod(ta["shape"][1:])), tb["shape"][0]
        if target.a.shape[1] != fan_in or target.b.shape[0] != out:
            raise PackError(f"layer {layer!r}: adapter A {target.a.shape} / B {target.b.shape} do not fit the "
                            f"slot's fan-in {fan_in} and {out} outputs")
        if not _finite_delta(target):
            raise PackError(f"layer {layer!r}: the scaled delta (alpha / rank = {target.scaling:g}) x B @ A "
                            "overflows float64; check lora_alpha / alpha_pattern")
        a_q, b_q, report = quantize_lora(target.a, target.b, target.scaling, ta["scales"][0], tb["scales"][0], r_max)
        return {(layer, "A"): a_q.reshape(ta["shape"]), (layer, "B"): b_q.reshape(tb["shape"])}, report
    td, tu, tbd, tbu = roles["D"], roles["U"], roles["bias_D"], roles["bias_U"]
    r_max, width = td["shape"][0], int(np.prod(td["shape"][1:]))
    if target.down.shape[1] != width:
        raise PackError(f"layer {layer!r}: adapter D {target.down.shape} does not fit the slot's width {width}")
    d_q, bd_q, u_q, bu_q, report = quantize_bottleneck(
        target.down, target.down_bias, target.up, target.up_bias, td["scales"][0], tbd["scales"][0],
        tu["scales"][0], tbu["scales"][0], r_max)
    return {(layer, "D"): d_q.reshape(td["shape"]), (layer, "U"): u_q.reshape(tu["shape"]),
            (layer, "bias_D"): bd_q.reshape(tbd["shape"]), (layer, "bias_U"): bu_q.reshape(tbu["shape"])}, report


def pack(adapter: FloatAdapter, slotmap: dict[str, Any], private_key: Ed25519PrivateKey) -> tuple[bytes, PackReport]:
    if not slotmap.get("slots"):
        raise PackError("the bundle has no slots")
    layout = slotmap["slots"][0]["tensors"]  # every slot has the same layout
    by_layer: dict[str, dict[str, dict[str, Any]]] = {}
    for t in layout:
        by_layer.setdefault(t["layer"], {})[t["role"]] = t
    unknown = sorted(set(adapter.targets) - set(by_layer))
    if unknown:
        raise PackError(f"adapter layers {unknown} have no slot in this bundle; slots exist for {sorted(by_layer)}")
    for layer in adapter.targets:
        slot_kind = next(iter(by_layer[layer].values()))["kind"]
        if slot_kind != adapter.kind:
            raise PackError(f"layer {layer!r} has a {slot_kind} slot; a {adapter.kind} adapter cannot fill it")
    tensors = {(t["layer"], t["role"]): np.zeros(t["shape"], np.dtype(t["dtype"])) for t in layout}  # zero-fill
    reports: dict[str, dict[str, Any]] = {}
    for layer, target in adapter.targets.items():
        try:
            # An overflow inside the quantizer (a finite but astronomically large delta) is
            # refused, never rounded into garbage int8 values.
            with np.errstate(over="raise", invalid="raise"):
                quantized, report = _quantize_target(layer, target, by_layer[layer])
        except FloatingPointError as exc:
            raise PackError(f"layer {layer!r}: the adapter's values overflow the packer's float64 arithmetic "
                            f"({exc}); its delta is far beyond what the slot's int8 scales can hold "
                            "(check lora_alpha / alpha_pattern and the weights)") from None
        except TinySwapError as exc:
            if isinstance(exc, PackError):
                raise
            raise PackError(f"layer {layer!r}: {exc}") from exc
        tensors.update(quantized)
        reports[layer] = asdict(report)
    ordered = [(t["layer"], t["role"], tensors[(t["layer"], t["role"])]) for t in layout]
    payload = sum(x.nbytes for _, _, x in ordered)
    metadata = {"name": adapter.name, "version": adapter.version, "sequence": adapter.sequence, "kind": adapter.kind,
                "tags": adapter.tags, "base_digest": slotmap["base_digest"],
                "slot_plan": {"num_slots": slotmap.get("num_slots"), "layers": sorted(by_layer)},
                "performance": {"slot_macs_per_row": _slot_macs(layout), "bytes": payload,
                                "accuracy": adapter.accuracy},
                "source": adapter.source}
    data = build_package(metadata, ordered, private_key)
    return data, PackReport(adapter.name, len(data), reports, payload)


def keygen(out_dir: str | Path) -> tuple[Path, Path]:
    """A new Ed25519 signing key pair: `signing_key.pem` (private, mode 0600) and `signing_key.pub.pem`."""
    out = Path(out_dir)
    return write_key_pair(Ed25519PrivateKey.generate(), out / "signing_key.pem", out / "signing_key.pub.pem")


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """A signer's Ed25519 private key; any refusal is a `PackError` naming the file."""
    try:
        key = load_key(path, KeyAlgorithm.ED25519, "signing key")
    except InputFileError as exc:
        raise PackError(f"cannot read signing key {path}: {exc.problem}") from exc
    assert isinstance(key, Ed25519PrivateKey)
    return key


__all__ = ["AdapterSourceError", "Bottleneck", "FloatAdapter", "FloatLora", "Lora", "LoraQuantReport", "PackError",
           "PackReport", "keygen", "load_adapter", "load_private_key", "pack"]
