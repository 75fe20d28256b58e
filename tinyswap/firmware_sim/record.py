"""The device's persisted record: what the metadata partition says the device is running.

Why a typed record with pure transitions: test-then-confirm (MCUboot's "test" upgrade,
`boot_set_pending(permanent=0)` then `boot_set_confirmed()`) is a small state machine over
two states, the current one and the last confirmed one. Keeping its transitions as pure
functions of the record (no flash, no manager) makes every rule testable on its own, and
leaves the device only "compute the next record, commit it, then adopt it": a commit that
fails changes nothing, because nothing was changed before it.

The rules:

* `commit(new)`: a change of adapters, versions, anti-rollback counters or the active set
  runs on trial, remembering the last confirmed state; `permanent=True` skips the trial. A
  change of slot placement alone (a residency write) keeps a confirmed record confirmed.
* `confirm(new)`: the state becomes the confirmed one.
* `boot_state`: a boot restores the confirmed state (a trial never survives a reboot), then
  `restored(...)` is the confirmed record it persists before anything else.

The payload (the JSON the metadata store commits) keeps the form earlier firmware wrote:
`{"format", "version", "wear", "device", "current", "confirmed", "trial"}` with `confirmed`
null unless on trial.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

from tinyswap.firmware_sim.errors import MetadataRecordError

RECORD_FORMAT = "tinyswap-device-record"
RECORD_VERSION = 1


def _json_copy(value: Any) -> Any:
    """A deep, JSON-typed copy: what a record holds is exactly what reading it back gives."""
    return json.loads(json.dumps(value))


@dataclass(frozen=True)
class Snapshot:
    """One device state: the swap manager's exported state (as stored) and the active set."""

    state: Mapping[str, Any]
    active: Mapping[str, float]

    @classmethod
    def of(cls, state: Mapping[str, Any], active: Mapping[str, float], *, slots_persist: bool = True) -> Snapshot:
        """The state as stored. `slots_persist=False`: the model lives in RAM, its slots do not
        survive power-off, so no slot content is recorded."""
        stored = _json_copy(state)
        if not slots_persist:
            stored["slots"] = [{"slot": s["slot"], "digest": None} for s in stored["slots"]]
        return cls(stored, {str(n): float(w) for n, w in active.items()})

    def same_logic(self, other: Snapshot) -> bool:
        """Same adapters, versions, anti-rollback counters and active set (slot placement aside)."""
        a, b = self.state, other.state
        return (a["adapters"] == b["adapters"] and a["last_sequence"] == b["last_sequence"]
                and dict(self.active) == dict(other.active))

    def to_json(self) -> dict[str, Any]:
        return {"state": _json_copy(self.state), "active": dict(self.active)}

    @classmethod
    def from_json(cls, raw: Any, where: str) -> Snapshot:
        if not isinstance(raw, dict) or not isinstance(raw.get("state"), dict):
            raise MetadataRecordError(f"record field {where!r} is not a device state")
        state = raw["state"]
        for key in ("adapters", "last_sequence", "slots"):
            if key not in state:
                raise MetadataRecordError(f"record field {where}.state lacks {key!r}")
        active = raw.get("active", {})
        if not isinstance(active, dict):
            raise MetadataRecordError(f"record field {where}.active is not an object")
        try:
            return cls(state, {str(n): float(w) for n, w in active.items()})
        except (TypeError, ValueError):
            raise MetadataRecordError(f"record field {where}.active holds a non-numeric weight") from None


