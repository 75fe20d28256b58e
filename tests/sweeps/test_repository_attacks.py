"""The TUF attacks, each played against a simulated device updating from an adapter repository.

Every test names the attack (TUF specification, "Goals" / "Threats"), serves what the attacker
can serve (old, mixed, oversized, unlisted or re-signed files, with the keys the attacker is
assumed to hold), and checks two things: the refusal is the typed error named after the attack,
and the device is exactly as before (flash images, record, trusted metadata and trusted time).
Verification is python-tuf's ngclient; these tests check that it is wired so that it applies.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tuf.api.metadata import Metadata, MetaFile, TargetFile

from tinyswap.export import repository as repo
from tinyswap.firmware_sim.device import Device
from tinyswap.firmware_sim.repository_update import update_from
from tinyswap.package import parse_package
from tinyswap.update_client import (
    EndlessDataError,
    FreezeError,
    MemoryTransport,
    MetadataRollbackError,
    MixAndMatchError,
    RepositoryError,
    Role,
    TargetMismatchError,
    ThresholdError,
    UnlistedTargetError,
    UpdateClient,
)

from tests.repository_cases import HOUR, Clock, Rig, device_snapshot, new_device, new_rig, packages, resign


@dataclass
class Scene:
    rig: Rig
    device: Device
    client: UpdateClient
    transport: MemoryTransport
    clock: Clock

    def serve_published(self) -> None:
        self.transport.files = self.rig.files()

    def refused(self, error: type[RepositoryError]) -> RepositoryError:
        """Run the device's update; it must be refused with `error` and change nothing."""
        before = device_snapshot(self.device, self.client)
        with pytest.raises(error) as info:
            update_from(self.device, self.client)
        assert device_snapshot(self.device, self.client) == before
        return info.value

    def digests(self) -> set[str]:
        """The packages the device holds (stored by `install`)."""
        return set(self.device.store.list())


def scene(tmp_path: Path, *, root_threshold: int = 1) -> Scene:
    """A repository that released A1 (targets v2, snapshot v2, timestamp v2), a device that
    installed it through its client, and a server the test controls."""
    rig = new_rig(tmp_path, root_threshold=root_threshold)
    rig.release("A1")
    transport = MemoryTransport(rig.files())
    clock = Clock(rig.now)
    client = rig.client(tmp_path / "device", transport, clock)
    device = new_device()
    update_from(device, client)
    return Scene(rig, device, client, transport, clock)


def digest(name: str) -> str:
    return parse_package(packages()[name]).content_digest


# ------------------------------------------------------------------------------- rollback
def test_rollback_attack_old_metadata_is_refused(tmp_path) -> None:
    s = scene(tmp_path)
    old = s.rig.files()  # timestamp v2 ...
    s.rig.release("A2")
    s.serve_published()
    update_from(s.device, s.client)  # timestamp v3, A2 installed
    assert digest("A2") in s.digests()
    s.transport.files = old  # the server replays the earlier, validly signed repository
    err = s.refused(MetadataRollbackError)
    assert "timestamp" in str(err)


def test_rollback_attack_fresh_timestamp_naming_an_old_snapshot_is_refused(tmp_path) -> None:
    # Even with the timestamp key, the attacker cannot point the device back to an older snapshot.
    s = scene(tmp_path)
    old_snapshot = s.rig.files()["metadata/2.snapshot.json"]
    s.rig.release("A2")
    s.serve_published()
    update_from(s.device, s.client)
    files = s.rig.files()

    def point_back(ts) -> None:
        ts.snapshot_meta = MetaFile(2, len(old_snapshot))

    files["metadata/timestamp.json"] = resign(files["metadata/timestamp.json"], *s.rig.keys[Role.TIMESTAMP],
                                              version=9, change=point_back)
    s.transport.files = files
    s.refused(MetadataRollbackError)


