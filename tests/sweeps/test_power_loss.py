"""Power loss during install + swap, revert and confirm, replayed at every operation.

MCUboot's method (`sim/src/image.rs` `run_perm_with_fails` / `run_revert_with_fails`): run the
scenario once cleanly and count its N mutating flash operations (all parts of the device, on
one power supply), then for each i in 1..N cut power before operation i, after it, and in the
middle of it (a torn write, which MCUboot's simulator lacks), power on, boot,
and check (`device_cases.check_device`):

* each slot holds exactly its old or exactly its new content (vs. the package files);
* no enabled slot differs from its committed digest;
* the LittleFS store mounts and holds every package the state refers to;
* inference equals TFLite Micro on the executed bytes with independently built gates;
* the outcome is the one the cut allows: "new" exactly when the commit that makes it so had
  completed, "old" otherwise (a trial version never survives a reboot);
* re-applying the same package (and confirming) converges to the clean run's final state.

The idle step (`Device.idle`: metadata areas and the next slot erased in advance) is replayed
the same way: cut anywhere in it, nothing is lost, the device boots and the swap after it lands;
and the swap into the pre-erased slot (programs only) keeps the old-or-new guarantee.

The `qspi+sd-enc` rig installs encrypted packages (`tinyswap.envelope`): the same invariants,
plus no run of the plaintext payload in the store's flash after any cut.

The default run replays a seeded sample of cut points on one rig per erase value; the
exhaustive sweep over every rig x erase value x write alignment is marked slow:
`TINYSWAP_FULL=1 .venv/bin/python -m pytest -p no:xdist -m "" -s tests/sweeps/test_power_loss.py`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import pytest

from tinyswap.firmware_sim.device import Device
from tinyswap.firmware_sim.errors import PowerLoss
from tinyswap.firmware_sim.flash import CutPoint, PowerCut
from tinyswap.package import parse_package

from tests.tinyswap.firmware_sim.device_cases import RIGS, Expect, check_device, fingerprint, inputs, \
    packages_for, packages_of
from tests.tinyswap.test_envelope import leaked
from tests.tinyswap.test_envelope import plaintext_windows as envelope_windows

X = inputs(2)
# Both erase values, XIP and RAM, and encrypted packages (the store keeps ciphertext; each
# install and boot decrypts into RAM) on the mcu-qspi rig.
# The Ethos-U rig (Vela's stitched model, slots plain buffers) runs when the npu extra is installed.
CI_COMBOS = [("qspi+sd", 0xFF, 1), ("nor4k", 0x00, 8), ("ram-nor4k", 0xFF, 1), ("qspi+sd-enc", 0xFF, 1),
             ("qspi+sd-npu", 0xFF, 1)]
CI_SAMPLE = 10  # cut points per scenario and combo in the default run
# The idle step's scenarios in the default run: XIP with both erase values and alignments, and RAM.
IDLE_SCENARIOS = ["idle", "idle+swap"]
CI_COMBOS_IDLE = [("qspi+sd", 0xFF, 1), ("nor4k", 0x00, 8), ("ram-nor4k", 0xFF, 1)]
CI_SAMPLE_IDLE = 4  # the two sides of the threshold and the first operation, plus one
CI_SAMPLE_NPU = 5  # on the Ethos-U rig (its bundle needs Vela compiles first): the edges and two more
FULL_COMBOS = [(r, ev, a) for r in RIGS for ev in (0xFF, 0x00) for a in RIGS[r].aligns]
CUT_COUNTS: dict[str, int] = {}


@dataclass(frozen=True)
class Scenario:
    """start: "old" (A1 confirmed) or "trial" (A2 committed on trial, then power off); pre:
    run after boot, not cut; op: what is cut; op_boots: the op is the boot itself; threshold:
    "new" iff the op's last commit completed (else always "old"); finish: bring any state to
    the intended final one."""

    name: str
    start: str
    pre: Callable[[Device, dict], None] | None
    op: Callable[[Device, dict], None]
    op_boots: bool
    threshold: bool
    finish: Callable[[Device, dict], None]


def _update_perm(d: Device, p: dict) -> None:
    d.update(p["A2"], permanent=True)


def _update_trial(d: Device, p: dict) -> None:
    d.update(p["A2"])


def _boot(d: Device, p: dict) -> None:
    d.boot()


def _confirm(d: Device, p: dict) -> None:
    d.confirm()


def _update_and_confirm(d: Device, p: dict) -> None:
    d.update(p["A2"])
    d.confirm()


def _install(d: Device, p: dict) -> None:
    d.install(p["A2"])


def _idle(d: Device, p: dict) -> None:
    d.idle(prepare_for="A")


def _install_and_idle(d: Device, p: dict) -> None:
    d.install(p["A2"])
    d.idle(prepare_for="A")


def _swap_perm(d: Device, p: dict) -> None:
    d.swap(parse_package(p["A2"]).content_digest, permanent=True)


SCENARIOS = {
    "install+swap": Scenario("install+swap", "old", None, _update_perm, False, True, _update_perm),
    "install+swap-trial": Scenario("install+swap-trial", "old", None, _update_trial, False, False,
                                   _update_and_confirm),
    "revert": Scenario("revert", "trial", None, _boot, True, False, lambda d, p: None),
    "confirm": Scenario("confirm", "old", _update_trial, _confirm, False, True, _update_and_confirm),
    # The idle step (pre-erase of the metadata areas and of the slot the swap will take): a cut
    # anywhere in it loses nothing, and the swap after the reboot still lands.
    "idle": Scenario("idle", "old", _install, _idle, False, False, _update_perm),
    # The swap into a pre-erased slot (programs only): old or new exactly as without the step.
    "idle+swap": Scenario("idle+swap", "old", _install_and_idle, _swap_perm, False, True, _update_perm),
}
EXPECT_SLOTS = dict(old=["A1", None], new=["A1", "A2"])
# A RAM-placed model starts every boot with empty slots and writes the active adapter first.
EXPECT_SLOTS_RAM = dict(old=["A1", None], new=["A2", None])


def expect(rig: str, pkgs: dict) -> Expect:
    slots = EXPECT_SLOTS if RIGS[rig].profile.model_placement == "xip" else EXPECT_SLOTS_RAM
    return Expect(pkgs=pkgs, **slots)


@lru_cache(maxsize=None)
def start_images(rig: str, ev: int, wa: int, start: str) -> tuple[tuple[str, bytes], ...]:
    r = RIGS[rig]
    p = packages_of(rig)
    d = r.device(r.bundle(), ev, wa)
    d.provision()
    d.boot()
    d.update(p["A1"], permanent=True)
    d.activate("A", permanent=True)
    if start == "trial":
        d.update(p["A2"])
        assert d.trial
    return tuple(d.flash_images().items())


def device_from(rig: str, ev: int, wa: int, start: str) -> Device:
    r = RIGS[rig]
    return r.device(r.bundle(), ev, wa, flash_images=dict(start_images(rig, ev, wa, start)),
                    record_ops=False)


@lru_cache(maxsize=None)
def plaintext_windows(alignment: int) -> frozenset[bytes]:
    """The 16-byte plaintext windows of the rig's packages (`test_envelope.plaintext_windows`)."""
    out: set[bytes] = set()
    for data in packages_for(alignment).values():
        out |= envelope_windows(bytes(parse_package(data).payload))
    return frozenset(out)


