"""Shared by the swap manager's tests: the example bundle, three packages, a manager on a RAM
image, inputs, and the TFLite Micro oracle with gates derived from where the bytes are."""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap.package import Keyring
from tinyswap.swap import SwapManager

from tests.adapter_cases import KEY, example_bundle, gates_for_rows, package, slot_holding, tflm_rows


@pytest.fixture(scope="module")
def bundle():
    return example_bundle("mlp")


@pytest.fixture(scope="module")
def packages(bundle):
    smap = bundle.smap
    return {name: package(smap, seed, name) for seed, name in enumerate(["A", "B", "C"], start=1)}


def manager(bundle, **kw) -> SwapManager:
    return SwapManager(bytearray(bundle.data), bundle.smap, Keyring([KEY.public_key()]), **kw)


def inputs(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, (n, 64), dtype=np.int8)


def golden(m: SwapManager, bundle, x: np.ndarray, rows: list[dict[str, float]], packages: dict) -> np.ndarray:
    """TFLM on the manager's image as it is now, with gates derived from where the bytes are."""
    image = m.image.buffer
    slot_rows = []
    for row in rows:
        slots = {}
        for name, weight in row.items():
            s = slot_holding(bundle.smap, image, packages[name])
            assert s is not None, f"{name} is not in any slot"
            slots[s] = weight
        slot_rows.append(slots)
    return tflm_rows(image, x, gates_for_rows(bundle.smap, slot_rows))


def state_of(m: SwapManager) -> dict:
    """Everything a refusal must leave untouched: image bytes, slot table, adapters and the
    active set, the registry (history, entries, counters), the cache's contents and the state."""
    history = m.registry.snapshot()
    return {
        "image": bytes(m.image.buffer), "slots": m.slot_table(), "resident": m.resident(),
        "adapters": {n: m.adapter_info(n).digest for n in m.adapters}, "active": m.active_weights,
        "versions": dict(history.versions), "entries": sorted(history.entries),
        "last_sequence": dict(history.last_sequence), "cache": list(m.cache._items), "cache_used": m.cache.used,
        "state": m.export_state(),
    }


def resign(data: bytes, *, tensors_from: bytes | None = None, **changes) -> bytes:
    """A package's tensors (or `tensors_from`'s) under its metadata with `changes`, validly
    signed again with the trusted test key: what a trusted but mistaken or hostile signer sends."""
    from tinyswap.package import build_package, parse_package

    p = parse_package(data)
    meta = {k: v for k, v in p.metadata.items() if k != "tensors"}
    meta.update(changes)
    source = parse_package(tensors_from) if tensors_from is not None else p
    tensors = [(t.layer, t.role, np.frombuffer(bytes(source.tensor_bytes(t)), np.dtype(t.dtype)).reshape(t.shape))
               for t in source.tensors]
    return build_package(meta, tensors, KEY)
