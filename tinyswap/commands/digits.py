"""The digits example end to end: bundle, signing key, signed packages and test rows.

Used by `tinyswap demo` and `tinyswap bench`: everything comes from the committed files in
models/digits (weights, plans, adapters, test split); nothing is trained.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tinyswap.quantize import quantize_int8
from tinyswap.resources import models_dir

if TYPE_CHECKING:  # the compiler and the simulator are imported inside functions only
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tinyswap.export.adapter_source import FloatAdapter
    from tinyswap.export.build import BuiltBundle
    from tinyswap.export.pack import PackReport
    from tinyswap.firmware_sim.swap_latency import SwapLatency
    from tinyswap.package import Keyring

DIGITS = models_dir() / "digits"


@dataclass
class DigitsBundle:
    model: str
    built: BuiltBundle  # bundle files and the signing key pair that signed `packages`
    keyring: Keyring
    packages: dict[str, bytes]  # adapter domain -> signed package
    package_paths: dict[str, Path]
    adapters: dict[str, FloatAdapter]  # domain -> the float adapter it was packed from
    reports: dict[str, PackReport]  # domain -> packer report
    images: dict[str, np.ndarray]  # domain -> int8 model inputs (quantized)
    labels: np.ndarray
    private_key: Ed25519PrivateKey = field(repr=False)

    @property
    def bundle_dir(self) -> Path:
        assert self.built.bundle_dir is not None  # prepare() always writes the bundle
        return self.built.bundle_dir

    @property
    def model_bytes(self) -> bytes:
        return self.built.data

    @property
    def slotmap(self) -> dict[str, Any]:
        return self.built.slotmap

    @property
    def arena_bytes(self) -> int:
        """Our interpreter's activation plan; TFLite Micro's arena is `built.tflm_arena`."""
        return self.built.arena_bytes

    @property
    def public_key_pem(self) -> Path:
        assert self.built.keys is not None  # prepare() always makes a key pair
        return self.built.keys.public_key_path


def compile_digits(model: str = "cnn", bundle_dir: Path | None = None, keys_dir: Path | None = None) -> BuiltBundle:
    """models/digits/<model> compiled with its committed slot plan and calibration data."""
    from tinyswap.export.build import build_bundle
    from tinyswap.export.slot_plan import SlotPlan
    from tinyswap.export.spec import load_spec

    return build_bundle(load_spec(DIGITS / f"{model}.json"), SlotPlan.load(DIGITS / f"{model}.plan.json"),
                        np.load(DIGITS / f"{model}.calibration.npy"), bundle_dir, keys_dir=keys_dir)


def prepare(out_dir: Path, model: str = "cnn") -> DigitsBundle:
    """Compile models/digits/<model> into out_dir/bundle, make a fresh Ed25519 key pair in
    out_dir/keys and pack every adapter of that model into out_dir/packages."""
    from tinyswap.export.adapter_source import load_adapter
    from tinyswap.export.pack import pack
    from tinyswap.package import Keyring

    out_dir.mkdir(parents=True, exist_ok=True)
    built = compile_digits(model, out_dir / "bundle", out_dir / "keys")
    assert built.keys is not None
    key = built.keys.private_key()
    packages, paths, adapters, reports = {}, {}, {}, {}
    (out_dir / "packages").mkdir(exist_ok=True)
    for folder in sorted((DIGITS / "adapters" / model).iterdir()):
        if not (folder / "adapter.json").exists():
            continue
        adapter = load_adapter(folder)
        domain = str(adapter.tags.get("domain", folder.name))
        data, report = pack(adapter, built.slotmap, key)
        path = out_dir / "packages" / f"{adapter.name}-{adapter.version}.tsap"
        path.write_bytes(data)
        packages[domain], paths[domain], adapters[domain], reports[domain] = data, path, adapter, report
    with np.load(DIGITS / "digits_test.npz") as npz:
        labels = npz["labels"].astype(np.int64)
        images = {}
        for domain in npz.files:
            if domain == "labels":
                continue
            x = npz[domain].astype(np.float32) / 16.0
            x = x.reshape(len(x), 64) if model == "mlp" else x.reshape(len(x), 8, 8, 1)
            images[domain] = quantize_int8(x, built.input_scale, built.input_zero_point)
    return DigitsBundle(model, built, Keyring([key.public_key()]), packages, paths, adapters, reports, images,
                        labels, key)


def resign(bundle: DigitsBundle, domain: str, *, name: str | None = None, sequence: int, version: str,
           tags: dict[str, Any] | None = None) -> bytes:
    """A new signed version of an adapter (another name, sequence or tags), for OTA updates."""
    from tinyswap.export.pack import pack

    adapter = copy.deepcopy(bundle.adapters[domain])
    adapter.name = name or adapter.name
    adapter.sequence, adapter.version = sequence, version
    adapter.tags = {**adapter.tags, **(tags or {})}
    return pack(adapter, bundle.slotmap, bundle.private_key)[0]


def switch_latency(digits: DigitsBundle) -> list[SwapLatency]:
    """The swap latency per storage configuration that the demo and the benchmark report: the
    rot90 adapter live beside invert, then a second version of it (the mirror weights, signed
    under rot90's name with sequence 2) installed, swapped in and rolled back."""
    from tinyswap.firmware_sim.swap_latency import measure

    v2 = resign(digits, "mirror", name=digits.adapters["rot90"].name, sequence=2, version="2.0.0")
    return measure(digits.model_bytes, digits.slotmap, digits.keyring, digits.packages["rot90"], v2,
                   digits.packages["invert"])


__all__ = ["DIGITS", "DigitsBundle", "compile_digits", "prepare", "resign", "switch_latency"]