def reboot(d: Device) -> None:
    d.power.disarm()
    d.power_on()
    d.boot()


def settle(d: Device, sc: Scenario, p: dict) -> tuple:
    """Finish the scenario, power-cycle, boot: the converged state's fingerprint."""
    sc.finish(d, p)
    d.power_cut()
    reboot(d)
    return fingerprint(d)


@dataclass
class Clean:
    n: int  # mutating operations of the op
    k: int | None  # operations completed when the deciding commit finished
    final: tuple


@lru_cache(maxsize=None)
def clean_run(rig: str, ev: int, wa: int, scenario: str) -> Clean:
    sc = SCENARIOS[scenario]
    p = packages_of(rig)
    d = device_from(rig, ev, wa, sc.start)
    d.timeline.record_ops = True
    if not sc.op_boots:
        d.boot()
    if sc.pre is not None:
        sc.pre(d, p)
    t0 = d.timeline.now
    d.arm_power_cuts()
    sc.op(d, p)
    n = d.mutations
    commits = [e.args["mutations"] for e in d.timeline.events if e.name == "commit" and e.ts >= t0]
    k = max(commits) if sc.threshold else None
    assert n > 0
    if sc.threshold:
        assert k == n  # the deciding commit is the op's last write
    return Clean(n, k, settle(d, sc, p))


def run_cut(rig: str, ev: int, wa: int, scenario: str, op: int, when: CutPoint) -> str:
    sc = SCENARIOS[scenario]
    r = RIGS[rig]
    smap = r.bundle().smap
    p = packages_of(rig)
    clean = clean_run(rig, ev, wa, scenario)
    d = device_from(rig, ev, wa, sc.start)
    if not sc.op_boots:
        d.boot()
    if sc.pre is not None:
        sc.pre(d, p)
    d.arm_power_cuts([PowerCut(op, when)])
    with pytest.raises(PowerLoss):
        sc.op(d, p)
    assert not d.booted and not d.power.powered
    reboot(d)
    outcome = check_device(d, smap, expect(rig, p), X, infer=r.npu is None)
    if r.encrypted:  # encrypted at rest whatever the cut: no plaintext run reached the store
        assert not leaked(plaintext_windows(r.alignment), d.partitions["store"].image_bytes())
    completed = op if when is CutPoint.AFTER else op - 1
    expected = "new" if sc.threshold and completed >= clean.k else "old"
    assert outcome == expected, f"cut {when.value} op {op}/{clean.n}: got {outcome}, expected {expected}"
    # Re-applying the same package converges to the clean run's final state.
    assert settle(d, sc, p) == clean.final, f"cut {when.value} op {op}: re-applying did not converge"
    return outcome