# ------------------------------------------------------------------------- indefinite freeze
def test_indefinite_freeze_attack_expired_timestamp_replayed_is_refused(tmp_path) -> None:
    s = scene(tmp_path)
    s.clock.now = s.rig.now + 25 * HOUR  # the timestamp (lifetime 1 day) has expired; the server replays it
    err = s.refused(FreezeError)
    assert "expired" in str(err)


def test_indefinite_freeze_attack_on_a_device_without_clock_uses_its_trusted_time(tmp_path) -> None:
    # No real-time clock: the factory trusted time alone shows the served metadata is stale.
    rig = new_rig(tmp_path)
    rig.release("A1")
    client = rig.client(tmp_path / "device", clock=None, trusted_time=rig.now + 30 * HOUR)
    client.clock = None
    device = new_device()
    before = device_snapshot(device, client)
    with pytest.raises(FreezeError):
        update_from(device, client)
    assert device_snapshot(device, client) == before


# ------------------------------------------------------------------------------ mix-and-match
def test_mix_and_match_attack_targets_from_another_release_is_refused(tmp_path) -> None:
    s = scene(tmp_path)
    s.rig.release("A2")  # targets v3, snapshot v3, timestamp v3
    files = s.rig.files()
    files["metadata/3.targets.json"] = files["metadata/2.targets.json"]  # targets of the earlier release
    s.transport.files = files
    s.refused(MixAndMatchError)


def test_mix_and_match_attack_snapshot_from_another_release_is_refused(tmp_path) -> None:
    s = scene(tmp_path)
    s.rig.release("A2")
    files = s.rig.files()
    files["metadata/3.snapshot.json"] = files["metadata/2.snapshot.json"]
    s.transport.files = files
    s.refused(MixAndMatchError)


# ---------------------------------------------------------------------- arbitrary software
def test_arbitrary_software_attack_unlisted_package_is_never_fetched(tmp_path) -> None:
    # C1 is validly signed by the device's package key, but the repository never released it.
    s = scene(tmp_path)
    c1 = packages()["C1"]
    s.transport.files["targets/evil.tsap"] = c1
    state = s.client.refresh()
    assert [p.name for p in state.packages] == ["A"]
    before = device_snapshot(s.device, s.client)
    with pytest.raises(UnlistedTargetError):
        s.client.download("evil.tsap")
    update_from(s.device, s.client)  # installs only what is listed: nothing new
    assert digest("C1") not in s.digests()
    assert device_snapshot(s.device, s.client) == before


@pytest.mark.parametrize("swap", ["other package", "truncated", "one byte flipped"])
def test_arbitrary_software_attack_listed_package_with_other_bytes_is_refused(tmp_path, swap: str) -> None:
    s = scene(tmp_path)
    listed = s.rig.add("A2")
    s.rig.publish()
    files = s.rig.files()
    path = f"targets/{listed.sha256}.{listed.path}"
    good = files[path]
    files[path] = {"other package": packages()["B1"], "truncated": good[:-1],
                   "one byte flipped": good[:100] + bytes([good[100] ^ 1]) + good[101:]}[swap]
    assert len(files[path]) <= len(good)
    s.transport.files = files
    s.refused(TargetMismatchError)


def test_arbitrary_software_attack_targets_signed_by_a_key_not_in_the_role_is_refused(tmp_path) -> None:
    # The attacker holds the snapshot and timestamp keys, not the targets key: its own targets
    # metadata (listing C1) is consistent with the snapshot it signs, yet refused.
    s = scene(tmp_path)
    attacker = Ed25519PrivateKey.generate()
    files = s.rig.files()
    c1 = packages()["C1"]
    sha = hashlib.sha256(c1).hexdigest()

    def list_c1(targets) -> None:
        targets.targets["C-1.tsap"] = TargetFile(len(c1), {"sha256": sha}, "C-1.tsap")

    forged_targets = resign(files["metadata/2.targets.json"], attacker, version=3, change=list_c1)
    files["metadata/3.targets.json"] = forged_targets
    files[f"targets/{sha}.C-1.tsap"] = c1
    snap = resign(files["metadata/2.snapshot.json"], *s.rig.keys[Role.SNAPSHOT], version=3,
                  change=lambda sn: sn.meta.__setitem__("targets.json", MetaFile(3, len(forged_targets))))
    files["metadata/3.snapshot.json"] = snap
    files["metadata/timestamp.json"] = resign(files["metadata/timestamp.json"], *s.rig.keys[Role.TIMESTAMP],
                                              version=3, change=lambda ts: setattr(ts, "snapshot_meta",
                                                                                   MetaFile(3, len(snap))))
    s.transport.files = files
    err = s.refused(ThresholdError)
    assert "targets" in str(err)