@dataclass(frozen=True)
class DeviceIdentity:
    """What the record was written for: a record for another base model is refused at boot."""

    profile: str
    device_class: str
    base_digest: str
    model_bytes: int
    slots: int

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "device_class": self.device_class, "base_digest": self.base_digest,
                "model_bytes": self.model_bytes, "slots": self.slots}

    @classmethod
    def from_json(cls, raw: Any) -> DeviceIdentity:
        if not isinstance(raw, dict):
            raise MetadataRecordError("record field 'device' is not an object")
        try:
            return cls(str(raw["profile"]), str(raw["device_class"]), str(raw["base_digest"]),
                       int(raw["model_bytes"]), int(raw["slots"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise MetadataRecordError(f"record field 'device' is malformed: {exc!r}") from None


@dataclass(frozen=True)
class DeviceRecord:
    """The persisted record. `confirmed` is the last confirmed state while `trial` (else None:
    the current state is the confirmed one); `wear` counts erases per model-flash sector."""

    identity: DeviceIdentity
    current: Snapshot
    confirmed: Snapshot | None = None
    trial: bool = False
    wear: Mapping[int, int] = field(default_factory=dict)
    erased: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.trial != (self.confirmed is not None):
            raise MetadataRecordError("a record is on trial exactly when it keeps a confirmed state")

    # ---------------------------------------------------------------- queries
    @property
    def confirmed_state(self) -> Snapshot:
        """The last confirmed state (the current one unless on trial)."""
        return self.confirmed if self.confirmed is not None else self.current

    @property
    def boot_state(self) -> Snapshot:
        """What a boot restores: a trial state never survives a reboot."""
        return self.confirmed_state

    # ---------------------------------------------------------------- pure transitions
    def commit(self, new: Snapshot, *, permanent: bool = False) -> DeviceRecord:
        """The record after committing `new`: on trial unless permanent, or unless only the slot
        placement of a confirmed state moved."""
        if permanent or (not self.trial and new.same_logic(self.current)):
            return replace(self, current=new, confirmed=None, trial=False)
        return replace(self, current=new, confirmed=self.confirmed_state, trial=True)

    def confirm(self, new: Snapshot) -> DeviceRecord:
        """The record after confirming `new` (also what a boot persists after restoring)."""
        return replace(self, current=new, confirmed=None, trial=False)

    def restored(self, new: Snapshot) -> DeviceRecord:
        """The record a boot persists once it restored `boot_state` (as `new`): confirmed."""
        return self.confirm(new)

    def with_wear(self, wear: Mapping[int, int]) -> DeviceRecord:
        return replace(self, wear={int(k): int(v) for k, v in wear.items()})

    def with_erased(self, slots: Iterable[int]) -> DeviceRecord:
        return replace(self, erased=tuple(sorted(int(s) for s in slots)))

    # ---------------------------------------------------------------- payload
    def to_payload(self) -> dict[str, Any]:
        payload = {"format": RECORD_FORMAT, "version": RECORD_VERSION,
                   "wear": {str(k): int(v) for k, v in sorted(self.wear.items())},
                   "device": self.identity.to_json(),
                   "current": self.current.to_json(),
                   "confirmed": None if self.confirmed is None else self.confirmed.to_json(),
                   "trial": self.trial}
        if self.erased:  # only when the idle step ran: a record without it keeps its old form
            payload["erased"] = list(self.erased)
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> DeviceRecord:
        """Parse a committed payload; every malformed field is a `MetadataRecordError`."""
        if payload.get("format") != RECORD_FORMAT or payload.get("version") != RECORD_VERSION:
            raise MetadataRecordError(f"record format {payload.get('format')!r} version {payload.get('version')!r}: "
                                      f"expected {RECORD_FORMAT!r} version {RECORD_VERSION}")
        trial = payload.get("trial")
        if not isinstance(trial, bool):
            raise MetadataRecordError(f"record field 'trial' must be true or false, got {trial!r}")
        wear_raw = payload.get("wear", {})
        try:
            wear = {int(k): int(v) for k, v in dict(wear_raw).items()}
        except (TypeError, ValueError):
            raise MetadataRecordError("record field 'wear' must map sector indices to counts") from None
        erased_raw = payload.get("erased", [])
        if not isinstance(erased_raw, list) or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                                       for i in erased_raw):
            raise MetadataRecordError("record field 'erased' must list slot indices")
        identity = DeviceIdentity.from_json(payload.get("device"))
        current = Snapshot.from_json(payload.get("current"), "current")
        confirmed = Snapshot.from_json(payload.get("confirmed"), "confirmed") if trial else None
        return cls(identity, current, confirmed, trial, wear, tuple(sorted(set(erased_raw))))


__all__ = ["DeviceIdentity", "DeviceRecord", "RECORD_FORMAT", "RECORD_VERSION", "Snapshot"]
