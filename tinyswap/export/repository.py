"""The publisher side of the adapter repository: TUF metadata over signed adapter packages.

A `.tsap` package is already signed (tinyswap/package.py); this repository adds what a
signature alone cannot give a device: which packages are current (so an old, validly signed
package cannot be replayed as new), freshness (so a server cannot freeze a device on old
packages), and keys that can be revoked and rotated after a compromise. It is The Update
Framework, written with the real python-tuf metadata API (`tuf.api.metadata`) and verified on
the device by python-tuf's `ngclient` (tinyswap/update_client.py).

Design:

* Four top-level roles with their own keys and thresholds: root (trust anchor, signs the
  keys of every role), targets (lists packages with length, SHA-256 and the package's name,
  version and sequence as custom info), snapshot (the version of targets, so targets cannot be
  mixed and matched), timestamp (the version of snapshot, short-lived, re-signed often). A
  command needs only the keys of the roles it changes: `add` the targets key, `publish` the
  snapshot and timestamp keys, `rotate` the root keys. The root key can stay offline.
* Consistent snapshots: on. Metadata is written as `N.targets.json`, `N.snapshot.json`,
  `N.root.json` (only `timestamp.json` is unversioned) and packages as
  `targets/<sha256>.<name>-<sequence>.tsap`, so files are never overwritten: a client that
  fetches during a publish still sees one consistent state, and a file can only be the one
  its parent names. `metadata/root.json` is a copy of the newest root, for provisioning.
* Every signature set is checked before anything is written: a key that the current root does
  not list for the role is refused (`WrongRoleKeyError`), as are fewer keys than the threshold
  (`TooFewKeysError`). After signing, the metadata is verified with python-tuf as a device would.
* Rotation (TUF 5.3.4): a new root version that revokes the old key and lists the new one,
  signed by a threshold of the *current* root's root keys and by a threshold of the *new*
  root's, so a device accepts it by its chain, while a root signed only by new (or stolen)
  keys is refused. Rotating the targets key also re-signs targets with the new key; then
  `publish` (with the new key when snapshot or timestamp was rotated) completes the switch.
* Timestamp metadata carries its issue time (`x-tinyswap-issued`, signed): devices without a
  real-time clock keep the newest such time as their trusted time (tinyswap/update_client.py).
* Publisher settings that are not secret (role lifetimes) live in `repository.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.metadata import Role as TufRole
from tuf.api.serialization.json import JSONSerializer

from tinyswap.errors import InputFileError
from tinyswap.export.errors import (
    PublishError,
    RepositoryDirError,
    RepositoryTargetError,
    RoleKeyError,
    TooFewKeysError,
    WrongRoleKeyError,
)
from tinyswap.keys import KeyAlgorithm, load_either_key
from tinyswap.package import PackageError, parse_package
from tinyswap.update_client import (CUSTOM_FIELD, ISSUED_FIELD, METADATA_DIR, TARGETS_DIR, ListedPackage, Role,
                                    format_time)

CONFIG_FILE = "repository.json"
FORMAT = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Readable metadata on disk; what is signed is the canonical form, not these bytes.
_SERIALIZER = JSONSerializer(compact=False)


@dataclass(frozen=True)
class Lifetimes:
    """How long each role's metadata stays valid after it is signed: root and targets change
    rarely and their keys may be offline; timestamp is re-signed often, so a freeze is short."""

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=90)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(days=1)

    def of(self, role: Role) -> timedelta:
        return getattr(self, role.value)

    def to_json(self) -> dict[str, int]:
        return {role.value: int(self.of(role).total_seconds()) for role in Role}

    @classmethod
    def from_json(cls, data: Mapping[str, int]) -> Lifetimes:
        return cls(**{role.value: timedelta(seconds=int(data[role.value])) for role in Role})

    def with_changes(self, changes: Mapping[Role, timedelta]) -> Lifetimes:
        return Lifetimes(**{role.value: changes.get(role, self.of(role)) for role in Role})


@dataclass(frozen=True)
class RepositorySummary:
    """The newest version of each role's metadata and the packages listed."""

    directory: Path
    versions: Mapping[Role, int]
    targets: tuple[ListedPackage, ...]
    published: bool  # snapshot names the newest targets (False between `add`/`rotate` and `publish`)