# ----------------------------------------------------------------------------- endless data
@pytest.mark.parametrize("victim", ["metadata/timestamp.json", "metadata/3.snapshot.json", "target"])
def test_endless_data_attack_oversized_file_is_cut_off(tmp_path, victim: str) -> None:
    s = scene(tmp_path)
    listed = s.rig.add("A2")
    s.rig.publish()
    files = s.rig.files()
    if victim == "target":
        victim = f"targets/{listed.sha256}.{listed.path}"
    files[victim] = files[victim] + b" " * (1 << 20)  # a megabyte more than listed or allowed
    s.transport.files = files
    s.refused(EndlessDataError)


# -------------------------------------------------------------------------------- threshold
def test_threshold_attack_root_with_fewer_signatures_than_its_threshold_is_refused(tmp_path) -> None:
    # Root needs 2 of {K1, K2}; an attacker with K1 alone signs a root that adds its own key.
    s = scene(tmp_path, root_threshold=2)
    k1 = s.rig.keys[Role.ROOT][0]
    attacker = Ed25519PrivateKey.generate()
    files = s.rig.files()

    def take_over(root) -> None:
        root.add_key(repo._public(attacker), "targets")

    files["metadata/2.root.json"] = resign(files["metadata/1.root.json"], k1, version=2, change=take_over)
    s.transport.files = files
    err = s.refused(ThresholdError)
    assert "root" in str(err)


def test_threshold_attack_unsigned_timestamp_is_refused(tmp_path) -> None:
    s = scene(tmp_path)
    files = s.rig.files()
    files["metadata/timestamp.json"] = resign(files["metadata/timestamp.json"], version=3)  # no signature
    s.transport.files = files
    s.refused(ThresholdError)


# -------------------------------------------------------------- root rotation after compromise
def test_root_rotation_signed_by_the_old_threshold_is_accepted(tmp_path) -> None:
    s = scene(tmp_path, root_threshold=2)
    k1, k2 = s.rig.keys[Role.ROOT]
    k3 = Ed25519PrivateKey.generate()
    # K1 is compromised: the owners replace it with K3, signing with K1+K2 (old) and K2+K3 (new).
    repo.rotate_key(s.rig.dir, Role.ROOT, k1, k3, [k2], now=s.rig.now)
    s.rig.keys[Role.ROOT] = [k2, k3]
    s.rig.release("A2")
    s.serve_published()
    result = update_from(s.device, s.client)
    assert result.state.root_version == 2 and digest("A2") in s.digests()


def test_root_rotation_signed_only_by_compromised_and_new_keys_is_refused(tmp_path) -> None:
    s = scene(tmp_path, root_threshold=2)
    k1 = s.rig.keys[Role.ROOT][0]
    attacker = Ed25519PrivateKey.generate()
    files = s.rig.files()

    def replace_k2(root) -> None:
        root.revoke_key(repo.key_id(s.rig.keys[Role.ROOT][1]), "root")
        root.add_key(repo._public(attacker), "root")

    # Valid under its own keys {K1, attacker} (threshold 2), but only one of the trusted root's.
    files["metadata/2.root.json"] = resign(files["metadata/1.root.json"], k1, attacker, version=2, change=replace_k2)
    s.transport.files = files
    s.refused(ThresholdError)
    assert s.client.trusted_versions()[Role.ROOT] == 1