def cut_points(n: int) -> list[tuple[int, CutPoint]]:
    return [(i, w) for i in range(1, n + 1) for w in (CutPoint.BEFORE, CutPoint.AFTER, CutPoint.TORN)]


def sweep(rig: str, ev: int, wa: int, scenario: str, sample: int | None) -> None:
    if RIGS[rig].npu is not None:
        pytest.importorskip("ethosu.vela")
    clean = clean_run(rig, ev, wa, scenario)
    points = cut_points(clean.n)
    if sample is not None and sample < len(points):
        rng = random.Random(f"{rig}-{ev}-{wa}-{scenario}")
        # Always include both sides of the threshold (the last operation, cut before and after).
        edges = [(1, CutPoint.BEFORE), (clean.n, CutPoint.BEFORE), (clean.n, CutPoint.AFTER)]
        rest = [pt for pt in points if pt not in edges]
        points = edges + rng.sample(rest, max(0, sample - len(edges)))
    outcomes = {run_cut(rig, ev, wa, scenario, i, w) for i, w in points}
    CUT_COUNTS[f"{rig}/{ev:#04x}/a{wa}/{scenario}"] = len(points)
    print(f"\n{rig} erase={ev:#04x} align={wa} {scenario}: N={clean.n} ops, {len(points)} cut points, "
          f"outcomes {sorted(outcomes)}")
    if SCENARIOS[scenario].threshold:
        assert outcomes == {"old", "new"}
    else:
        assert outcomes == {"old"}


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s not in IDLE_SCENARIOS])
@pytest.mark.parametrize("rig,ev,wa", CI_COMBOS, ids=[f"{r}-{ev:02x}-a{a}" for r, ev, a in CI_COMBOS])
def test_power_cut_sample(rig, ev, wa, scenario):
    sweep(rig, ev, wa, scenario, CI_SAMPLE_NPU if RIGS[rig].npu else CI_SAMPLE)


@pytest.mark.parametrize("scenario", IDLE_SCENARIOS)
@pytest.mark.parametrize("rig,ev,wa", CI_COMBOS_IDLE, ids=[f"{r}-{ev:02x}-a{a}" for r, ev, a in CI_COMBOS_IDLE])
def test_power_cut_sample_idle_step(rig, ev, wa, scenario):
    sweep(rig, ev, wa, scenario, CI_SAMPLE_IDLE)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("rig,ev,wa", FULL_COMBOS, ids=[f"{r}-{ev:02x}-a{a}" for r, ev, a in FULL_COMBOS])
def test_power_cut_exhaustive(rig, ev, wa, scenario):
    sweep(rig, ev, wa, scenario, None)


def chained_cuts(rig: str, ev: int, wa: int, seed: int, cuts: int = 5) -> int:
    """Up to `cuts` power cuts at random points while the device keeps retrying (boot, update,
    confirm); the invariants hold after each; the final state is the clean one."""
    r = RIGS[rig]
    smap = r.bundle().smap
    p = packages_of(rig)
    sc = SCENARIOS["confirm"]  # final state: A2 confirmed
    final = clean_run(rig, ev, wa, "confirm").final
    rng = random.Random(seed)
    d = device_from(rig, ev, wa, "old")

    def attempt(dev: Device) -> None:
        dev.boot()
        _update_and_confirm(dev, p)

    done = 0
    for _ in range(cuts):
        probe = r.device(r.bundle(), ev, wa, flash_images=d.flash_images(), record_ops=False)
        probe.arm_power_cuts()
        attempt(probe)
        n = probe.mutations
        if n == 0:
            break
        d.arm_power_cuts([PowerCut(rng.randint(1, n), rng.choice(list(CutPoint)))])
        d.power_on()
        with pytest.raises(PowerLoss):
            attempt(d)
        done += 1
        check = r.device(r.bundle(), ev, wa, flash_images=d.flash_images(), record_ops=False)
        check.boot()
        check_device(check, smap, expect(rig, p), X, infer=r.npu is None)
    reboot(d)
    assert settle(d, sc, p) == final
    return done


@pytest.mark.parametrize("seed", range(3))
def test_chained_random_cuts(seed):
    assert chained_cuts("qspi+sd", 0xFF, 1, seed) == 5


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("rig,ev,wa", FULL_COMBOS, ids=[f"{r}-{ev:02x}-a{a}" for r, ev, a in FULL_COMBOS])
def test_chained_random_cuts_full(rig, ev, wa, seed):
    assert chained_cuts(rig, ev, wa, seed) >= 1
