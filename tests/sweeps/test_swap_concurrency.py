"""Concurrency: inference threads and a swapping thread share one model image.

Every output must equal the output of one committed state: for each request, all rows that
asked for the swapped adapter show one version of it (in whichever slot it was), rows that
asked for the other adapter or for the base model show exactly those. The expected outputs are
computed beforehand with fresh interpreters on copies of the model with each version written
into each slot (not through the manager).
"""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from tinyswap import Interpreter
from tinyswap.package import Keyring, parse_package
from tinyswap.swap import SwapManager

from tests.adapter_cases import KEY, example_bundle, gate_value, package
from tests.conftest import FULL


def patched(data: bytes, smap: dict, slot: int, pkg_bytes: bytes) -> bytearray:
    pkg = parse_package(pkg_bytes)
    out = bytearray(data)
    by_key = {(t.layer, t.role): t for t in pkg.tensors}
    for t in smap["slots"][slot]["tensors"]:
        out[t["offset"] : t["offset"] + t["length"]] = pkg.tensor_bytes(by_key[(t["layer"], t["role"])])
    return out


def expected_outputs(data: bytes, smap: dict, pkg_bytes: bytes, x: np.ndarray) -> list[np.ndarray]:
    """One output per slot the adapter could live in, gate 1.0 on that slot only."""
    outs = []
    for s in range(len(smap["slots"])):
        gates = [np.full((len(x), 1), gate_value(smap, g, 1.0 if g == s else 0.0), np.int8)
                 for g in range(len(smap["gates"]))]
        outs.append(Interpreter(model_content=patched(data, smap, s, pkg_bytes)).run(x, *gates)[0])
    return outs


