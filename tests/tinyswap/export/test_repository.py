"""The adapter repository publisher (tinyswap/export/repository.py): the metadata it writes is
TUF metadata python-tuf verifies, each command needs only its roles' keys, and every refusal is
a typed error raised before anything is written."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tuf.api.metadata import Metadata

from tinyswap.export import repository as repo
from tinyswap.export.errors import (
    ExportError,
    PublishError,
    RepositoryDirError,
    RepositoryTargetError,
    RoleKeyError,
    TooFewKeysError,
    WrongRoleKeyError,
)
from tinyswap.update_client import ISSUED_FIELD, Role

from tests.repository_cases import HOUR, T0, new_rig, packages, role_keys


def files(directory) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def md(rig, name: str) -> Metadata:
    return Metadata.from_bytes((rig.dir / "metadata" / name).read_bytes())


def test_init_writes_the_four_roles_with_keys_thresholds_and_expiry(tmp_path) -> None:
    lifetimes = repo.Lifetimes(timestamp=timedelta(hours=6))
    rig = new_rig(tmp_path, root_threshold=2, lifetimes=lifetimes)
    assert sorted(files(rig.dir)) == ["metadata/1.root.json", "metadata/1.snapshot.json", "metadata/1.targets.json",
                                      "metadata/root.json", "metadata/timestamp.json", "repository.json"]
    root = md(rig, "1.root.json")
    assert root.signed.consistent_snapshot and root.signed.roles["root"].threshold == 2
    assert len(root.signed.roles["root"].keyids) == 2 and len(root.signatures) == 2
    for role in Role:
        keyids = {repo.key_id(k) for k in rig.keys[role]}
        assert set(root.signed.roles[role.value].keyids) == keyids
        signed = md(rig, "timestamp.json" if role is Role.TIMESTAMP else f"1.{role.value}.json")
        root.signed.verify_delegate(role.value, signed.signed_bytes, signed.signatures)
    assert md(rig, "timestamp.json").signed.expires == T0 + timedelta(hours=6)
    assert md(rig, "1.root.json").signed.expires == T0 + timedelta(days=365)
    assert md(rig, "timestamp.json").signed.unrecognized_fields[ISSUED_FIELD] == "2030-01-01T12:00:00Z"
    assert (rig.dir / "metadata" / "root.json").read_bytes() == (rig.dir / "metadata" / "1.root.json").read_bytes()


def test_add_lists_the_package_and_publish_names_it(tmp_path) -> None:
    rig = new_rig(tmp_path)
    listed = rig.add("A2")
    data = packages()["A2"]
    assert (listed.path, listed.name, listed.sequence, listed.length) == ("A-2.tsap", "A", 2, len(data))
    assert listed.sha256 == hashlib.sha256(data).hexdigest()
    assert (rig.dir / "targets" / f"{listed.sha256}.A-2.tsap").read_bytes() == data
    summary = repo.summary(rig.dir)
    assert not summary.published and summary.versions[Role.TARGETS] == 2
    summary = rig.publish()
    assert summary.published and summary.versions == {Role.ROOT: 1, Role.TARGETS: 2, Role.SNAPSHOT: 2,
                                                      Role.TIMESTAMP: 2}
    target = md(rig, "2.targets.json").signed.targets["A-2.tsap"]
    assert target.custom["tinyswap"]["name"] == "A" and target.custom["tinyswap"]["sequence"] == 2
    # Each parent lists its child's version, length and SHA-256 as written.
    snapshot_bytes = (rig.dir / "metadata" / "2.snapshot.json").read_bytes()
    meta = md(rig, "timestamp.json").signed.snapshot_meta
    assert (meta.version, meta.length) == (2, len(snapshot_bytes))
    meta.verify_length_and_hashes(snapshot_bytes)
    md(rig, "2.snapshot.json").signed.meta["targets.json"].verify_length_and_hashes(
        (rig.dir / "metadata" / "2.targets.json").read_bytes())


def test_a_key_the_role_does_not_list_is_refused_before_anything_is_written(tmp_path) -> None:
    rig = new_rig(tmp_path)
    before = files(rig.dir)
    with pytest.raises(WrongRoleKeyError, match="not a targets key"):
        repo.add_package(rig.dir, packages()["A1"], rig.keys[Role.SNAPSHOT], now=T0)
    with pytest.raises(WrongRoleKeyError, match="not a timestamp key"):
        repo.publish(rig.dir, rig.keys[Role.SNAPSHOT], rig.keys[Role.TARGETS], now=T0)
    with pytest.raises(TooFewKeysError):
        repo.publish(rig.dir, rig.keys[Role.SNAPSHOT], [], now=T0)
    assert files(rig.dir) == before


def test_init_refusals(tmp_path) -> None:
    keys = {role: list(k[:1]) for role, k in role_keys().items()}
    with pytest.raises(RoleKeyError, match="no timestamp key"):
        repo.init_repository(tmp_path / "a", {r: k for r, k in keys.items() if r is not Role.TIMESTAMP})
    with pytest.raises(TooFewKeysError, match="threshold 2"):
        repo.init_repository(tmp_path / "a", keys, thresholds={Role.ROOT: 2})
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(RepositoryDirError, match="not a directory"):
        repo.init_repository(tmp_path / "file", keys)
    repo.init_repository(tmp_path / "a", keys)
    with pytest.raises(RepositoryDirError, match="already"):
        repo.init_repository(tmp_path / "a", keys)


def test_commands_on_something_that_is_not_a_repository_are_refused(tmp_path) -> None:
    with pytest.raises(RepositoryDirError, match="not a directory"):
        repo.summary(tmp_path / "missing")
    with pytest.raises(RepositoryDirError, match="not an adapter repository"):
        repo.publish(tmp_path, [], [])


def test_add_refuses_what_is_not_a_package(tmp_path) -> None:
    rig = new_rig(tmp_path)
    with pytest.raises(RepositoryTargetError, match="not an adapter package"):
        repo.add_package(rig.dir, b"TSAP garbage", rig.keys[Role.TARGETS])
    with pytest.raises(RepositoryTargetError, match="cannot read"):
        repo.add_package(rig.dir, tmp_path / "none.tsap", rig.keys[Role.TARGETS])


def test_rotating_a_role_key_writes_a_root_signed_by_old_and_new_root_keys(tmp_path) -> None:
    rig = new_rig(tmp_path, root_threshold=2)
    k1, k2 = rig.keys[Role.ROOT]
    k3 = Ed25519PrivateKey.generate()
    with pytest.raises(TooFewKeysError, match="root v1"):
        repo.rotate_key(rig.dir, Role.ROOT, k1, k3, [], now=T0)  # K1 + K3: one of root v1's two
    summary = repo.rotate_key(rig.dir, Role.ROOT, k1, k3, [k2], now=T0 + HOUR)
    assert summary.versions[Role.ROOT] == 2
    v1, v2 = md(rig, "1.root.json"), md(rig, "2.root.json")
    v1.signed.verify_delegate("root", v2.signed_bytes, v2.signatures)  # the device's chain check
    v2.signed.verify_delegate("root", v2.signed_bytes, v2.signatures)
    assert set(v2.signed.roles["root"].keyids) == {repo.key_id(k2), repo.key_id(k3)}
    assert md(rig, "root.json").signed.version == 2


def test_rotating_the_targets_key_resigns_targets_and_needs_a_publish(tmp_path) -> None:
    rig = new_rig(tmp_path)
    rig.release("A1")
    old = rig.keys[Role.TARGETS][0]
    new = Ed25519PrivateKey.generate()
    summary = repo.rotate_key(rig.dir, Role.TARGETS, old.public_key(), new, rig.keys[Role.ROOT], now=T0)
    assert summary.versions[Role.TARGETS] == 3 and not summary.published
    md(rig, "2.root.json").signed.verify_delegate("targets", md(rig, "3.targets.json").signed_bytes,
                                                  md(rig, "3.targets.json").signatures)
    with pytest.raises(WrongRoleKeyError):
        repo.add_package(rig.dir, packages()["A2"], [old], now=T0)  # revoked
    rig.keys[Role.TARGETS] = [new]
    rig.add("A2")
    assert rig.publish().published


def test_rotate_refusals(tmp_path) -> None:
    rig = new_rig(tmp_path)
    stranger = Ed25519PrivateKey.generate()
    with pytest.raises(WrongRoleKeyError, match="old key"):
        repo.rotate_key(rig.dir, Role.TARGETS, stranger, Ed25519PrivateKey.generate(), rig.keys[Role.ROOT])
    with pytest.raises(WrongRoleKeyError, match="already"):
        repo.rotate_key(rig.dir, Role.TARGETS, rig.keys[Role.TARGETS][0], rig.keys[Role.TARGETS][0],
                        rig.keys[Role.ROOT])
    with pytest.raises(WrongRoleKeyError, match="neither"):
        repo.rotate_key(rig.dir, Role.TARGETS, rig.keys[Role.TARGETS][0], Ed25519PrivateKey.generate(), [stranger])


def test_durations_lifetimes_and_the_error_hierarchy() -> None:
    assert repo.parse_duration("90d") == timedelta(days=90) and repo.parse_duration("30m") == timedelta(minutes=30)
    for bad in ("", "0d", "5w", "d"):
        with pytest.raises(PublishError):
            repo.parse_duration(bad)
    lifetimes = repo.Lifetimes().with_changes({Role.SNAPSHOT: timedelta(hours=2)})
    assert repo.Lifetimes.from_json(lifetimes.to_json()) == lifetimes
    for cls in (RepositoryDirError, RoleKeyError, WrongRoleKeyError, TooFewKeysError, RepositoryTargetError):
        assert issubclass(cls, PublishError) and issubclass(cls, ExportError)
