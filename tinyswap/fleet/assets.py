"""What the fleet's server holds: the digits CNN bundle, its signing keys (the second for a
mid-rollout rotation), every release's signed packages and the held-out test split.

Deterministic: the keys derive from the scenario seed (Ed25519 signatures are deterministic),
so the same scenario gives the same package bytes, digests and report on any engine. Workers
receive `DeviceAssets` (public material only); private keys stay in `ServerAssets`.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyswap.fleet.errors import FleetError
from tinyswap.fleet.scenario import FleetScenario
from tinyswap.fleet.shadow import ShadowEvaluator
from tinyswap.package import Keyring, parse_package
from tinyswap.quantize import quantize_int8
from tinyswap.slotmap import SlotMap

MODEL = "cnn"  # the digits CNN: its logits layer carries the LoRA slot that on-device training uses


def signing_key(seed: int, generation: int) -> Ed25519PrivateKey:
    """The fleet's signing key `generation` (0: the first, 1: after the rotation), from the seed."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"tinyswap-fleet/{seed}/{generation}".encode()).digest())


@dataclass(frozen=True)
class DeviceAssets:
    """Everything a worker needs to simulate devices: public keys, bundle, packages, test rows."""

    model: bytes
    slotmap: dict[str, Any]
    public_keys: tuple[bytes, ...]  # raw Ed25519 public keys, by generation
    packages: tuple[dict[str, bytes], ...]  # per release: domain -> signed package
    adapter_names: dict[str, str]  # domain -> adapter name
    images: dict[str, np.ndarray] = field(repr=False)  # domain -> int8 test inputs (held out)
    labels: np.ndarray = field(repr=False)

    def keyring(self, generations: int = 1) -> Keyring:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        return Keyring([Ed25519PublicKey.from_public_bytes(k) for k in self.public_keys[:generations]])


@dataclass
class ServerAssets:
    devices: DeviceAssets
    keys: tuple[Ed25519PrivateKey, ...]
    adapters: dict[str, Any]  # domain -> committed FloatAdapter
    base_correct: dict[str, np.ndarray]
    correct: list[dict[str, np.ndarray]]  # per release: domain -> rows its package gets right
    filler: bytes | None = None  # a package of another name, for slot-1 shadow measurements

    @property
    def shadow(self) -> ShadowEvaluator:
        d = self.devices
        return ShadowEvaluator(d.model, SlotMap.from_json(d.slotmap), d.keyring(len(d.public_keys)), d.images,
                               d.labels, self.filler)


def _test_split(built: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
    from tinyswap.commands.digits import DIGITS

    with np.load(DIGITS / "digits_test.npz") as npz:
        labels = npz["labels"].astype(np.int64)
        images = {d: quantize_int8(npz[d].astype(np.float32).reshape(-1, 8, 8, 1) / 16.0, built.input_scale,
                                   built.input_zero_point) for d in npz.files if d != "labels"}
    return images, labels


@functools.lru_cache(maxsize=1)
def _compiled() -> Any:
    """The digits CNN bundle (deterministic; compiled once per process)."""
    from tinyswap.commands.digits import compile_digits

    with tempfile.TemporaryDirectory() as tmp:
        return compile_digits(MODEL, Path(tmp) / "bundle", None)


def build_base(scenario: FleetScenario) -> ServerAssets:
    """The bundle, keys, committed adapters and test split; releases are added by `add_release`."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from tinyswap.commands.digits import DIGITS
    from tinyswap.export.adapter_source import load_adapter

    built = _compiled()
    keys = (signing_key(scenario.seed, 0), signing_key(scenario.seed, 1))
    adapters = {}
    for folder in sorted((DIGITS / "adapters" / MODEL).iterdir()):
        if (folder / "adapter.json").exists():
            adapter = load_adapter(folder)
            adapters[str(adapter.tags.get("domain", folder.name))] = adapter
    images, labels = _test_split(built)
    publics = tuple(k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) for k in keys)
    devices = DeviceAssets(built.data, built.slotmap, publics, (), {d: a.name for d, a in adapters.items()}, images,
                           labels)
    server = ServerAssets(devices, keys, adapters, {}, [])
    filler = copy.deepcopy(adapters["thick"])
    filler.name = "shadow-filler"
    server.filler = sign(server, filler, 1, keys[0])
    server.base_correct = server.shadow.base(sorted(images))
    return server


def sign(server: ServerAssets, adapter: Any, sequence: int, key: Ed25519PrivateKey) -> bytes:
    from tinyswap.export.pack import pack

    adapter = copy.deepcopy(adapter)
    adapter.sequence, adapter.version = sequence, f"{sequence}.0.0"
    return pack(adapter, server.devices.slotmap, key)[0]


def make_bad(server: ServerAssets, domain: str, points: int, sequence: int, key: Ed25519PrivateKey,
             seed: int) -> tuple[bytes, float, float]:
    """The committed adapter of `domain` with seeded noise on its logits LoRA's B, at the
    smallest scale of a geometric grid whose package loses at least `points` points against the
    committed package on the domain's held-out rows, measured bit-exactly by the shadow
    evaluator. Only devices of `domain` run it: the release regresses that domain only."""
    from tinyswap.export.adapter_source import Lora

    good = server.adapters[domain]
    shadow = server.shadow
    reference = shadow.correct_in_slot0({domain: sign(server, good, sequence, key)})[domain].mean()
    noise = np.random.default_rng(seed).standard_normal(good.targets["fc"].b.shape)

    def attempt(scale: float) -> tuple[bytes, float]:
        bad = copy.deepcopy(good)
        lora = bad.targets["fc"]
        bad.targets["fc"] = Lora(lora.a, lora.b + scale * np.abs(lora.b).mean() * noise, lora.scaling)
        data = sign(server, bad, sequence, key)
        return data, float(reference - shadow.correct_in_slot0({domain: data})[domain].mean())

    for step in range(24):  # scales 0.5 * 2^(step / 2): the first that loses enough
        scale = 0.5 * 2 ** (step / 2)
        data, drop = attempt(scale)
        if drop >= points / 100:
            return data, scale, drop
    raise FleetError(f"no noise scale made the {domain} adapter lose {points} points")


def add_release(server: ServerAssets, index: int, packages: dict[str, bytes]) -> None:
    """Record release `index`'s signed packages and their shadow correctness."""
    d = server.devices
    server.devices = DeviceAssets(d.model, d.slotmap, d.public_keys, (*d.packages, dict(packages)),
                                  d.adapter_names, d.images, d.labels)
    server.correct.append(server.shadow.correct(packages))
    assert len(server.correct) == index + 1


def package_names(packages: dict[str, bytes]) -> dict[str, str]:
    return {d: parse_package(p).name for d, p in packages.items()}


__all__ = ["DeviceAssets", "MODEL", "ServerAssets", "add_release", "build_base", "make_bad", "sign", "signing_key"]