def parse_duration(text: str) -> timedelta:
    """`90d`, `12h`, `30m`, `45s`: a metadata lifetime."""
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not match or int(match.group(1)) == 0:
        raise PublishError(f"lifetime {text!r}: expected a positive number and a unit s, m, h or d (e.g. 7d)")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


# ------------------------------------------------------------------------------------- keys
def load_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """A role's Ed25519 private key, as `tinyswap keygen` writes it."""
    key = load_any_key(path)
    if not isinstance(key, Ed25519PrivateKey):
        raise RoleKeyError(f"key {path}: a public key, expected the private one (signing needs it)")
    return key


def load_any_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey | Ed25519PublicKey:
    """A private or a public Ed25519 PEM: a key being revoked may be known only by its public half."""
    try:
        key = load_either_key(path, KeyAlgorithm.ED25519, "key")
    except InputFileError as exc:
        raise RoleKeyError(str(exc)) from exc
    assert isinstance(key, (Ed25519PrivateKey, Ed25519PublicKey))
    return key


def _public(key: Ed25519PrivateKey | Ed25519PublicKey) -> SSlibKey:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return SSlibKey.from_crypto(pub)


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The TUF key id (what root lists under each role)."""
    return _public(key).keyid


def _unique(keys: Sequence[Ed25519PrivateKey]) -> list[Ed25519PrivateKey]:
    seen: dict[str, Ed25519PrivateKey] = {}
    for k in keys:
        seen.setdefault(key_id(k), k)
    return list(seen.values())


def _sign(md: Metadata, role: Role, root: Root, keys: Sequence[Ed25519PrivateKey]) -> None:
    """Sign `md` as `role` with `keys`, all of which the root must list for the role, at least
    its threshold of them; then verify as a device would."""
    listed = root.roles[role.value]
    keys = _unique(keys)
    for k in keys:
        if key_id(k) not in listed.keyids:
            raise WrongRoleKeyError(f"key {key_id(k)[:16]}... is not a {role.value} key of root "
                                    f"v{root.version} (its {role.value} keys: "
                                    f"{', '.join(i[:16] + '...' for i in sorted(listed.keyids))})")
    if len(keys) < listed.threshold:
        raise TooFewKeysError(f"{role.value} needs {listed.threshold} signatures (root v{root.version}); "
                              f"{len(keys)} key(s) given")
    md.signatures.clear()
    for k in keys:
        md.sign(CryptoSigner(k), append=True)
    root.verify_delegate(role.value, md.signed_bytes, md.signatures)


# ------------------------------------------------------------------------------- repository
class _Repo:
    """The files of one repository folder and its newest metadata."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        if not self.dir.is_dir():
            raise RepositoryDirError(f"repository {self.dir} is not a directory")
        config = self.dir / CONFIG_FILE
        if not config.is_file() or not self.metadata.is_dir():
            raise RepositoryDirError(f"{self.dir} is not an adapter repository (no {CONFIG_FILE} or "
                                     f"{METADATA_DIR}/): run `tinyswap repo init` first")
        try:
            data = json.loads(config.read_text())
            self.lifetimes = Lifetimes.from_json(data["lifetimes"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RepositoryDirError(f"{config} is unreadable: {exc}") from exc
        self.root: Metadata[Root] = self._newest(Root)
        self.targets: Metadata[Targets] = self._newest(Targets)
        self.snapshot: Metadata[Snapshot] = self._newest(Snapshot)
        self.timestamp: Metadata[Timestamp] = self._load(self.metadata / "timestamp.json")

    @property
    def metadata(self) -> Path:
        return self.dir / METADATA_DIR

    def _load(self, path: Path) -> Metadata:
        try:
            return Metadata.from_bytes(path.read_bytes())
        except (OSError, tuf_errors.RepositoryError) as exc:
            raise RepositoryDirError(f"cannot read {path}: {exc}") from exc

    def _newest(self, kind: type) -> Metadata:
        versions = [int(p.name.split(".")[0]) for p in self.metadata.glob(f"*.{kind.type}.json")
                    if p.name.split(".")[0].isdigit()]
        if not versions:
            raise RepositoryDirError(f"{self.metadata} holds no {kind.type} metadata")
        md = self._load(self.metadata / f"{max(versions)}.{kind.type}.json")
        if not isinstance(md.signed, kind):
            raise RepositoryDirError(f"{max(versions)}.{kind.type}.json holds {md.signed.type} metadata")
        return md

    def targets_meta(self) -> MetaFile:
        version = self.targets.signed.version
        return _meta(self.targets, (self.metadata / f"{version}.targets.json").read_bytes())

    def write(self, md: Metadata) -> Path:
        name = "timestamp.json" if isinstance(md.signed, Timestamp) else f"{md.signed.version}.{md.signed.type}.json"
        path = _write(self.metadata / name, md.to_bytes(_SERIALIZER))
        if isinstance(md.signed, Root):
            _write(self.metadata / "root.json", md.to_bytes(_SERIALIZER))
        return path

    def summary(self) -> RepositorySummary:
        listed = tuple(_listed_package(t) for _, t in sorted(self.targets.signed.targets.items()))
        versions = {Role.ROOT: self.root.signed.version, Role.TARGETS: self.targets.signed.version,
                    Role.SNAPSHOT: self.snapshot.signed.version, Role.TIMESTAMP: self.timestamp.signed.version}
        published = self.snapshot.signed.meta["targets.json"].version == self.targets.signed.version
        return RepositorySummary(self.dir, versions, listed, published)


def _write(path: Path, data: bytes) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _now(now: datetime | None) -> datetime:
    moment = now or datetime.now(timezone.utc)
    return (moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment).replace(microsecond=0)


def _meta(md: Metadata, data: bytes | None = None) -> MetaFile:
    """What the parent lists for `md`: version, length and SHA-256 of its bytes as written."""
    data = md.to_bytes(_SERIALIZER) if data is None else data
    return MetaFile(md.signed.version, len(data), {"sha256": hashlib.sha256(data).hexdigest()})


def _listed_package(t: TargetFile) -> ListedPackage:
    """A targets entry as the device client describes it (one record for both sides)."""
    custom = t.custom.get(CUSTOM_FIELD, {}) if isinstance(t.custom, dict) else {}
    return ListedPackage(t.path, t.length, t.hashes["sha256"], str(custom.get("name", t.path)),
                        str(custom.get("version", "")), int(custom.get("sequence", -1)))


def _snapshot_and_timestamp(repo_root: Root, targets: MetaFile, snapshot_version: int, timestamp_version: int,
                            lifetimes: Lifetimes, now: datetime, snapshot_keys: Sequence[Ed25519PrivateKey],
                            timestamp_keys: Sequence[Ed25519PrivateKey]) -> tuple[Metadata, Metadata]:
    snapshot = Metadata(Snapshot(version=snapshot_version, expires=now + lifetimes.snapshot,
                                 meta={"targets.json": targets}))
    _sign(snapshot, Role.SNAPSHOT, repo_root, snapshot_keys)
    timestamp = Metadata(Timestamp(version=timestamp_version, expires=now + lifetimes.timestamp,
                                   snapshot_meta=_meta(snapshot), unrecognized_fields={ISSUED_FIELD: format_time(now)}))
    _sign(timestamp, Role.TIMESTAMP, repo_root, timestamp_keys)
    return snapshot, timestamp


# --------------------------------------------------------------------------------- commands
def init_repository(directory: str | os.PathLike[str], keys: Mapping[Role, Sequence[Ed25519PrivateKey]], *,
                    thresholds: Mapping[Role, int] | None = None, lifetimes: Lifetimes = Lifetimes(),
                    now: datetime | None = None) -> RepositorySummary:
    """Create root v1, targets v1 (empty), snapshot v1 and timestamp v1 in `directory`."""
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise RepositoryDirError(f"repository {out} exists and is not a directory")
    if (out / CONFIG_FILE).exists() or (out / METADATA_DIR).exists():
        raise RepositoryDirError(f"{out} is already an adapter repository")
    thresholds = dict(thresholds or {})
    root = Root(version=1, expires=_now(now) + lifetimes.root, consistent_snapshot=True)
    for role in Role:
        role_keys = _unique(list(keys.get(role, ())))
        if not role_keys:
            raise RoleKeyError(f"no {role.value} key given (--{role.value}-key KEY.pem)")
        threshold = thresholds.get(role, 1)
        if not 1 <= threshold <= len(role_keys):
            raise TooFewKeysError(f"{role.value} threshold {threshold} needs between 1 and the {len(role_keys)} "
                                  f"{role.value} key(s) given")
        for k in role_keys:
            root.add_key(_public(k), role.value)
        root.roles[role.value] = TufRole(root.roles[role.value].keyids, threshold)
    moment = _now(now)
    root_md = Metadata(root)
    _sign(root_md, Role.ROOT, root, keys[Role.ROOT])
    targets = Metadata(Targets(version=1, expires=moment + lifetimes.targets))
    _sign(targets, Role.TARGETS, root, keys[Role.TARGETS])
    snapshot, timestamp = _snapshot_and_timestamp(root, _meta(targets), 1, 1, lifetimes, moment, keys[Role.SNAPSHOT],
                                                  keys[Role.TIMESTAMP])
    # Everything verified: only now does anything touch the disk.
    (out / METADATA_DIR).mkdir(parents=True)
    (out / TARGETS_DIR).mkdir(exist_ok=True)
    _write(out / CONFIG_FILE, json.dumps({"format": FORMAT, "consistent_snapshot": True,
                                          "lifetimes": lifetimes.to_json()}, indent=2).encode())
    repo_files = [root_md, targets, snapshot, timestamp]
    for md in repo_files:
        name = "timestamp.json" if isinstance(md.signed, Timestamp) else f"{md.signed.version}.{md.signed.type}.json"
        _write(out / METADATA_DIR / name, md.to_bytes(_SERIALIZER))
    _write(out / METADATA_DIR / "root.json", root_md.to_bytes(_SERIALIZER))
    return _Repo(out).summary()


def add_package(directory: str | os.PathLike[str], package: bytes | str | os.PathLike[str],
                targets_keys: Sequence[Ed25519PrivateKey], *, now: datetime | None = None) -> ListedPackage:
    """List a package: copy it to `targets/<sha256>.<name>-<sequence>.tsap` and sign a new
    targets version naming its length, SHA-256, name, version and sequence. `publish` makes it
    visible to devices."""
    repo = _Repo(directory)
    if isinstance(package, (bytes, bytearray)):
        data = bytes(package)
    else:
        try:
            data = Path(package).read_bytes()
        except OSError as exc:
            raise RepositoryTargetError(f"cannot read package {package}: {exc.strerror or exc}") from exc
    try:
        pkg = parse_package(data)
    except PackageError as exc:
        raise RepositoryTargetError(f"not an adapter package: {exc}") from exc
    if not _NAME.fullmatch(pkg.name):
        raise RepositoryTargetError(f"package name {pkg.name!r} cannot be a target path (letters, digits, '.', "
                                    f"'_', '-'; at most 128)")
    path = f"{pkg.name}-{pkg.sequence}.tsap"
    sha = hashlib.sha256(data).hexdigest()
    custom = {CUSTOM_FIELD: {"name": pkg.name, "version": str(pkg.metadata.get("version")), "sequence": pkg.sequence,
                             "base_digest": str(pkg.metadata.get("base_digest"))}}
    targets = Metadata.from_bytes(repo.targets.to_bytes())
    targets.signed.version += 1
    targets.signed.expires = _now(now) + repo.lifetimes.targets
    targets.signed.targets[path] = TargetFile(len(data), {"sha256": sha}, path, {"custom": custom})
    _sign(targets, Role.TARGETS, repo.root.signed, targets_keys)
    _write(repo.dir / TARGETS_DIR / f"{sha}.{path}", data)
    repo.write(targets)
    return _listed_package(targets.signed.targets[path])


def publish(directory: str | os.PathLike[str], snapshot_keys: Sequence[Ed25519PrivateKey],
            timestamp_keys: Sequence[Ed25519PrivateKey], *, now: datetime | None = None) -> RepositorySummary:
    """Sign a new snapshot (naming the newest targets) and a new timestamp (naming it)."""
    repo = _Repo(directory)
    snapshot, timestamp = _snapshot_and_timestamp(
        repo.root.signed, repo.targets_meta(), repo.snapshot.signed.version + 1, repo.timestamp.signed.version + 1,
        repo.lifetimes, _now(now), snapshot_keys, timestamp_keys)
    repo.write(snapshot)
    repo.write(timestamp)
    return _Repo(directory).summary()


def rotate_key(directory: str | os.PathLike[str], role: Role, old_key: Ed25519PrivateKey | Ed25519PublicKey,
               new_key: Ed25519PrivateKey, root_keys: Sequence[Ed25519PrivateKey] = (), *,
               role_keys: Sequence[Ed25519PrivateKey] = (), now: datetime | None = None) -> RepositorySummary:
    """Replace `old_key` by `new_key` in `role`: a new root version signed by a threshold of the
    current root's keys and of the new root's. `root_keys`: the root keys that sign (for
    `role=root`, `old_key` and `new_key` sign too when they are private). Rotating targets
    re-signs the targets metadata with `new_key` (plus `role_keys` if its threshold needs more);
    then `publish` (with the new key for snapshot or timestamp) completes the switch."""
    repo = _Repo(directory)
    current = repo.root.signed
    old_id, new_id = key_id(old_key), key_id(new_key)
    if old_id not in current.roles[role.value].keyids:
        raise WrongRoleKeyError(f"the old key {old_id[:16]}... is not a {role.value} key of root v{current.version}")
    if new_id in current.roles[role.value].keyids:
        raise WrongRoleKeyError(f"the new key {new_id[:16]}... is already a {role.value} key")
    moment = _now(now)
    new_md = Metadata.from_bytes(repo.root.to_bytes())
    new_root = new_md.signed
    new_root.version += 1
    new_root.expires = moment + repo.lifetimes.root
    new_root.revoke_key(old_id, role.value)
    new_root.add_key(_public(new_key), role.value)
    signers = list(root_keys)
    if role is Role.ROOT:
        signers += [new_key] + ([old_key] if isinstance(old_key, Ed25519PrivateKey) else [])
    signers = _unique(signers)
    old_ids, new_ids = set(current.roles["root"].keyids), set(new_root.roles["root"].keyids)
    for k in signers:
        if key_id(k) not in old_ids | new_ids:
            raise WrongRoleKeyError(f"key {key_id(k)[:16]}... is a root key of neither root v{current.version} "
                                    f"nor v{new_root.version}")
    for ids, version, threshold in ((old_ids, current.version, current.roles["root"].threshold),
                                    (new_ids, new_root.version, new_root.roles["root"].threshold)):
        have = sum(1 for k in signers if key_id(k) in ids)
        if have < threshold:
            raise TooFewKeysError(f"root v{new_root.version} must be signed by {threshold} root key(s) of root "
                                  f"v{version}; {have} given (--root-key)")
    new_md.signatures.clear()
    for k in signers:
        new_md.sign(CryptoSigner(k), append=True)
    # As a device will check it: by the trusted root's threshold, then by its own.
    current.verify_delegate("root", new_md.signed_bytes, new_md.signatures)
    new_root.verify_delegate("root", new_md.signed_bytes, new_md.signatures)
    targets = None
    if role is Role.TARGETS:
        targets = Metadata.from_bytes(repo.targets.to_bytes())
        targets.signed.version += 1
        targets.signed.expires = moment + repo.lifetimes.targets
        _sign(targets, Role.TARGETS, new_root, [new_key, *role_keys])
    repo.write(new_md)
    if targets is not None:
        repo.write(targets)
    return _Repo(directory).summary()


def summary(directory: str | os.PathLike[str]) -> RepositorySummary:
    return _Repo(directory).summary()


__all__ = ["CONFIG_FILE", "Lifetimes", "RepositorySummary", "Role", "add_package", "init_repository",
           "key_id", "load_any_key", "load_signing_key", "parse_duration", "publish", "rotate_key", "summary"]
