"""Shared by the adapter-repository tests: a publisher rig (one key per role, a fixed clock),
device clients provisioned from its root, and a booted simulated device.

Time is fixed (`T0`) so that expiry is exercised deliberately: the publisher signs at the
time it is given, the device clients run on a clock the test sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tuf.api.metadata import Metadata

from tinyswap.export import repository as repo
from tinyswap.firmware_sim.device import Device
from tinyswap.update_client import MemoryTransport, Role, UpdateClient

from tests.tinyswap.firmware_sim.device_cases import KEYRING, bundle_for, packages_for

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
ALIGNMENT = 4096


@lru_cache(maxsize=None)
def role_keys() -> dict[Role, tuple[Ed25519PrivateKey, ...]]:
    """One key per role, two for root (threshold tests); generated once per test process."""
    return {Role.ROOT: (Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()),
            Role.TARGETS: (Ed25519PrivateKey.generate(),), Role.SNAPSHOT: (Ed25519PrivateKey.generate(),),
            Role.TIMESTAMP: (Ed25519PrivateKey.generate(),)}


def packages() -> dict[str, bytes]:
    """A1, A2 (same adapter, higher sequence), B1, C1: packages signed by the device keyring's key."""
    return packages_for(ALIGNMENT)


class Clock:
    """A device real-time clock the test can set."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Rig:
    """A repository folder, its keys and the publisher's clock."""

    dir: Path
    keys: dict[Role, list[Ed25519PrivateKey]]
    now: datetime = T0
    root_threshold: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str) -> repo.ListedTarget:
        return repo.add_package(self.dir, packages()[name], self.keys[Role.TARGETS], now=self.now)

    def publish(self) -> repo.RepositorySummary:
        return repo.publish(self.dir, self.keys[Role.SNAPSHOT], self.keys[Role.TIMESTAMP], now=self.now)

    def release(self, *names: str) -> repo.RepositorySummary:
        for n in names:
            self.add(n)
        return self.publish()

    def root_bytes(self, version: int = 1) -> bytes:
        return (self.dir / "metadata" / f"{version}.root.json").read_bytes()

    def files(self) -> dict[str, bytes]:
        """The repository as a server would serve it (path -> bytes), to tamper with."""
        return MemoryTransport.from_directory(self.dir).files

    def client(self, state_dir: Path, transport: MemoryTransport | None = None, clock: Clock | None = None,
               trusted_time: datetime | None = None) -> UpdateClient:
        return UpdateClient.provision(state_dir, self.root_bytes(), transport or MemoryTransport(self.files()),
                                      clock=clock if clock is not None else Clock(self.now), trusted_time=trusted_time)


def new_rig(tmp_path: Path, *, root_threshold: int = 1, lifetimes: repo.Lifetimes = repo.Lifetimes(),
            now: datetime = T0) -> Rig:
    keys = {role: list(k) for role, k in role_keys().items()}
    if root_threshold == 1:
        keys[Role.ROOT] = keys[Role.ROOT][:1]
    directory = tmp_path / "repo"
    repo.init_repository(directory, keys, thresholds={Role.ROOT: root_threshold}, lifetimes=lifetimes, now=now)
    return Rig(directory, keys, now, root_threshold)


def resign(md_bytes: bytes, *keys: Ed25519PrivateKey, version: int | None = None,
           expires: datetime | None = None, change: Any = None) -> bytes:
    """Metadata re-signed (after optional changes) by `keys`: what an attacker holding them, or a
    test forging a corner case, can produce."""
    from securesystemslib.signer import CryptoSigner

    md = Metadata.from_bytes(md_bytes)
    if version is not None:
        md.signed.version = version
    if expires is not None:
        md.signed.expires = expires
    if change is not None:
        change(md.signed)
    md.signatures.clear()
    for k in keys:
        md.sign(CryptoSigner(k), append=True)
    return md.to_bytes()


def new_device() -> Device:
    bundle = bundle_for(ALIGNMENT)
    device = Device("mcu-qspi", bundle.data, bundle.smap, KEYRING)
    device.provision()
    device.boot()
    return device


def device_snapshot(device: Device, client: UpdateClient) -> tuple[dict[str, bytes], Any, dict[str, bytes]]:
    """Everything a refused update must leave as it was: flash images, the device record and the
    client's trusted metadata (and trusted time) bytes."""
    state = {p.relative_to(client.state_dir).as_posix(): (p.read_bytes() if not p.is_symlink() else
                                                           str(p.readlink()).encode())
             for p in sorted(client.state_dir.rglob("*")) if p.is_file() or p.is_symlink()}
    return device.flash_images(), device.record, state


__all__ = ["ALIGNMENT", "Clock", "HOUR", "KEYRING", "Rig", "T0", "device_snapshot", "new_device", "new_rig",
           "packages", "resign", "role_keys"]
