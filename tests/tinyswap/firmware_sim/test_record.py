"""The persisted record: test-then-confirm transitions as pure functions, no flash involved."""

from __future__ import annotations

import json

import pytest

from tinyswap.firmware_sim.errors import MetadataError, MetadataRecordError
from tinyswap.firmware_sim.record import RECORD_FORMAT, RECORD_VERSION, DeviceIdentity, DeviceRecord, Snapshot

IDENTITY = DeviceIdentity("mcu-qspi", "mcu-qspi", "ab" * 32, 12345, 2)


def state(adapters: dict[str, str], slots: tuple[str | None, ...] = (None, None), seq: int = 1) -> dict:
    """A manager state in `export_state()` form: `adapters` maps name -> current digest."""
    return {"format": "tinyswap-manager-state", "version": 1, "base_digest": IDENTITY.base_digest,
            "adapters": {n: {"current": d, "versions": [d], "priority": 0.0, "tenant": None}
                         for n, d in adapters.items()},
            "last_sequence": {n: seq for n in adapters},
            "slots": [{"slot": i, "digest": d, "content_sha256": f"c{d}"} for i, d in enumerate(slots)],
            "retired": []}


A1 = Snapshot.of(state({"A": "a1"}, ("a1", None)), {"A": 1.0})
A1_MOVED = Snapshot.of(state({"A": "a1"}, (None, "a1")), {"A": 1.0})  # same logic, other slot
A2 = Snapshot.of(state({"A": "a2"}, ("a1", "a2"), seq=2), {"A": 1.0})
A2_HALF = Snapshot.of(state({"A": "a2"}, ("a1", "a2"), seq=2), {"A": 0.5})
CONFIRMED = DeviceRecord(IDENTITY, A1)


def test_a_logic_change_goes_on_trial_and_remembers_the_confirmed_state():
    r = CONFIRMED.commit(A2)
    assert r.trial and r.current == A2 and r.confirmed == A1
    assert r.boot_state == A1  # a trial never survives a reboot
    # a second change while on trial keeps the original confirmed state, not the trial one
    r2 = r.commit(A2_HALF)
    assert r2.trial and r2.current == A2_HALF and r2.confirmed == A1 and r2.boot_state == A1


def test_permanent_and_confirm_leave_no_trial():
    assert CONFIRMED.commit(A2, permanent=True) == DeviceRecord(IDENTITY, A2)
    on_trial = CONFIRMED.commit(A2)
    confirmed = on_trial.confirm(A2)
    assert not confirmed.trial and confirmed.confirmed is None and confirmed.boot_state == A2
    assert on_trial.commit(A2_HALF, permanent=True).boot_state == A2_HALF


def test_a_slot_only_move_keeps_a_confirmed_record_confirmed_but_not_a_trial_one():
    moved = CONFIRMED.commit(A1_MOVED)
    assert not moved.trial and moved.boot_state == A1_MOVED
    on_trial = CONFIRMED.commit(A2)
    assert on_trial.commit(Snapshot.of(state({"A": "a2"}, ("a2", None), seq=2), {"A": 1.0})).trial


def test_an_active_set_change_is_a_logic_change():
    assert A2.same_logic(A2) and not A2.same_logic(A2_HALF) and A1.same_logic(A1_MOVED)
    assert DeviceRecord(IDENTITY, A2).commit(A2_HALF).trial


def test_boot_restores_the_confirmed_state_and_persists_it_confirmed():
    on_trial = CONFIRMED.commit(A2)
    restored = on_trial.restored(on_trial.boot_state)
    assert restored == DeviceRecord(IDENTITY, A1)


def test_transitions_are_pure():
    before = json.dumps(CONFIRMED.to_payload(), sort_keys=True)
    CONFIRMED.commit(A2)
    CONFIRMED.confirm(A2)
    CONFIRMED.with_wear({3: 7})
    assert json.dumps(CONFIRMED.to_payload(), sort_keys=True) == before
    with pytest.raises(AttributeError):
        CONFIRMED.trial = True  # type: ignore[misc]


def test_trial_exactly_when_a_confirmed_state_is_kept():
    with pytest.raises(MetadataRecordError):
        DeviceRecord(IDENTITY, A2, confirmed=A1, trial=False)
    with pytest.raises(MetadataRecordError):
        DeviceRecord(IDENTITY, A2, confirmed=None, trial=True)


def test_snapshot_is_a_json_copy_and_drops_ram_slots():
    raw = state({"A": "a1"}, ("a1", None))
    snap = Snapshot.of(raw, {"A": 1})
    raw["adapters"]["A"]["current"] = "changed"
    assert snap.state["adapters"]["A"]["current"] == "a1" and snap.active == {"A": 1.0}
    ram = Snapshot.of(raw, {}, slots_persist=False)
    assert ram.state["slots"] == [{"slot": 0, "digest": None}, {"slot": 1, "digest": None}]


def test_payload_form_and_round_trip():
    r = CONFIRMED.commit(A2).with_wear({5: 2, 4: 1})
    payload = r.to_payload()
    assert list(payload) == ["format", "version", "wear", "device", "current", "confirmed", "trial"]
    assert payload["format"] == RECORD_FORMAT and payload["version"] == RECORD_VERSION
    assert payload["wear"] == {"4": 1, "5": 2} and payload["trial"] is True
    assert payload["device"] == {"profile": "mcu-qspi", "device_class": "mcu-qspi",
                                 "base_digest": IDENTITY.base_digest, "model_bytes": 12345, "slots": 2}
    back = DeviceRecord.from_payload(json.loads(json.dumps(payload)))
    assert back == r
    assert DeviceRecord.from_payload(CONFIRMED.to_payload()).to_payload()["confirmed"] is None


def test_pre_erased_slots_are_listed_only_when_there_are_some_and_survive_transitions():
    r = CONFIRMED.with_erased([1])
    assert r.to_payload()["erased"] == [1] and "erased" not in CONFIRMED.to_payload()
    assert DeviceRecord.from_payload(json.loads(json.dumps(r.to_payload()))) == r
    assert r.commit(A2).erased == (1,) and r.commit(A2).boot_state == CONFIRMED.current  # bytes, not logic


def _broken(change) -> dict:
    payload = json.loads(json.dumps(CONFIRMED.commit(A2).to_payload()))
    change(payload)
    return payload


@pytest.mark.parametrize("change", [
    lambda p: p.update(format="other"),
    lambda p: p.update(version=2),
    lambda p: p.update(trial="yes"),
    lambda p: p.update(wear={"x": 1}),
    lambda p: p.update(device={"profile": "mcu-qspi"}),
    lambda p: p.update(device=None),
    lambda p: p.update(current=None),
    lambda p: p["current"]["state"].pop("slots"),
    lambda p: p["current"].update(active={"A": "heavy"}),
    lambda p: p.update(confirmed=None),  # on trial without a confirmed state
    lambda p: p.update(erased=[-1]),
    lambda p: p.update(erased="1"),
], ids=["format", "version", "trial", "wear", "identity", "no-identity", "current", "state-slots", "weight",
        "confirmed", "erased-negative", "erased-not-a-list"])
def test_a_malformed_payload_is_a_typed_error(change):
    with pytest.raises(MetadataRecordError) as err:
        DeviceRecord.from_payload(_broken(change))
    assert isinstance(err.value, MetadataError)
