"""The device side of the adapter repository: a TUF client that finds and fetches adapter packages.

Why it is built this way:

* Verification is python-tuf's `ngclient.Updater`, not ours: it implements the TUF client
  workflow (root chain, timestamp, snapshot, targets, length and hash of every file) and we
  only wrap it. What this module adds is what a device needs around it: a transport without a
  network (`DirectoryTransport` reads a published repository folder, `MemoryTransport` serves
  bytes a test can tamper with, both behind one `FetcherInterface`), a directory the device
  owns for its trusted metadata, a trusted time, and one typed error per TUF attack.
* All or nothing: `refresh()` runs the Updater on a staging copy of the trusted metadata and
  adopts it only when the whole refresh verified; `refresh(commit=False)` goes further and
  waits for `commit()`, so that a device can adopt new metadata only once every package it
  leads to has verified as well (tinyswap/firmware_sim/repository_update.py). A refused update
  leaves the device's trusted metadata and trusted time byte for byte as they were, so the
  next try starts from the same verified state. (TUF allows keeping an intermediate timestamp
  that verified; giving it up costs nothing here, the previous state is still a verified
  one.) The switch is two renames; `_recover()` finishes one a power cut interrupted.
* The trust anchor is the root the device was provisioned with (`UpdateClient.provision`),
  kept in its own directory; later roots are accepted only through the root chain ngclient
  verifies (each new root signed by a threshold of the previous root's keys and of its own).
* Every ngclient exception becomes a `RepositoryError` subclass named after the attack it
  stops (`ERRORS_BY_ATTACK`); the version-number and hash failures are told apart (rollback
  vs mix-and-match) by comparing the refused file's version with the one the device trusted
  before the refresh. That comparison only chooses the name: ngclient already refused.

Trusted time (the rule): expiry is compared with the device's *reference time*, the maximum of

  1. its real-time clock, if it has one (`clock`: default `system_clock`, the host clock standing
     in for an RTC; `None` means no RTC),
  2. the trusted time it persisted: the factory time given at provisioning, raised after each
     accepted refresh to the issue time (`x-tinyswap-issued`, signed by the timestamp role) of
     the newest timestamp metadata accepted, when that issue time is not after its own expiry.

The reference time never goes backwards, so a device whose clock battery died cannot be fed
metadata that expired before the newest time it has verified. A device without a clock detects
a freeze only up to the newest time it has verified: that is the limit of any clock-less client.
The timestamp key is thereby also trusted for time: a stolen timestamp key could push the
trusted time forward (a denial of service, never an install), one more reason to rotate it.
ngclient reads the host clock once, in `TrustedMetadataSet.__init__`, into the attribute
`reference_time` of the Updater's private `_trusted_set`; there is no public way to pass a
time, so `_new_updater()` overwrites that attribute right after constructing the Updater and before
`refresh()` reads it. `tests/tinyswap/test_update_client.py` pins this (a refresh refused for a
device time after expiry while the host clock says the metadata is fresh, and one accepted the
other way round); if a python-tuf
release moves the attribute, `_new_updater()` raises `ClientStateError` instead of silently using
the host clock.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Callable, Iterator, Mapping, Protocol
from urllib.parse import unquote

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Snapshot, TargetFile, Timestamp
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from tinyswap.errors import TinySwapError

#: Where the publisher writes and the transports read (relative to the repository folder).
METADATA_DIR = "metadata"
TARGETS_DIR = "targets"
#: The signed field of timestamp metadata that carries its issue time (ISO 8601, UTC).
ISSUED_FIELD = "x-tinyswap-issued"
#: The custom field of a target that describes the adapter package it is.
CUSTOM_FIELD = "tinyswap"
# ngclient asks for URLs; ours are paths in the repository folder under a scheme of our own,
# so nothing can ever reach a network.
_URL_PREFIX = "tinyswap-repo:/"
_SAFE_PATH = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
_CHUNK = 16 * 1024


class Role(str, Enum):
    """The four top-level TUF roles (the publisher signs with them, the device verifies them)."""

    ROOT = "root"
    TARGETS = "targets"
    SNAPSHOT = "snapshot"
    TIMESTAMP = "timestamp"


# ----------------------------------------------------------------------------------- errors
class RepositoryError(TinySwapError):
    """The adapter repository update was refused; the device's trusted metadata and flash are
    unchanged. Each subclass names the TUF attack or failure that was stopped."""


class MetadataRollbackError(RepositoryError):
    """Rollback attack: metadata older than the version the device already trusts was served."""


class FreezeError(RepositoryError):
    """Indefinite freeze attack: the metadata served is expired at the device's reference time."""


