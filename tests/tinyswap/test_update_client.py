"""The device's TUF client (tinyswap/update_client.py): provisioning, refresh, listing and
download, the trusted-time rule, all-or-nothing adoption, and the mapping of ngclient's
exceptions to typed errors. The attacks themselves: tests/sweeps/test_repository_attacks.py."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from tuf.api import exceptions as tuf_errors
from tuf.ngclient import Updater

import tinyswap.update_client as uc
from tinyswap.export import repository as repo
from tinyswap.update_client import (
    ClientStateError,
    DirectoryTransport,
    FreezeError,
    MalformedMetadataError,
    MemoryTransport,
    RepositoryError,
    RepositoryUnavailableError,
    Role,
    ThresholdError,
    UnlistedTargetError,
    UpdateClient,
)

from tests.repository_cases import HOUR, T0, Clock, new_rig, packages, resign


def test_provision_refresh_list_and_download_from_a_repository_folder(tmp_path) -> None:
    rig = new_rig(tmp_path)
    rig.release("A1", "B1")
    rig.release("A2")
    client = UpdateClient.provision(tmp_path / "dev", rig.root_bytes(), DirectoryTransport(rig.dir), clock=Clock())
    state = client.refresh()
    assert (state.root_version, state.timestamp_version, state.snapshot_version, state.targets_version) == (1, 3, 3, 4)
    assert sorted(p.path for p in state.packages) == ["A-1.tsap", "A-2.tsap", "B-1.tsap"]
    newest = state.newest()
    assert newest["A"].sequence == 2 and newest["B"].sequence == 1
    assert client.download(newest["A"]) == packages()["A2"]
    assert client.download("B-1.tsap") == packages()["B1"]
    with pytest.raises(UnlistedTargetError):
        client.download("C-1.tsap")
    assert client.trusted_versions() == {Role.ROOT: 1, Role.TIMESTAMP: 3, Role.SNAPSHOT: 3, Role.TARGETS: 4}
    # No staging folder is left behind.
    assert sorted(p.name for p in client.state_dir.iterdir()) == ["metadata", "trusted_time.json"]


def test_a_client_needs_a_provisioned_directory(tmp_path) -> None:
    rig = new_rig(tmp_path)
    with pytest.raises(ClientStateError, match="provision"):
        UpdateClient(tmp_path / "empty", MemoryTransport())
    UpdateClient.provision(tmp_path / "dev", rig.root_bytes(), MemoryTransport())
    with pytest.raises(ClientStateError, match="already provisioned"):
        UpdateClient.provision(tmp_path / "dev", rig.root_bytes(), MemoryTransport())
    with pytest.raises(ClientStateError, match="refresh"):
        UpdateClient(tmp_path / "dev", MemoryTransport()).packages()


def test_provisioning_refuses_a_root_that_does_not_verify_against_itself(tmp_path) -> None:
    rig = new_rig(tmp_path)
    forged = resign(rig.root_bytes(), version=1)  # no signature
    with pytest.raises(ThresholdError):
        UpdateClient.provision(tmp_path / "dev", forged, MemoryTransport())
    assert not (tmp_path / "dev" / "metadata").exists()


# ------------------------------------------------------------------------------ trusted time
def test_reference_time_is_the_max_of_the_clock_and_the_trusted_time(tmp_path) -> None:
    rig = new_rig(tmp_path)
    clock = Clock(T0 - timedelta(days=3650))  # a clock reset to an old date
    client = rig.client(tmp_path / "dev", clock=clock, trusted_time=T0 - HOUR)
    assert client.reference_time() == T0 - HOUR
    clock.now = T0 + HOUR
    assert client.reference_time() == T0 + HOUR
    client.clock = None  # no real-time clock at all
    assert client.reference_time() == T0 - HOUR


def test_a_device_without_clock_or_trusted_time_cannot_check_expiry(tmp_path) -> None:
    rig = new_rig(tmp_path)
    client = rig.client(tmp_path / "dev", clock=Clock())
    client.clock = None
    with pytest.raises(ClientStateError, match="no clock"):
        client.refresh()


def test_the_trusted_time_advances_to_the_newest_accepted_timestamp_issue_time(tmp_path) -> None:
    rig = new_rig(tmp_path)
    transport = MemoryTransport(rig.files())
    client = rig.client(tmp_path / "dev", transport, clock=None, trusted_time=T0 - HOUR)
    client.clock = None
    client.refresh()
    assert client.trusted_time() == T0  # timestamp v1 was issued at T0
    rig.now = T0 + 20 * HOUR
    rig.release("A1")
    transport.files = rig.files()
    client.refresh()
    assert client.trusted_time() == T0 + 20 * HOUR
    # It never goes back: an older issue time (a replayed state) would not lower it.
    assert json.loads((client.state_dir / "trusted_time.json").read_text()) == {"trusted_time": "2030-01-02T08:00:00Z"}


def test_ngclient_checks_expiry_against_the_device_time_not_the_host_clock(tmp_path) -> None:
    # Pins the private attribute the client sets (module docstring): the Updater keeps its
    # reference time in `_trusted_set.reference_time`, read by every expiry check.
    rig = new_rig(tmp_path, now=datetime.now(timezone.utc), lifetimes=repo.Lifetimes(timestamp=timedelta(hours=1)))
    updater = Updater(str(tmp_path), "x:/", fetcher=uc._TransportFetcher(MemoryTransport()), bootstrap=rig.root_bytes())
    assert isinstance(updater._trusted_set.reference_time, datetime)
    # Fresh by the host clock, expired by the device's: refused.
    late = rig.client(tmp_path / "late", clock=Clock(rig.now + 2 * HOUR))
    with pytest.raises(FreezeError):
        late.refresh()
    # Expired by the host clock, fresh by the device's: accepted.
    old = new_rig(tmp_path / "old", now=datetime(2020, 1, 1, tzinfo=timezone.utc))
    assert old.client(tmp_path / "old-dev", clock=Clock(old.now + HOUR)).refresh().timestamp_version == 1


def test_a_python_tuf_without_the_reference_time_attribute_is_refused(tmp_path, monkeypatch) -> None:
    rig = new_rig(tmp_path)
    client = rig.client(tmp_path / "dev")

    class Bare:
        def __init__(self, *args, **kwargs) -> None:
            self._trusted_set = object()

    monkeypatch.setattr(uc, "Updater", Bare)
    with pytest.raises(ClientStateError, match="reference_time"):
        client.refresh()


# ------------------------------------------------------------------------ all or nothing
def test_refresh_without_commit_then_discard_changes_nothing(tmp_path) -> None:
    rig = new_rig(tmp_path)
    transport = MemoryTransport(rig.files())
    client = rig.client(tmp_path / "dev", transport)
    client.refresh()
    before = {p: p.read_bytes() for p in client.metadata_dir.rglob("*.json") if p.is_file()}
    rig.release("A1")
    transport.files = rig.files()
    state = client.refresh(commit=False)
    assert state.timestamp_version == 2 and client.download("A-1.tsap") == packages()["A1"]
    client.discard()
    assert {p: p.read_bytes() for p in client.metadata_dir.rglob("*.json") if p.is_file()} == before
    assert client.trusted_versions()[Role.TIMESTAMP] == 1
    client.refresh(commit=False)
    client.commit()
    assert client.trusted_versions()[Role.TIMESTAMP] == 2


def test_an_interrupted_switch_of_metadata_folders_is_completed_at_start(tmp_path) -> None:
    rig = new_rig(tmp_path)
    client = rig.client(tmp_path / "dev")
    client.refresh()
    # Power cut between the two renames: only metadata.old exists.
    client.metadata_dir.rename(client.state_dir / "metadata.old")
    (client.state_dir / "staging-x").mkdir()
    again = UpdateClient(client.state_dir, client.transport, clock=Clock())
    assert again.trusted_versions()[Role.TIMESTAMP] == 1
    assert not (client.state_dir / "staging-x").exists()


# ------------------------------------------------------------------------- error mapping
def test_a_missing_repository_is_unavailable_not_an_attack(tmp_path) -> None:
    rig = new_rig(tmp_path)
    client = rig.client(tmp_path / "dev", MemoryTransport())
    with pytest.raises(RepositoryUnavailableError):
        client.refresh()


def test_malformed_metadata_is_refused_as_such(tmp_path) -> None:
    rig = new_rig(tmp_path)
    files = rig.files()
    files["metadata/timestamp.json"] = b"{not json"
    with pytest.raises(MalformedMetadataError):
        rig.client(tmp_path / "dev", MemoryTransport(files)).refresh()


def test_the_fetcher_serves_only_repository_paths() -> None:
    fetcher = uc._TransportFetcher(MemoryTransport({"metadata/x.json": b"1", "a/../b": b"2"}))
    assert fetcher.download_bytes("tinyswap-repo:/metadata/x.json", 10) == b"1"
    for url in ("tinyswap-repo:/a/../b", "https://example.org/metadata/x.json", "tinyswap-repo:/metadata/none.json"):
        with pytest.raises(tuf_errors.DownloadHTTPError):
            fetcher.download_bytes(url, 10)


def test_every_refusal_is_a_tinyswap_error_named_after_its_attack() -> None:
    from tinyswap.errors import TinySwapError

    for attack, cls in uc.ERRORS_BY_ATTACK.items():
        assert issubclass(cls, RepositoryError) and issubclass(cls, TinySwapError), attack
    assert {r.value for r in Role} == {"root", "targets", "snapshot", "timestamp"}