@pytest.mark.parametrize("role", [Role.TIMESTAMP, Role.TARGETS])
def test_after_rotation_metadata_signed_with_the_revoked_key_is_refused(tmp_path, role: Role) -> None:
    s = scene(tmp_path)
    revoked = s.rig.keys[role][0]
    new = Ed25519PrivateKey.generate()
    repo.rotate_key(s.rig.dir, role, revoked, new, s.rig.keys[Role.ROOT], now=s.rig.now)
    s.rig.keys[role] = [new]
    s.rig.publish()
    s.serve_published()
    update_from(s.device, s.client)  # root v2 accepted: the old key is revoked on the device
    assert s.client.trusted_versions()[Role.ROOT] == 2
    files = s.rig.files()
    if role is Role.TIMESTAMP:
        files["metadata/timestamp.json"] = resign(files["metadata/timestamp.json"], revoked, version=9)
    else:
        # The attacker with the revoked targets key (and, say, the snapshot and timestamp keys).
        latest = max(int(p.split("/")[1].split(".")[0]) for p in files if p.endswith(".targets.json"))
        forged = resign(files[f"metadata/{latest}.targets.json"], revoked, version=latest + 1)
        files[f"metadata/{latest + 1}.targets.json"] = forged
        snap_v = max(int(p.split("/")[1].split(".")[0]) for p in files if p.endswith(".snapshot.json"))
        snap = resign(files[f"metadata/{snap_v}.snapshot.json"], *s.rig.keys[Role.SNAPSHOT], version=snap_v + 1,
                      change=lambda sn: sn.meta.__setitem__("targets.json", MetaFile(latest + 1, len(forged))))
        files[f"metadata/{snap_v + 1}.snapshot.json"] = snap
        files["metadata/timestamp.json"] = resign(
            files["metadata/timestamp.json"], *s.rig.keys[Role.TIMESTAMP], version=20,
            change=lambda ts: setattr(ts, "snapshot_meta", MetaFile(snap_v + 1, len(snap))))
    s.transport.files = files
    err = s.refused(ThresholdError)
    assert role.value in str(err)


# ----------------------------------------------------------------------------- fast-forward
def test_fast_forward_attack_is_recovered_by_rotating_the_timestamp_key(tmp_path) -> None:
    s = scene(tmp_path)
    stolen = s.rig.keys[Role.TIMESTAMP][0]
    files = s.rig.files()
    # With the stolen key the attacker fast-forwards the device to timestamp v1000 ...
    files["metadata/timestamp.json"] = resign(files["metadata/timestamp.json"], stolen, version=1000)
    s.transport.files = files
    update_from(s.device, s.client)
    assert s.client.trusted_versions()[Role.TIMESTAMP] == 1000
    # ... so the next honest timestamp (v3) looks like a rollback and is refused,
    s.rig.release("A2")
    s.serve_published()
    s.refused(MetadataRollbackError)
    # until the owners rotate the timestamp key: the device drops the timestamp signed by the
    # revoked key (TUF 5.3.11) and accepts the honest one.
    new = Ed25519PrivateKey.generate()
    repo.rotate_key(s.rig.dir, Role.TIMESTAMP, stolen, new, s.rig.keys[Role.ROOT], now=s.rig.now)
    s.rig.keys[Role.TIMESTAMP] = [new]
    s.rig.publish()
    s.serve_published()
    update_from(s.device, s.client)
    assert s.client.trusted_versions()[Role.TIMESTAMP] < 1000 and digest("A2") in s.digests()


def test_every_metadata_file_the_attacks_touch_is_real_tuf_metadata(tmp_path) -> None:
    # The attack fixtures forge with python-tuf too: the honest files parse as the roles they name.
    s = scene(tmp_path)
    for path, data in s.rig.files().items():
        if path.startswith("metadata/") and path.endswith(".json"):
            role = path.split("/")[1].removesuffix(".json").split(".")[-1]
            assert Metadata.from_bytes(data).signed.type == role