@pytest.mark.parametrize("invokes,swaps", [(10_000, 100) if FULL else (2_000, 20)])
def test_concurrent_inference_and_swaps_only_ever_see_committed_states(invokes: int, swaps: int) -> None:
    bundle = example_bundle("mlp")
    smap, data = bundle.smap, bundle.data
    versions = [package(smap, 100 + v, "user", sequence=v + 1) for v in range(swaps + 1)]
    other = package(smap, 7, "other")
    x = np.random.default_rng(0).integers(-128, 128, (4, 64), dtype=np.int8)
    zero_gates = [np.full((4, 1), gate_value(smap, g, 0.0), np.int8) for g in range(len(smap["gates"]))]
    want_base = Interpreter(model_content=data).run(x, *zero_gates)[0]
    want_other = expected_outputs(data, smap, other, x)
    want_user = [expected_outputs(data, smap, v, x) for v in versions]  # [version][slot]

    m = SwapManager(bytearray(data), smap, Keyring([KEY.public_key()]), wait_seconds=30.0)
    m.load_adapter(versions[0])
    m.load_adapter(other)
    bad: list[str] = []
    seen_versions: set[int] = set()
    done = threading.Event()
    lock = threading.Lock()

    completed = [0] * 4
    errors: list[BaseException] = []

    def infer_worker(seed: int, count: int) -> None:
        try:
            check_requests(seed, count)
        except BaseException as exc:  # surfaced below: a dead thread must fail the test
            errors.append(exc)

    def check_requests(seed: int, count: int) -> None:
        rng = random.Random(seed)
        for _ in range(count):
            completed[seed] += 1
            names = [rng.choice(["user", "other", "__base__"]) for _ in range(4)]
            y = m.infer(x, adapter_names=names)[0]
            states = set()
            for r, name in enumerate(names):
                if name == "__base__":
                    ok = np.array_equal(y[r], want_base[r])
                elif name == "other":
                    ok = any(np.array_equal(y[r], w[r]) for w in want_other)
                else:
                    matches = {(v, s) for v in range(len(versions)) for s in range(2)
                               if np.array_equal(y[r], want_user[v][s][r])}
                    ok = bool(matches)
                    states.add(frozenset(v for v, _ in matches))
                if not ok:
                    with lock:
                        bad.append(f"row {r} ({name}) matches no committed state")
            if states:  # every "user" row of one request shows one common version
                common = frozenset.intersection(*states)
                with lock:
                    if not common:
                        bad.append(f"rows of one request show different versions: {states}")
                    seen_versions.update(common)

    def swap_worker() -> None:
        try:
            for v in versions[1:]:
                m.hotswap_adapter("user", v)
            done.set()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=infer_worker, args=(i, invokes // 4)) for i in range(4)]
    swapper = threading.Thread(target=swap_worker)
    for t in threads + [swapper]:
        t.start()
    for t in threads + [swapper]:
        t.join(timeout=600)
    assert not errors, f"worker threads raised: {errors[:3]}"
    assert done.is_set(), "the swapping thread did not finish"
    assert sum(completed) == invokes // 4 * 4
    assert not bad, f"{len(bad)} outputs matched no committed state, e.g. {bad[:3]}"
    assert m.adapter_info("user").sequence == swaps + 1
    assert len(seen_versions) > 1, "the inference threads never observed a swap"
    print(f"{invokes} invokes on 4 threads, {swaps} swaps, {len(seen_versions)} versions observed, "
          f"{m.stats['swaps']} slot writes, 0 outputs outside a committed state")


@pytest.mark.parametrize("invokes,cycles", [(4_000, 40) if FULL else (600, 8)])
def test_a_mutator_under_full_slot_pressure_never_shows_an_uncommitted_state(invokes: int, cycles: int) -> None:
    # Three adapters share two slots, so nearly every request and every mutation evicts.
    # A mutator thread makes adapters resident, sets the default, rolls back, hot swaps, deletes
    # and reloads while inference threads run; every row must equal one committed version of
    # what it asked for (in whichever slot), and every refusal must be a typed AdapterError.
    from tinyswap.swap import AdapterError

    bundle = example_bundle("mlp")
    smap, data = bundle.smap, bundle.data
    a_versions = [package(smap, 200 + v, "A", sequence=v + 1) for v in range(cycles + 2)]
    c_versions = [package(smap, 400 + v, "C", sequence=v + 1) for v in range(cycles + 1)]
    b = package(smap, 300, "B")
    x = np.random.default_rng(1).integers(-128, 128, (3, 64), dtype=np.int8)
    zero_gates = [np.full((3, 1), gate_value(smap, g, 0.0), np.int8) for g in range(len(smap["gates"]))]
    want = {"__base__": [Interpreter(model_content=data).run(x, *zero_gates)[0]]}
    want["A"] = [w for v in a_versions for w in expected_outputs(data, smap, v, x)]
    want["B"] = expected_outputs(data, smap, b, x)
    want["C"] = [w for v in c_versions for w in expected_outputs(data, smap, v, x)]

    m = SwapManager(bytearray(data), smap, Keyring([KEY.public_key()]), wait_seconds=30.0)
    m.load_adapter(a_versions[0])
    m.hotswap_adapter("A", a_versions[1])
    m.load_adapter(b)
    m.load_adapter(c_versions[0])
    bad: list[str] = []
    errors: list[BaseException] = []
    refused: dict[str, int] = {}
    lock = threading.Lock()

    def infer_worker(seed: int, count: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(count):
                names = [rng.choice(["A", "B", "C", "__base__"]) for _ in range(3)]
                try:
                    y = m.infer(x, adapter_names=names)[0]
                except AdapterError as exc:  # C deleted at that moment, or three adapters in
                    with lock:                 # one request for two slots: typed, nothing ran
                        key = f"request {type(exc).__name__}"
                        refused[key] = refused.get(key, 0) + 1
                    continue
                for r, name in enumerate(names):
                    if not any(np.array_equal(y[r], w[r]) for w in want[name]):
                        with lock:
                            bad.append(f"row {r} ({name}) matches no committed version")
        except BaseException as exc:  # a dead thread must fail the test
            errors.append(exc)

    def mutator() -> None:
        rng = random.Random(99)
        try:
            for k in range(cycles):
                for op in rng.sample(["resident", "default", "rollback", "recycle_c"], 4):
                    try:
                        if op == "resident":
                            m.make_resident(rng.choice(["A", "B", "C"]))
                        elif op == "default":
                            m.set_adapter(rng.choice(["A", "B", "C"]))
                        elif op == "rollback":
                            m.rollback("A")
                            m.hotswap_adapter("A", a_versions[k + 2])
                        else:
                            m.delete_adapter("C")
                            m.load_adapter(c_versions[k + 1])
                    except AdapterError as exc:
                        with lock:
                            key = f"{op} {type(exc).__name__}"
                            refused[key] = refused.get(key, 0) + 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=infer_worker, args=(i, invokes // 3)) for i in range(3)]
    threads.append(threading.Thread(target=mutator))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "a thread did not finish (a self-wait or a deadlock)"
    assert not errors, f"threads raised: {errors[:3]}"
    assert not bad, f"{len(bad)} rows matched no committed version, e.g. {bad[:3]}"
    assert m.adapter_info("A").sequence == cycles + 2 and m.adapter_info("C").sequence == cycles + 1
    print(f"{invokes} requests on 3 threads beside {cycles} mutation cycles on 2 slots for 3 adapters: "
          f"{m.stats['swaps']} slot writes, refused {refused}, 0 rows outside a committed version")
