"""Shared by the adapter tests: an example bundle, random float adapters that fit a slot map,
signed packages, and the TFLite Micro oracle run row by row with independently built gates."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyswap.export.adapter_source import Bottleneck, FloatAdapter, Lora
from tinyswap.export.bundle import slot_map
from tinyswap.export.compiler import Compiled, compile_model
from tinyswap.export.pack import pack
from tinyswap.export.slot_plan import SlotPlan
from tinyswap.export.spec import load_spec
from tinyswap.oracles import run_tflm, tflm_interpreter

from tests.conftest import REPO

EXAMPLES = REPO / "models" / "examples"
KEY = Ed25519PrivateKey.generate()


@dataclass
class Bundle:
    compiled: Compiled
    smap: dict[str, Any]

    @property
    def data(self) -> bytes:
        return self.compiled.data


def example_bundle(name: str = "mlp", **plan_changes: Any) -> Bundle:
    spec = load_spec(EXAMPLES / f"{name}.json")
    raw = json.loads((EXAMPLES / f"{name}.plan.json").read_text())
    raw.update(plan_changes)
    compiled = compile_model(spec, SlotPlan.from_json(raw), np.load(EXAMPLES / f"{name}.calibration.npy"))
    return Bundle(compiled, slot_map(compiled).to_json())


def random_adapter(smap: Mapping[str, Any], seed: int, name: str = "A", sequence: int = 1, version: str | None = None,
                   layers: Sequence[str] | None = None, strength: float = 1.0, tags: dict | None = None,
                   kind: str | None = None) -> FloatAdapter:
    """A float adapter with a clearly visible effect on every targeted slot layer of one kind."""
    rng = np.random.default_rng(seed)
    by_layer: dict[str, dict[str, Any]] = {}
    for t in smap["slots"][0]["tensors"]:
        by_layer.setdefault(t["layer"], {})[t["role"]] = t
    kinds = {layer: next(iter(roles.values()))["kind"] for layer, roles in by_layer.items()}
    kind = kind or kinds[sorted(by_layer)[0]]
    chosen = [l for l in (layers or sorted(by_layer)) if kinds[l] == kind]
    targets: dict[str, Any] = {}
    for layer in chosen:
        roles = by_layer[layer]
        if kind == "lora":
            r = roles["A"]["shape"][0]
            k, out = int(np.prod(roles["A"]["shape"][1:])), roles["B"]["shape"][0]
            # Entries well inside the slot's fixed ranges: A within 4/sqrt(K), B at ~40% of its scale's range.
            a = rng.uniform(-2, 2, (r, k)) / np.sqrt(k)
            b = rng.uniform(-1, 1, (out, r)) * 0.4 * 127 * roles["B"]["scales"][0] * strength
            targets[layer] = Lora(a, b, 1.0)
        else:
            r, c = roles["D"]["shape"][0], int(np.prod(roles["D"]["shape"][1:]))
            d = rng.uniform(-2, 2, (r, c)) / np.sqrt(c)
            u = rng.uniform(-1, 1, (c, r)) * 0.4 * 127 * roles["U"]["scales"][0] * strength
            h_scale = roles["bias_D"]["scales"][0] / roles["D"]["scales"][0]  # bias_D is at h_scale * d_scale
            targets[layer] = Bottleneck(d, rng.uniform(0, 0.3, r) * 127 * h_scale, u, np.zeros(c))
    return FloatAdapter(name, version or f"1.{sequence}", sequence, dict(tags or {}), targets, kind)


def package(smap: Mapping[str, Any], seed: int, name: str = "A", sequence: int = 1, **kw: Any) -> bytes:
    data, _ = pack(random_adapter(smap, seed, name, sequence, **kw), dict(smap), KEY)
    return data


def gate_value(smap: Mapping[str, Any], slot: int, weight: float) -> int:
    """Independent of tinyswap.slotmap: int8 gate = round(w / scale) + zero point."""
    g = smap["gates"][slot]
    return int(np.clip(np.round(weight / g["scale"]) + g["zero_point"], -128, 127))


def gates_for_rows(smap: Mapping[str, Any], rows: Sequence[Mapping[int, float]]) -> list[np.ndarray]:
    """rows[r] = {slot: weight}; returns one [batch, 1] int8 gate input per slot."""
    out = []
    for s in range(len(smap["gates"])):
        out.append(np.array([[gate_value(smap, s, row.get(s, 0.0))] for row in rows], np.int8))
    return out


def tflm_rows(model: bytes | bytearray, x: np.ndarray, gates: Sequence[np.ndarray]) -> np.ndarray:
    """TFLite Micro cannot batch: run the golden row by row on the model bytes as they are now."""
    interp = tflm_interpreter(bytes(model))
    rows = [run_tflm(bytes(model), [x[r : r + 1], *[g[r : r + 1] for g in gates]], interp)[0] for r in range(len(x))]
    return np.concatenate(rows)


#: Encrypted package bytes -> the plaintext package they were sealed from (`sealed_package`).
PLAINTEXT_OF: dict[bytes, bytes] = {}


def sealed_package(plain: bytes, *recipients: Any) -> bytes:
    """`plain` encrypted for the X25519 public keys `recipients`, signed with KEY; remembered so
    the oracles read slot contents from the plaintext file, not through the code under test."""
    from tinyswap.envelope import seal_package

    data = seal_package(plain, KEY, list(recipients))
    PLAINTEXT_OF[data] = plain
    return data


def plaintext_of(pkg_bytes: bytes) -> bytes:
    """The plaintext package file behind `pkg_bytes` (itself unless it was sealed here)."""
    return PLAINTEXT_OF.get(bytes(pkg_bytes), pkg_bytes)


def outside_slots(smap: Mapping[str, Any], image: bytes | bytearray) -> bytes:
    """Every byte of `image` not in a slot range, from slotmap.json's own offsets and lengths."""
    keep = np.ones(len(image), bool)
    for s in smap["slots"]:
        keep[s["offset"] : s["offset"] + s["length"]] = False
    return np.frombuffer(bytes(image), np.uint8)[keep].tobytes()


def slot_holding(smap: Mapping[str, Any], image: bytes | bytearray, pkg_bytes: bytes) -> int | None:
    """Which slot's tensor bytes in the image equal the package's payload (read from the file;
    for an encrypted package, from the plaintext file it was sealed from)."""
    from tinyswap.package import parse_package

    pkg = parse_package(plaintext_of(pkg_bytes))
    wanted = {(t.layer, t.role): bytes(pkg.tensor_bytes(t)) for t in pkg.tensors}
    for slot in smap["slots"]:
        if all(bytes(image[t["offset"] : t["offset"] + t["length"]]) == wanted[(t["layer"], t["role"])]
               for t in slot["tensors"]):
            return slot["slot"]
    return None
