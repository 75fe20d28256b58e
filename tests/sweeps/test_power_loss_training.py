"""Power loss anywhere in on-device personalisation, training to confirm, replayed at every cut.

`test_power_loss.py`'s method on `DeviceTrainer.personalise` (train, pack, sign, install,
swap on trial, measure, confirm or revert by a reset): run it once cleanly, count its N
mutating flash operations, then for each i in 1..N cut power before operation i, after it and
in the middle of it (torn), power on, boot, and check:

* the device is not on trial, and every slot holds the whole bytes of one package in play
  (the user's old or new version) or zeros: never a mixed slot;
* every enabled slot holds exactly the package its committed digest names;
* the user's adapter is the old state (none, or the confirmed previous version) unless the
  confirm commit had completed, and then exactly the new confirmed package;
* inference through the user's adapter equals TFLite Micro on the executed bytes;
* restarting the adaptation (training keeps no checkpoint: it restarts) converges to the
  clean run's final state, the same package byte for byte.

Two operations: `confirm` (a first adaptation from the base, which the gate confirms) and
`revert` (a mislabelled retraining over a confirmed first version, which the gate reverts by
a reset; cuts land in its boot too). Two rigs: mcu-qspi as specified (QSPI NOR for the model
and metadata, the store on an SD card) and a 4 KB QSPI NOR part holding everything, erased to
0x00 with 8-byte program units. The training itself (pure arithmetic, no flash) is memoized
across the replays; every flash operation around it runs for real.

The default run replays a seeded sample of cut points; the exhaustive sweep is marked slow:
`TINYSWAP_FULL=1 .venv/bin/python -m pytest -p no:xdist -m "" -s tests/sweeps/test_power_loss_training.py`.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import pytest

from tinyswap.firmware_sim import personalise as personalise_module
from tinyswap.firmware_sim.device import Device
from tinyswap.firmware_sim.errors import PowerLoss
from tinyswap.firmware_sim.flash import KIB, CutPoint, FlashGeometry, PowerCut
from tinyswap.firmware_sim.personalise import DeviceTrainer, PersonaliseConfig
from tinyswap.firmware_sim.training import TrainedLora, TrainingConfig
from tinyswap.package import Keyring, parse_package

from tests.adapter_cases import gates_for_rows
from tests.tinyswap.firmware_sim.device_cases import RIGS, slot_contents
from tests.tinyswap.firmware_sim.training_cases import TRAINING_KEY, VENDOR_KEY, digits, tflm_outputs

# The digits bundle is 32 KB (8 sectors of 4 KB): the rigs' parts, sized for the smaller test
# bundle, get the sectors it needs (model, 2 metadata, and the nor4k store's 32).
RIG_OF = {"qspi+sd": replace(RIGS["qspi+sd"], model_geometry=lambda ev, a: FlashGeometry.uniform(
              4 * KIB, 10, erase_value=ev, write_align=a, name="qspi")),
          "nor4k": replace(RIGS["nor4k"], model_geometry=lambda ev, a: FlashGeometry.uniform(
              4 * KIB, 42, erase_value=ev, write_align=a, name="nor4k"))}
SWEEP_RIGS = [("qspi+sd", 0xFF, 1), ("nor4k", 0x00, 8)]
OPERATIONS = ["confirm", "revert"]
CI_SAMPLE = 3  # cut points per rig and operation in the default run
CONFIG = PersonaliseConfig(TrainingConfig(epochs=15))
USER, NAME = "alice", "personal-alice"
X = digits().images["mirror"][digits().held[:2]]


def device_on(rig: str, ev: int, wa: int, images: dict[str, bytes] | None = None) -> Device:
    r = RIG_OF[rig]
    d = digits()
    device = Device(r.profile, d.model, d.slotmap, Keyring([VENDOR_KEY.public_key()]),
                    model_geometry=r.model_geometry(ev, wa), model_storage=r.model_storage,
                    shared_store=None if r.separate_store else True, store_bytes=r.store_bytes,
                    flash_images=images, record_ops=False)
    # The device's training key, trusted for its user's packages: configuration kept across
    # reboots (provisioned with the device), so a boot restores the user's adapter.
    device.keyring.add(TRAINING_KEY.public_key(), tenant=USER)
    if images is None:
        device.provision()
    return device


def adapt(device: Device, mislabelled: bool) -> None:
    d = digits()
    y = d.labels[d.local]
    if mislabelled:
        y = np.random.default_rng(1).permutation(y)
    DeviceTrainer(device, TRAINING_KEY, USER).personalise(d.images["mirror"][d.local], y, CONFIG)


_TRAINED: dict[bytes, TrainedLora] = {}


@pytest.fixture(autouse=True)
def memoized_training(monkeypatch):
    """The same saved activations, labels and configuration train the same factors: replay
    them instead of recomputing (the flash work around training is what the sweep cuts)."""
    real = personalise_module.train

    def train(buffers, slot, config):
        key = hashlib.sha256(buffers["x"].tobytes() + buffers["pre"].tobytes() + buffers["labels"].tobytes()
                             + repr(config).encode()).digest()
        if key not in _TRAINED:
            out = real(buffers, slot, config)
            _TRAINED[key] = TrainedLora(out.a.copy(), out.b.copy(), out.work, out.final_loss)
        return _TRAINED[key]

    monkeypatch.setattr(personalise_module, "train", train)


@lru_cache(maxsize=None)
def start_images(rig: str, ev: int, wa: int, operation: str) -> tuple[tuple[str, bytes], ...]:
    device = device_on(rig, ev, wa)
    device.boot()
    if operation == "revert":  # a confirmed first version to retrain over
        adapt(device, mislabelled=False)
        assert device.state()["adapters"][NAME]["current"]
    return tuple(device.flash_images().items())


def packages_in(device: Device) -> dict[str, bytes]:
    return {digest: device.store.read(digest) for digest in device.store.list()}


def fingerprint(device: Device) -> tuple:
    state = device.state()
    return (repr(state["adapters"]), repr(state["slots"]), device.trial,
            hashlib.sha256(device.model_bytes_now()).hexdigest())


@dataclass(frozen=True)
class Clean:
    n: int
    k: int  # mutating operations completed when the last commit (the confirm) finished
    old: str | None  # the user's digest before
    new: str | None  # after the clean run
    packages: dict[str, bytes]  # every package in play, by digest
    final: tuple


@lru_cache(maxsize=None)
def clean_run(rig: str, ev: int, wa: int, operation: str) -> Clean:
    device = device_on(rig, ev, wa, dict(start_images(rig, ev, wa, operation)))
    device.boot()
    old = device.state()["adapters"].get(NAME, {}).get("current")
    device.timeline.record_ops = True
    t0 = device.timeline.now
    device.arm_power_cuts()
    adapt(device, mislabelled=operation == "revert")
    n = device.mutations
    commits = [e.args["mutations"] for e in device.timeline.events if e.name == "commit" and e.ts >= t0]
    new = device.state()["adapters"][NAME]["current"]
    if operation == "confirm":
        assert old is None and new is not None
    else:
        assert new == old  # the gate reverted the retraining
    return Clean(n, max(commits), old, new, packages_in(device), fingerprint(device))


def check(device: Device, clean: Clean) -> str:
    """The invariants after a boot; returns "old" or "new"."""
    d = digits()
    assert device.booted and not device.trial
    image = device.model_bytes_now()
    layout = d.slotmap["slots"][0]["tensors"]
    whole = {tuple(bytes(t["length"]) for t in layout)}
    for data in clean.packages.values():
        pkg = parse_package(data)
        by_key = {(t.layer, t.role): bytes(pkg.tensor_bytes(t)) for t in pkg.tensors}
        whole.add(tuple(by_key[(t["layer"], t["role"])] for t in layout))
    state = device.state()
    for s in range(len(d.slotmap["slots"])):
        assert slot_contents(d.slotmap, image, s) in whole, f"slot {s} holds a mix"
    for rec in state["slots"]:
        if rec["digest"] is not None:
            pkg = parse_package(clean.packages[rec["digest"]])
            by_key = {(t.layer, t.role): bytes(pkg.tensor_bytes(t)) for t in pkg.tensors}
            assert slot_contents(d.slotmap, image, rec["slot"]) == \
                tuple(by_key[(t["layer"], t["role"])] for t in d.slotmap["slots"][rec["slot"]]["tensors"])
    current = state["adapters"].get(NAME, {}).get("current")
    assert current in (clean.old, clean.new)
    if current is not None:
        y = device.infer(X, adapters=NAME, tenant=USER)[0]
        slot = next(r["slot"] for r in state["slots"] if r["digest"] == current)
        np.testing.assert_array_equal(y, golden(image, slot))
    return "new" if current == clean.new and clean.new != clean.old else "old"


_GOLDEN: dict[tuple[str, int], np.ndarray] = {}


def golden(image: bytes, slot: int) -> np.ndarray:
    key = (hashlib.sha256(image).hexdigest(), slot)
    if key not in _GOLDEN:
        _GOLDEN[key] = tflm_outputs(image, X, gates_for_rows(digits().slotmap, [{slot: 1.0}] * len(X)))
    return _GOLDEN[key]


def run_cut(rig: str, ev: int, wa: int, operation: str, op: int, when: CutPoint) -> str:
    clean = clean_run(rig, ev, wa, operation)
    device = device_on(rig, ev, wa, dict(start_images(rig, ev, wa, operation)))
    device.boot()
    device.arm_power_cuts([PowerCut(op, when)])
    with pytest.raises(PowerLoss):
        adapt(device, mislabelled=operation == "revert")
    assert not device.booted
    device.power.disarm()
    device.power_on()
    device.boot()
    outcome = check(device, clean)
    completed = op if when is CutPoint.AFTER else op - 1
    expected = "new" if operation == "confirm" and completed >= clean.k else "old"
    assert outcome == expected, f"cut {when.value} op {op}/{clean.n}: got {outcome}, expected {expected}"
    if outcome == "old":  # training restarts from the beginning and converges on the clean run
        adapt(device, mislabelled=operation == "revert")
    device.power_cut()
    device.power_on()
    device.boot()
    assert fingerprint(device) == clean.final, f"cut {when.value} op {op}: the restart did not converge"
    return outcome


def sweep(rig: str, ev: int, wa: int, operation: str, sample: int | None) -> int:
    clean = clean_run(rig, ev, wa, operation)
    points = [(i, w) for i in range(1, clean.n + 1) for w in (CutPoint.BEFORE, CutPoint.AFTER, CutPoint.TORN)]
    if sample is not None and sample < len(points):
        rng = random.Random(f"{rig}-{ev}-{wa}-{operation}")
        edges = [(clean.k, CutPoint.BEFORE), (clean.k, CutPoint.AFTER)]
        points = edges + rng.sample([p for p in points if p not in edges], sample - len(edges))
    outcomes = {run_cut(rig, ev, wa, operation, i, w) for i, w in points}
    print(f"\n{rig} erase={ev:#04x} align={wa} {operation}: N={clean.n} ops, {len(points)} cut points, "
          f"outcomes {sorted(outcomes)}")
    assert outcomes == ({"old", "new"} if operation == "confirm" else {"old"})
    return len(points)


# The default run: each rig once, each operation once.
CI_COMBOS = [(*SWEEP_RIGS[0], "confirm"), (*SWEEP_RIGS[1], "revert")]


@pytest.mark.parametrize("rig,ev,wa,operation", CI_COMBOS, ids=[f"{r}-{ev:02x}-a{a}-{o}" for r, ev, a, o in CI_COMBOS])
def test_training_power_cut_sample(rig, ev, wa, operation):
    sweep(rig, ev, wa, operation, CI_SAMPLE)


@pytest.mark.slow
@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("rig,ev,wa", SWEEP_RIGS, ids=[f"{r}-{ev:02x}-a{a}" for r, ev, a in SWEEP_RIGS])
def test_training_power_cut_exhaustive(rig, ev, wa, operation):
    sweep(rig, ev, wa, operation, None)
