"""One real simulated device as the fleet drives it: build, update with an optional power cut
at a given mutating operation, recover by booting, retry; roll back. Used by the outcome
measurement (`measure.py`) and by tier B (`tier_b.py`), so both run exactly the same steps.

The rig is the smallest honest one: the digits CNN bundle on the scenario's profile, the
default store, `record_ops=False` (spans are traced, single flash operations are not).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tinyswap.firmware_sim.device import Device
from tinyswap.firmware_sim.errors import PowerLoss
from tinyswap.firmware_sim.power import PowerCut
from tinyswap.fleet.assets import DeviceAssets
from tinyswap.package import Keyring, parse_package


class Outcome(str, enum.Enum):
    """Where a power cut during an update left the device after its next boot."""

    NONE = "none"  # the cut's operation number was past the update's last operation: no cut
    OLD = "old"  # the previous version runs, nothing on trial (the write did not complete)
    REVERTED = "reverted"  # the new version was on trial; the boot went back to the confirmed one
    NEW = "new"  # the new version is confirmed (the cut came after the confirm's commit)
    BRICKED = "bricked"  # the device did not boot


@dataclass(frozen=True)
class UpdateResult:
    outcome: Outcome  # of the first attempt's cut (NONE without a cut)
    attempts: int
    installed: bool  # the new version is confirmed at the end
    seconds: float  # device time from the first attempt to the end (install, boots, retries)
    erases: int  # sector erases over every part
    mutations: int  # mutating operations of the clean attempt that succeeded
    slot: int  # where the new version's bytes are at the end (-1: not resident)


def build_device(assets: DeviceAssets, profile: str, keyring: Keyring) -> Device:
    device = Device(profile, assets.model, assets.slotmap, keyring, record_ops=False)
    device.provision()
    device.boot()
    return device


def _erases(device: Device) -> int:
    return sum(f.snapshot().erase_ops for f in device.flashes.values())


def _confirmed(device: Device, digest: str) -> bool:
    return not device.trial and digest in device.status()["adapters"].values()


def update(device: Device, package: bytes, *, cut_at: int | None, max_attempts: int) -> UpdateResult:
    """Install, swap (on trial) and confirm `package`; with `cut_at`, power is cut at that
    mutating operation of the first attempt, the device powers on and boots, and the update is
    retried (clean) up to `max_attempts` attempts in all."""
    digest = parse_package(package).content_digest
    t0, e0 = device.timeline.now, _erases(device)
    outcome, attempts, mutations = Outcome.NONE, 0, 0
    while attempts < max_attempts:
        attempts += 1
        device.arm_power_cuts([PowerCut(cut_at)] if cut_at is not None and attempts == 1 else [])
        try:
            device.update(package)
            device.confirm()
            mutations = device.power.mutations
            break
        except PowerLoss:
            device.power_on()
            try:
                report = device.boot()
            except Exception:  # noqa: BLE001 - any failure to boot is what "bricked" counts
                return UpdateResult(Outcome.BRICKED, attempts, False, device.timeline.now - t0,
                                    _erases(device) - e0, 0, -1)
            if _confirmed(device, digest):
                outcome = Outcome.NEW
                break
            outcome = Outcome.REVERTED if report.reverted else Outcome.OLD
    device.arm_power_cuts([])
    return UpdateResult(outcome, attempts, _confirmed(device, digest), device.timeline.now - t0,
                        _erases(device) - e0, mutations, slot_of(device, package))


def slot_of(device: Device, package: bytes) -> int:
    """The slot holding `package`'s bytes now (-1: none)."""
    pkg = parse_package(package)
    label = f"{pkg.name}@{pkg.metadata.get('version')}"
    return next((slot for slot, held in sorted(device.status()["resident"].items()) if held == label), -1)


def rollback(device: Device, name: str, *, had_previous: bool) -> tuple[float, int]:
    """The fleet-wide rollback on one device: back to the previous version (or, for a first
    install, the adapter deleted), confirmed. Returns (device seconds, sector erases)."""
    t0, e0 = device.timeline.now, _erases(device)
    if had_previous:
        device.rollback(name)
    else:
        device.delete(name)
    device.confirm()
    return device.timeline.now - t0, _erases(device) - e0


__all__ = ["Outcome", "UpdateResult", "build_device", "rollback", "update"]
