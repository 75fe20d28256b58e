"""The digits example end to end: bundle, signing key, signed packages and test rows.

Used by `tinyswap demo` and `tinyswap bench`: everything comes from the committed files in
models/digits (weights, plans, adapters, test split); nothing is trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyswap.resources import models_dir

DIGITS = models_dir() / "digits"


@dataclass
class DigitsBundle:
    model: str
    bundle_dir: Path
    model_bytes: bytes
    slotmap: dict[str, Any]
    public_key_pem: Path
    keyring: Any  # tinyswap.package.Keyring
    packages: dict[str, bytes]  # adapter domain -> signed package
    package_paths: dict[str, Path]
    adapters: dict[str, Any]  # domain -> export.adapter_source.FloatAdapter
    reports: dict[str, Any]  # domain -> packer report
    images: dict[str, np.ndarray]  # domain -> int8 model inputs (quantized)
    labels: np.ndarray
    arena_bytes: int = 0
    private_key: Any = field(default=None, repr=False)


def prepare(out_dir: Path, model: str = "cnn") -> DigitsBundle:
    """Compile models/digits/<model> into out_dir/bundle, make a fresh Ed25519 key pair in
    out_dir/keys and pack every adapter of that model into out_dir/packages."""
    from dataclasses import asdict

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tinyswap.export.adapter_source import load_adapter
    from tinyswap.export.bundle import write_bundle
    from tinyswap.export.compiler import compile_model
    from tinyswap.export.pack import pack
    from tinyswap.export.slot_plan import SlotPlan
    from tinyswap.export.spec import load_spec
    from tinyswap.interpreter import Interpreter
    from tinyswap.package import Keyring

    out_dir.mkdir(parents=True, exist_ok=True)
    spec = load_spec(DIGITS / f"{model}.json")
    plan = SlotPlan.load(DIGITS / f"{model}.plan.json")
    compiled = compile_model(spec, plan, np.load(DIGITS / f"{model}.calibration.npy"))
    probe = Interpreter(model_content=compiled.data)
    probe.allocate_tensors()
    bundle_dir = out_dir / "bundle"
    write_bundle(compiled, bundle_dir, arena_bytes=probe.arena_bytes)
    smap = json.loads((bundle_dir / "slotmap.json").read_text())
    keys = out_dir / "keys"
    keys.mkdir(exist_ok=True)
    key = Ed25519PrivateKey.generate()
    public_pem = keys / "signing_key.pub.pem"
    public_pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    packages, paths, adapters, reports = {}, {}, {}, {}
    (out_dir / "packages").mkdir(exist_ok=True)
    for folder in sorted((DIGITS / "adapters" / model).iterdir()):
        if not (folder / "adapter.json").exists():
            continue
        adapter = load_adapter(folder)
        domain = str(adapter.tags.get("domain", folder.name))
        data, report = pack(adapter, smap, key)
        path = out_dir / "packages" / f"{adapter.name}-{adapter.version}.tsap"
        path.write_bytes(data)
        packages[domain], paths[domain], adapters[domain], reports[domain] = data, path, adapter, asdict(report)
    scale, zero_point = probe.get_input_details()[0]["quantization"]
    with np.load(DIGITS / "digits_test.npz") as npz:
        labels = npz["labels"].astype(np.int64)
        images = {}
        for domain in npz.files:
            if domain == "labels":
                continue
            x = npz[domain].astype(np.float32) / 16.0
            x = x.reshape(len(x), 64) if model == "mlp" else x.reshape(len(x), 8, 8, 1)
            images[domain] = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)
    return DigitsBundle(model, bundle_dir, compiled.data, smap, public_pem, Keyring([key.public_key()]), packages,
                        paths, adapters, reports, images, labels, probe.arena_bytes, key)


def resign(bundle: DigitsBundle, domain: str, *, name: str | None = None, sequence: int, version: str,
           tags: dict[str, Any] | None = None) -> bytes:
    """A new signed version of an adapter (another name, sequence or tags), for OTA updates."""
    import copy

    from tinyswap.export.pack import pack

    adapter = copy.deepcopy(bundle.adapters[domain])
    adapter.name = name or adapter.name
    adapter.sequence, adapter.version = sequence, version
    adapter.tags = {**adapter.tags, **(tags or {})}
    return pack(adapter, bundle.slotmap, bundle.private_key)[0]