class MixAndMatchError(RepositoryError):
    """Mix-and-match attack: a metadata file is not the version, length or hash its parent lists."""


class ThresholdError(RepositoryError):
    """Metadata lacks a threshold of valid signatures from its role's keys (unsigned, too few
    signatures, or signed by a key the role does not list, such as a revoked one)."""


class UnlistedTargetError(RepositoryError):
    """Arbitrary software attack: the package asked for is not listed by the targets role."""


class TargetMismatchError(RepositoryError):
    """Arbitrary software attack: the package's bytes differ from the length or hashes listed."""


class EndlessDataError(RepositoryError):
    """Endless data attack: a file is longer than its listed length or the device's limit."""


class MalformedMetadataError(RepositoryError):
    """Metadata cannot be parsed, is of the wrong type, or is inconsistent with its parent."""


class RepositoryUnavailableError(RepositoryError):
    """The transport could not deliver a file (missing, unreadable): no attack, but no update."""


class ClientStateError(RepositoryError):
    """The device's own update state is unusable (not provisioned, unreadable, or a python-tuf
    without the reference-time attribute this module relies on)."""


#: The TUF attack each error stops, by the attack's name in the TUF specification.
ERRORS_BY_ATTACK: Mapping[str, type[RepositoryError]] = {
    "rollback attack": MetadataRollbackError,
    "indefinite freeze attack": FreezeError,
    "mix-and-match attack": MixAndMatchError,
    "arbitrary software attack (unlisted)": UnlistedTargetError,
    "arbitrary software attack (length or hash)": TargetMismatchError,
    "endless data attack": EndlessDataError,
    "threshold / compromised key": ThresholdError,
}


# ------------------------------------------------------------------------------- transports
class TransportNotFound(Exception):
    """The transport has no file at that path (ngclient reads it as HTTP 404)."""


class Transport(Protocol):
    """Where the device reads the repository from; `path` is relative to the repository folder."""

    def chunks(self, path: str) -> Iterator[bytes]: ...


