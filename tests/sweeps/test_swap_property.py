"""The compiler's property test, through the swap manager: random base graphs (dense, conv,
residual), random slot plans, more adapters than slots (so eviction happens), random mixed
batches with composition weights, hot swaps. After every step the manager's output equals
TFLite Micro on the manager's model bytes, with gates built independently from slotmap.json
for the slots where the image's bytes equal each package's payload."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyswap.export.bundle import slot_map
from tinyswap.export.compiler import compile_model
from tinyswap.package import Keyring
from tinyswap.swap import SwapManager

from tests.adapter_cases import KEY, gates_for_rows, package, slot_holding, tflm_rows
from tests.tinyswap.export.model_cases import plans, specs


@st.composite
def cases(draw):
    spec, cal = draw(specs())
    plan = draw(plans(spec))
    return spec, cal, plan, draw(st.integers(0, 2**32 - 1))


def random_rows(rng: np.random.Generator, names: list[str], slots: int, batch: int) -> list:
    """Per row: the base model, one adapter, or a weighted composition of up to `slots`, with
    at most `slots` distinct adapters in the whole request."""
    pool = list(rng.choice(names, size=min(slots, len(names)), replace=False))
    rows = []
    for _ in range(batch):
        how = rng.integers(0, 3)
        if how == 0:
            rows.append("__base__")
        elif how == 1:
            rows.append(str(rng.choice(pool)))
        else:
            chosen = rng.choice(pool, size=int(rng.integers(1, len(pool) + 1)), replace=False)
            rows.append({str(n): float(rng.choice([0.25, 0.5, 0.75, 1.0])) for n in chosen})
    return rows


def as_weights(row) -> dict[str, float]:
    if row == "__base__":
        return {}
    return {row: 1.0} if isinstance(row, str) else dict(row)


@given(cases())
def test_manager_swaps_and_mixed_batches_match_tflite_micro(case) -> None:
    spec, cal, plan, seed = case
    rng = np.random.default_rng(seed)
    compiled = compile_model(spec, plan, cal)
    smap = slot_map(compiled).to_json()
    kinds = sorted({t.kind for t in plan.targets})
    pkgs: dict[str, bytes] = {}
    for i in range(plan.num_slots + 1):  # one adapter more than slots: eviction happens
        name = f"ad{i}"
        pkgs[name] = package(smap, seed % 10_000 + i, name, kind=str(rng.choice(kinds)))
    m = SwapManager(bytearray(compiled.data), smap, Keyring([KEY.public_key()]))
    for data in pkgs.values():
        m.load_adapter(data)
    batch = 3
    x = rng.integers(-128, 128, (batch, *spec.input_shape[1:]), dtype=np.int8)
    names = sorted(pkgs)
    for step in range(3):
        if step == 2:  # a hot swap: a new version of one adapter, in place
            name = str(rng.choice(names))
            kind = m.adapter_info(name).kind
            pkgs[name] = package(smap, seed % 10_000 + 100, name, sequence=2, kind=kind)
            m.hotswap_adapter(name, pkgs[name])
        rows = random_rows(rng, names, plan.num_slots, batch)
        ours = m.infer(x, adapter_names=rows)[0]
        slot_rows = []
        for row in rows:
            weights = {}
            for name, w in as_weights(row).items():
                s = slot_holding(smap, m.image.buffer, pkgs[name])
                assert s is not None, f"{name} is not resident after the request that used it"
                weights[s] = w
            slot_rows.append(weights)
        np.testing.assert_array_equal(ours, tflm_rows(m.image.buffer, x, gates_for_rows(smap, slot_rows)))


@pytest.mark.slow
@settings(max_examples=200)
@given(cases())
def test_full(case) -> None:  # the documented >= 200-example run (TINYSWAP_FULL=1 ... -m "")
    test_manager_swaps_and_mixed_batches_match_tflite_micro.hypothesis.inner_test(case)
