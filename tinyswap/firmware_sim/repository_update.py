"""A simulated device updating its adapters from a TUF adapter repository.

`update_from(device, client)` is the OTA loop of a real device: refresh the repository's
metadata (`tinyswap.update_client.UpdateClient`, python-tuf's ngclient underneath), pick the
newest listed package of each adapter name, download each one verified by the length and
SHA-256 the targets role lists, and install it with `Device.install`, which verifies the
package itself again (signature, base model, slot layout, anti-rollback, device class).

Two independent layers, on purpose: TUF says which packages are current and that the bytes are
the ones listed (it stops rollback, freeze, mix-and-match and endless-data attacks, and
survives key compromise by rotation); the package signature and sequence number say that the
adapter was packed by a trusted key for this model and is newer than the one installed.

All or nothing, before the first flash operation: the refresh, every download and every
package check (`SwapManager.verify`, the size and device-class checks of `Device.install`)
run first; only when all passed are the packages installed. A refused repository update
or package therefore leaves the flash images, the device record and the client's trusted
metadata as they were (the client verifies with `refresh(commit=False)` and commits only when
every package passed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from tinyswap.firmware_sim.device import Device, InstallResult
from tinyswap.package import parse_package
from tinyswap.update_client import ListedPackage, RepositoryState, UpdateClient


@dataclass(frozen=True)
class RepositoryUpdate:
    """What one `update_from` did: the repository state it verified, the packages it installed
    (or found already accepted) and the digests it brought live."""

    state: RepositoryState
    installed: tuple[InstallResult, ...]
    swapped: tuple[str, ...]


def _wanted(state: RepositoryState, names: Iterable[str] | None) -> list[ListedPackage]:
    newest = state.newest()
    chosen = sorted(newest) if names is None else [n for n in names if n in newest]
    return [newest[n] for n in chosen]


def update_from(device: Device, client: UpdateClient, *, names: Iterable[str] | None = None, swap: bool = False,
                permanent: bool = False) -> RepositoryUpdate:
    """Install the newest listed package of each adapter name (or of `names`) on a booted device;
    `swap=True` also brings each one live (`Device.swap`, on trial unless `permanent`).

    Raises a `tinyswap.update_client.RepositoryError` for a refused repository update and the
    device's own errors for a refused package, always before anything on the device changed."""
    # Metadata verified but not adopted until every package it leads to has verified too.
    state = client.refresh(commit=False)
    try:
        known = device.state()["adapters"]
        downloads: list[bytes] = []
        for listed in _wanted(state, names):
            entry = known.get(listed.name)
            data = client.download(listed)
            pkg = parse_package(data)
            if (entry is not None and pkg.content_digest in entry["versions"]) or device.store.exists(pkg.content_digest):
                continue  # this exact package is already an accepted version, or already stored
            device.check_package(data)  # what `install` checks, nothing written
            downloads.append(data)
    except BaseException:
        client.discard()
        raise
    client.commit()
    installed = tuple(device.install(data) for data in downloads)
    swapped = tuple(device.swap(r.digest, permanent=permanent) for r in installed) if swap else ()
    return RepositoryUpdate(state, installed, swapped)


__all__ = ["RepositoryUpdate", "update_from"]