class DirectoryTransport:
    """A published repository folder (`tinyswap repo init/publish` writes one), read in chunks so
    that an oversized file is abandoned at the limit instead of read whole."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def chunks(self, path: str) -> Iterator[bytes]:
        file = self.root / path
        if not file.is_file():
            raise TransportNotFound(path)
        return self._read(file)

    @staticmethod
    def _read(file: Path) -> Iterator[bytes]:
        with open(file, "rb") as f:
            while chunk := f.read(_CHUNK):
                yield chunk


class MemoryTransport:
    """Files held in memory (path -> bytes): what a test serves, or tampers with, as the server."""

    def __init__(self, files: Mapping[str, bytes] | None = None) -> None:
        self.files: dict[str, bytes] = dict(files or {})

    @classmethod
    def from_directory(cls, root: str | os.PathLike[str]) -> MemoryTransport:
        base = Path(root)
        return cls({p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()})

    def chunks(self, path: str) -> Iterator[bytes]:
        if path not in self.files:
            raise TransportNotFound(path)
        data = self.files[path]
        return iter([data[i:i + _CHUNK] for i in range(0, len(data), _CHUNK)] or [b""])


class _TransportFetcher(FetcherInterface):
    """ngclient's fetcher over a `Transport`; remembers the last metadata file asked for (its
    role and the bytes served, bounded by ngclient's length limits) to name a refusal."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.last_role: str | None = None
        self.last_bytes = bytearray()

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith(_URL_PREFIX):
            raise tuf_errors.DownloadHTTPError(f"not a repository path: {url}", 404)
        path = unquote(url[len(_URL_PREFIX):])
        if not _SAFE_PATH.fullmatch(path) or ".." in path.split("/"):
            raise tuf_errors.DownloadHTTPError(f"refusing path {path!r}", 404)
        try:
            chunks = self.transport.chunks(path)
        except TransportNotFound:
            raise tuf_errors.DownloadHTTPError(f"{path}: not found", 404) from None
        if path.startswith(METADATA_DIR + "/"):
            # "N.role.json" or "role.json"
            self.last_role = path.rsplit("/", 1)[1].removesuffix(".json").split(".")[-1]
            self.last_bytes = bytearray()
            return self._record(chunks)
        return chunks

    def _record(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.last_bytes += chunk
            yield chunk


# ---------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class ClientLimits:
    """Upper bounds on what the device downloads (endless data): metadata sizes and root chain."""

    root_bytes: int = 64 * 1024
    timestamp_bytes: int = 16 * 1024
    snapshot_bytes: int = 256 * 1024
    targets_bytes: int = 1024 * 1024
    max_root_rotations: int = 32

    def config(self) -> UpdaterConfig:
        return UpdaterConfig(max_root_rotations=self.max_root_rotations, max_delegations=1,
                             root_max_length=self.root_bytes, timestamp_max_length=self.timestamp_bytes,
                             snapshot_max_length=self.snapshot_bytes, targets_max_length=self.targets_bytes)


@dataclass(frozen=True)
class ListedPackage:
    """An adapter package the targets role lists: where it is, its length and SHA-256, and the
    name, version and sequence the publisher read from it (the device re-verifies the package)."""

    path: str
    length: int
    sha256: str
    name: str
    version: str
    sequence: int


@dataclass(frozen=True)
class RepositoryState:
    """What the device trusts after a refresh."""

    root_version: int
    timestamp_version: int
    snapshot_version: int
    targets_version: int
    reference_time: datetime
    packages: tuple[ListedPackage, ...]

    def newest(self) -> dict[str, ListedPackage]:
        """The highest-sequence listed package of each adapter name."""
        best: dict[str, ListedPackage] = {}
        for p in self.packages:
            if p.name not in best or p.sequence > best[p.name].sequence:
                best[p.name] = p
        return best


Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The host's clock, standing in for a device real-time clock."""
    return datetime.now(timezone.utc)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def parse_time(text: str) -> datetime:
    return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def format_time(moment: datetime) -> str:
    return _utc(moment).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------------- client
class UpdateClient:
    """A device's TUF client. `state_dir` is the device's own: `metadata/` (trusted metadata,
    managed by ngclient), `trusted_time.json` and short-lived staging folders."""

    def __init__(self, state_dir: str | os.PathLike[str], transport: Transport, *,
                 clock: Clock | None = system_clock, limits: ClientLimits = ClientLimits()) -> None:
        self.state_dir = Path(state_dir)
        self.transport = transport
        self.clock = clock
        self.limits = limits
        self._recover()
        if not (self.metadata_dir / "root.json").exists():
            raise ClientStateError(f"{self.state_dir} holds no trusted root: provision the device first")
        self._state: RepositoryState | None = None
        self._updater: Updater | None = None
        self._fetcher: _TransportFetcher | None = None
        self._infos: dict[str, TargetFile] = {}
        self._pending: Path | None = None  # a staging folder verified by refresh(commit=False)

    @classmethod
    def provision(cls, state_dir: str | os.PathLike[str], root: bytes, transport: Transport, *,
                  trusted_time: datetime | None = None, clock: Clock | None = system_clock,
                  limits: ClientLimits = ClientLimits()) -> UpdateClient:
        """Factory step: install the trust anchor (root metadata bytes, verified against itself)
        and the factory trusted time in a new state directory."""
        state = Path(state_dir)
        metadata = state / METADATA_DIR
        if metadata.exists():
            raise ClientStateError(f"{state} is already provisioned")
        metadata.mkdir(parents=True)
        try:
            # The Updater verifies the root against itself and persists it as root_history/N.root.json.
            Updater(str(metadata), _URL_PREFIX + METADATA_DIR, fetcher=_TransportFetcher(transport),
                    config=limits.config(), bootstrap=bytes(root))
        except (tuf_errors.RepositoryError, ValueError) as exc:
            shutil.rmtree(metadata)
            raise ThresholdError(f"the provisioning root does not verify: {exc}") from exc
        if trusted_time is not None:
            _write_atomic(state / "trusted_time.json",
                          json.dumps({"trusted_time": format_time(trusted_time)}).encode())
        return cls(state, transport, clock=clock, limits=limits)

    # ------------------------------------------------------------ state
    @property
    def metadata_dir(self) -> Path:
        return self.state_dir / METADATA_DIR

    @property
    def state(self) -> RepositoryState | None:
        """The state the last successful `refresh()` verified (None before one)."""
        return self._state

    def trusted_time(self) -> datetime | None:
        path = self.state_dir / "trusted_time.json"
        if not path.exists():
            return None
        try:
            return parse_time(json.loads(path.read_text())["trusted_time"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ClientStateError(f"{path} is unreadable: {exc}") from exc

    def reference_time(self) -> datetime:
        """The time expiry is checked against (module docstring: the trusted-time rule)."""
        candidates = [t for t in (self.clock() if self.clock else None, self.trusted_time()) if t is not None]
        if not candidates:
            raise ClientStateError("no clock and no trusted time: provision the device with a trusted time")
        return max(_utc(t) for t in candidates)

    def trusted_versions(self) -> dict[Role, int]:
        """Versions of the metadata the device trusts now (a role it never fetched: absent)."""
        out: dict[Role, int] = {}
        for role in Role:
            md = _read_metadata(self.metadata_dir / f"{role.value}.json")
            if md is not None:
                out[role] = md.signed.version
        return out

    def _recover(self) -> None:
        """Finish or undo a switch of metadata folders that a power cut interrupted."""
        old = self.state_dir / (METADATA_DIR + ".old")
        if old.exists():
            if self.metadata_dir.exists():
                shutil.rmtree(old)
            else:
                old.rename(self.metadata_dir)
        for staging in self.state_dir.glob("staging-*"):
            shutil.rmtree(staging, ignore_errors=True)

    # ------------------------------------------------------------ refresh
    def _new_updater(self, metadata_dir: Path, fetcher: _TransportFetcher, reference: datetime) -> Updater:
        updater = Updater(str(metadata_dir), _URL_PREFIX + METADATA_DIR, target_base_url=_URL_PREFIX + TARGETS_DIR,
                          fetcher=fetcher, config=self.limits.config(), bootstrap=None)
        trusted_set = getattr(updater, "_trusted_set", None)
        if not isinstance(getattr(trusted_set, "reference_time", None), datetime):
            raise ClientStateError("this python-tuf has no Updater._trusted_set.reference_time; the device "
                                   "reference time cannot be applied")
        # Private attribute, read by every expiry check of the refresh (module docstring).
        trusted_set.reference_time = reference  # type: ignore[union-attr]
        return updater

    def refresh(self, *, commit: bool = True) -> RepositoryState:
        """Verify the repository's newest metadata and adopt it, or refuse with a `RepositoryError`
        and change nothing.

        `commit=False` verifies without adopting: `download()` works on the verified state and
        `commit()` (or `discard()`) decides afterwards, so that a caller can make "metadata and
        every package it needs verified" one all-or-nothing step."""
        self.discard()
        reference = self.reference_time()
        before = {role: _read_metadata(self.metadata_dir / f"{role.value}.json") for role in Role}
        staging = Path(tempfile.mkdtemp(prefix="staging-", dir=self.state_dir))
        metadata = staging / METADATA_DIR
        try:
            shutil.copytree(self.metadata_dir, metadata, symlinks=True)
            fetcher = _TransportFetcher(self.transport)
            try:
                updater = self._new_updater(metadata, fetcher, reference)
                updater.refresh()
                listed = _read_metadata(metadata / "targets.json")
                if listed is None:
                    raise MalformedMetadataError("the refresh left no targets metadata")
                infos: dict[str, TargetFile] = {}
                for path in sorted(listed.signed.targets):
                    info = updater.get_targetinfo(path)  # from the trusted set: nothing is downloaded
                    if info is not None:
                        infos[path] = info
            except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
                raise _classify(exc, fetcher, before) from exc
            state = RepositoryState(
                root_version=_version(metadata / "root.json"), timestamp_version=_version(metadata / "timestamp.json"),
                snapshot_version=_version(metadata / "snapshot.json"),
                targets_version=_version(metadata / "targets.json"), reference_time=reference,
                packages=tuple(_listed(info) for info in infos.values()))
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise ClientStateError(f"cannot stage the trusted metadata in {self.state_dir}: {exc}") from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._pending = staging
        self._state, self._updater, self._fetcher, self._infos = state, updater, fetcher, infos
        if commit:
            self.commit()
        return state

    def commit(self) -> None:
        """Adopt the metadata the last `refresh(commit=False)` verified, and raise the trusted
        time to its timestamp's issue time."""
        if self._pending is None:
            return
        staged = self._pending / METADATA_DIR
        try:
            issued = _issued(_read_metadata(staged / "timestamp.json"))
            # Two renames; `_recover` completes an interrupted switch at the next start.
            old = self.state_dir / (METADATA_DIR + ".old")
            self.metadata_dir.rename(old)
            staged.rename(self.metadata_dir)
            shutil.rmtree(old)
            trusted = self.trusted_time()
            if issued is not None and (trusted is None or issued > trusted):
                _write_atomic(self.state_dir / "trusted_time.json",
                              json.dumps({"trusted_time": format_time(issued)}).encode())
        except OSError as exc:
            raise ClientStateError(f"cannot update the trusted metadata in {self.state_dir}: {exc}") from exc
        finally:
            shutil.rmtree(self._pending, ignore_errors=True)
            self._pending = None

    def discard(self) -> None:
        """Forget metadata verified by `refresh(commit=False)` and not committed."""
        if self._pending is not None:
            shutil.rmtree(self._pending, ignore_errors=True)
            self._pending = None
            self._state, self._updater, self._fetcher, self._infos = None, None, None, {}

    # ------------------------------------------------------------ targets
    def packages(self) -> tuple[ListedPackage, ...]:
        if self._state is None:
            raise ClientStateError("refresh() first: no verified repository state yet")
        return self._state.packages

    def download(self, package: ListedPackage | str) -> bytes:
        """The package's bytes, verified against the length and hashes the targets role lists."""
        if self._state is None or self._updater is None or self._fetcher is None:
            raise ClientStateError("refresh() first: no verified repository state yet")
        path = package.path if isinstance(package, ListedPackage) else package
        info = self._infos.get(path)
        if info is None:
            raise UnlistedTargetError(f"{path!r} is not listed by the repository's targets metadata")
        with tempfile.TemporaryDirectory(prefix="staging-", dir=self.state_dir) as tmp:
            out = Path(tmp) / "target"
            try:
                self._updater.download_target(info, filepath=str(out))
            except tuf_errors.LengthOrHashMismatchError as exc:
                raise TargetMismatchError(f"{path}: the bytes served differ from the listed length or hashes: "
                                          f"{exc}") from exc
            except tuf_errors.DownloadLengthMismatchError as exc:
                raise EndlessDataError(f"{path}: more than the listed {info.length} bytes served: {exc}") from exc
            except tuf_errors.DownloadError as exc:
                raise RepositoryUnavailableError(f"{path}: cannot be downloaded: {exc}") from exc
            return out.read_bytes()


# ---------------------------------------------------------------------------------- helpers
def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _read_metadata(path: Path) -> Metadata | None:
    try:
        return Metadata.from_bytes(path.read_bytes())
    except (OSError, tuf_errors.RepositoryError):
        return None


def _version(path: Path) -> int:
    md = _read_metadata(path)
    if md is None:
        raise MalformedMetadataError(f"{path.name} is missing after a verified refresh")
    return md.signed.version


def _issued(timestamp: Metadata | None) -> datetime | None:
    """The issue time of verified timestamp metadata, if it carries one not after its expiry."""
    if timestamp is None:
        return None
    text = timestamp.signed.unrecognized_fields.get(ISSUED_FIELD)
    if not isinstance(text, str):
        return None
    try:
        issued = parse_time(text)
    except ValueError:
        return None
    return issued if issued <= timestamp.signed.expires else None


def _listed(info: TargetFile) -> ListedPackage:
    custom = info.custom.get(CUSTOM_FIELD) if isinstance(info.custom, dict) else None
    if not isinstance(custom, dict):
        custom = {}
    sequence = custom.get("sequence")
    return ListedPackage(path=info.path, length=info.length, sha256=str(info.hashes.get("sha256", "")),
                         name=str(custom.get("name", info.path)), version=str(custom.get("version", "")),
                         sequence=sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else -1)


def _meta_versions(md: Metadata | None) -> dict[str, int]:
    """The versions a timestamp or snapshot lists for its children ({} for other roles)."""
    if md is None:
        return {}
    signed = md.signed
    if isinstance(signed, Timestamp):
        return {"snapshot.json": signed.snapshot_meta.version}
    if isinstance(signed, Snapshot):
        return {name: meta.version for name, meta in signed.meta.items()}
    return {}


def _older_than_trusted(role: str | None, served: bytes, before: Mapping[Role, Metadata | None]) -> bool:
    """True if the refused file is (or lists) an older version than the device trusted: a rollback."""
    try:
        role_enum = Role(role)
        new = Metadata.from_bytes(bytes(served))
    except (ValueError, tuf_errors.RepositoryError):
        return False
    trusted = before.get(role_enum)
    if role_enum is Role.SNAPSHOT and before.get(Role.TIMESTAMP) is not None:
        # The snapshot version the device trusted is the one its trusted timestamp names.
        if new.signed.version < _meta_versions(before[Role.TIMESTAMP])["snapshot.json"]:
            return True
    if role_enum is Role.TARGETS and before.get(Role.SNAPSHOT) is not None:
        listed = _meta_versions(before[Role.SNAPSHOT]).get("targets.json")
        if listed is not None and new.signed.version < listed:
            return True
    if trusted is None:
        return False
    if new.signed.version < trusted.signed.version:
        return True
    old_meta, new_meta = _meta_versions(trusted), _meta_versions(new)
    return any(new_meta.get(name, version) < version for name, version in old_meta.items())


def _classify(exc: Exception, fetcher: _TransportFetcher, before: Mapping[Role, Metadata | None]) -> RepositoryError:
    """The typed refusal for an ngclient exception (which already refused the metadata)."""
    role = fetcher.last_role
    where = f"{role} metadata" if role else "repository"
    if isinstance(exc, tuf_errors.ExpiredMetadataError):
        return FreezeError(f"indefinite freeze attack refused: {where}: {exc}")
    if isinstance(exc, tuf_errors.UnsignedMetadataError):
        return ThresholdError(f"{where} is not signed by a threshold of its role's keys: {exc}")
    if isinstance(exc, (tuf_errors.BadVersionNumberError, tuf_errors.LengthOrHashMismatchError)):
        if _older_than_trusted(role, fetcher.last_bytes, before):
            return MetadataRollbackError(f"rollback attack refused: {where} is older than the trusted one: {exc}")
        return MixAndMatchError(f"mix-and-match attack refused: {where} is not the version, length or hash its "
                                f"parent lists: {exc}")
    if isinstance(exc, tuf_errors.DownloadLengthMismatchError):
        return EndlessDataError(f"endless data attack refused: {where}: {exc}")
    if isinstance(exc, tuf_errors.DownloadError):
        return RepositoryUnavailableError(f"{where} cannot be downloaded: {exc}")
    return MalformedMetadataError(f"{where} refused: {type(exc).__name__}: {exc}")


__all__ = [
    "CUSTOM_FIELD", "ClientLimits", "ClientStateError", "DirectoryTransport", "ERRORS_BY_ATTACK", "EndlessDataError",
    "FreezeError", "ISSUED_FIELD", "ListedPackage", "MalformedMetadataError", "MemoryTransport",
    "MetadataRollbackError", "MixAndMatchError", "RepositoryError", "RepositoryState", "RepositoryUnavailableError",
    "Role", "TargetMismatchError", "ThresholdError", "Transport", "TransportNotFound", "UnlistedTargetError",
    "UpdateClient", "format_time", "parse_time", "system_clock",
]
