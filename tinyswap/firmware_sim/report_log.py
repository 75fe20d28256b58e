"""The device report log (SUIT-report style): one typed entry per device operation, kept
bounded and power-safe in the adapter store.

Why: an update server needs to know what a device did with what it was sent (installed,
swapped, confirmed, reverted at boot, or refused, and why), not only what it runs now. SUIT
(RFC 9124 and the SUIT report draft) has the device produce such a report per manifest it
processes; this is that report, kept on the device so it survives reboots and can be exported.

Storage: one file, `LOG_NAME`, in the device's LittleFS adapter store (no partition of its
own, so the board layout is unchanged). `AdapterStore.write` replaces a file atomically (a
temporary file, then a rename), so after any power cut the file holds exactly the old log or
exactly the new one. The file holds at most `max_entries` entries: the oldest are dropped and
counted in `dropped`, so it never grows. Package files are named by their 64-hex content
digest, so the log's name cannot collide with one.

The rule "validate completely, then write; nothing that can fail may run after a commit":
an operation commits its metadata record first; the log entry is appended only after that,
and an append that fails cannot undo or fail the operation:

* a store error (full, worn, not mounted) is swallowed: the operation stands, the entry is
  lost and counted in RAM (`unlogged`), the timeline notes it;
* a power cut during the append leaves the device unbooted, as any cut does; the operation's
  record stands on flash. The next boot reconciles: when the committed record's sequence is
  ahead of the last logged one, it appends a `recovered` entry (an operation committed without
  its report), then a `revert` entry if it reverted a trial, or a `boot` entry if its own
  repairs committed a new record.

So after every boot that can write the log, its last entry's `record_sequence` is the
committed record's sequence, and every entry's `record_sequence` is at most that (entries'
record sequences never decrease). Refusals change no device state except the log.

File (UTF-8 JSON, keys sorted, bounded: `max_file_bytes`):

    {"format": "tinyswap-report-log", "version": 1, "max_entries": N, "dropped": D,
     "next_sequence": S, "entries": [ENTRY, ...]}

ENTRY (every field present; strings cut to MAX_TEXT characters):

    sequence         entry number, from 1, strictly increasing over the device's life
    kind             install | swap | activate | confirm | rollback | delete | infer |
                     prefetch | revert | boot | recovered (`EntryKind`)
    outcome          applied | unchanged | refused | failed (`EntryOutcome`): refused = a
                     typed error and no new record; failed = a typed error after a record
                     was committed (part of the operation stands)
    adapter, version, digest   the adapter concerned, or null
    reason           null, or "ErrorClass: message" of the refusal, or what a boot did
    record_sequence  the metadata record sequence after the operation (null: none)
    time_s           simulated time of the entry

`infer` and `prefetch` are logged only when they committed a record (a residency write) or
failed after one; other calls of them change nothing persistent and are not reports.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from tinyswap.errors import InputFileError, TinySwapError
from tinyswap.files import parse_json_bounded
from tinyswap.firmware_sim.errors import FlashError, FlashMisuseError, PowerLoss, StoreError, StoreNotFoundError
from tinyswap.firmware_sim.lfs_store import AdapterStore
from tinyswap.firmware_sim.timeline import Timeline

if TYPE_CHECKING:
    from tinyswap.firmware_sim.boot import BootReport

LOG_NAME = "report-log"
LOG_FORMAT = "tinyswap-report-log"
LOG_VERSION = 1
DEFAULT_MAX_ENTRIES = 32
MAX_ENTRIES_LIMIT = 1024
MAX_TEXT = 200
MAX_ENTRY_BYTES = 2048  # an entry's JSON, every string at MAX_TEXT printable ASCII (escapes at most double it)
ENTRY_FIELDS = ("adapter", "digest", "kind", "outcome", "reason", "record_sequence", "sequence", "time_s", "version")


class ReportLogError(TinySwapError, ValueError):
    """The report log file does not have the documented form (or is over its size bound), or
    a log is configured with an impossible bound."""


class EntryKind(enum.Enum):
    INSTALL = "install"
    SWAP = "swap"
    ACTIVATE = "activate"
    CONFIRM = "confirm"
    ROLLBACK = "rollback"
    DELETE = "delete"
    INFER = "infer"
    PREFETCH = "prefetch"
    REVERT = "revert"  # a boot found a trial record and restored the confirmed state
    BOOT = "boot"  # a boot committed a new record of its own (repairs) or started the log
    RECOVERED = "recovered"  # a boot found records committed after the last entry (no report)


class EntryOutcome(enum.Enum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"  # nothing to do (already installed, already live, nothing on trial)
    REFUSED = "refused"
    FAILED = "failed"


# Device operations that are always reported; the others only when they commit a record.
ALWAYS_REPORTED = frozenset({EntryKind.INSTALL, EntryKind.SWAP, EntryKind.ACTIVATE, EntryKind.CONFIRM,
                             EntryKind.ROLLBACK, EntryKind.DELETE})


def _cut(text: Any) -> str | None:
    """At most MAX_TEXT printable ASCII characters (others become '?'): an entry's size is
    bounded whatever a package or an error message holds."""
    if text is None:
        return None
    return "".join(c if " " <= c <= "~" else "?" for c in str(text)[:MAX_TEXT])


def reason_of(exc: BaseException) -> str:
    """A refusal's reason: the typed error's class name and message, on one line."""
    return _cut(f"{type(exc).__name__}: {' '.join(str(exc).split())}") or ""


@dataclass(frozen=True)
class LogEntry:
    sequence: int
    kind: EntryKind
    outcome: EntryOutcome
    adapter: str | None
    version: str | None
    digest: str | None
    reason: str | None
    record_sequence: int | None
    time_s: float

    def to_json(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "kind": self.kind.value, "outcome": self.outcome.value,
                "adapter": self.adapter, "version": self.version, "digest": self.digest, "reason": self.reason,
                "record_sequence": self.record_sequence, "time_s": self.time_s}

    @classmethod
    def from_json(cls, raw: Any, where: str) -> LogEntry:
        if not isinstance(raw, dict) or sorted(raw) != sorted(ENTRY_FIELDS):
            raise ReportLogError(f"report log: {where} does not have the fields {list(ENTRY_FIELDS)}")
        try:
            kind, outcome = EntryKind(raw["kind"]), EntryOutcome(raw["outcome"])
        except ValueError as exc:
            raise ReportLogError(f"report log: {where}: {exc}") from None
        for key in ("adapter", "version", "digest", "reason"):
            value = raw[key]
            if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
                raise ReportLogError(f"report log: {where}.{key} is not null or a string of <= {MAX_TEXT} characters")
        seq, rec, t = raw["sequence"], raw["record_sequence"], raw["time_s"]
        if not _is_count(seq) or seq < 1 or not (rec is None or _is_count(rec)) \
                or not isinstance(t, (int, float)) or isinstance(t, bool):
            raise ReportLogError(f"report log: {where} has a malformed sequence, record_sequence or time_s")
        return cls(seq, kind, outcome, raw["adapter"], raw["version"], raw["digest"], raw["reason"], rec, float(t))


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def max_file_bytes(max_entries: int) -> int:
    return 256 + max_entries * MAX_ENTRY_BYTES


@dataclass(frozen=True)
class LogState:
    """The log as a value: `append` returns a new state (computed first, written, then adopted)."""

    max_entries: int
    entries: tuple[LogEntry, ...] = ()
    dropped: int = 0
    next_sequence: int = 1

    @property
    def last(self) -> LogEntry | None:
        return self.entries[-1] if self.entries else None

    @property
    def last_record_sequence(self) -> int | None:
        """The newest record sequence any entry names (entries never decrease)."""
        for entry in reversed(self.entries):
            if entry.record_sequence is not None:
                return entry.record_sequence
        return None

    def append(self, drafts: Iterable[LogEntry]) -> LogState:
        """The state with `drafts` appended (their `sequence` fields are assigned here), the
        oldest dropped beyond `max_entries`."""
        entries = list(self.entries)
        seq = self.next_sequence
        for d in drafts:
            entries.append(replace(d, sequence=seq))
            seq += 1
        over = max(0, len(entries) - self.max_entries)
        return LogState(self.max_entries, tuple(entries[over:]), self.dropped + over, seq)

    def to_json(self) -> dict[str, Any]:
        return {"format": LOG_FORMAT, "version": LOG_VERSION, "max_entries": self.max_entries,
                "dropped": self.dropped, "next_sequence": self.next_sequence,
                "entries": [e.to_json() for e in self.entries]}

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()


def decode_log(data: bytes, max_entries: int) -> LogState:
    """Parse the log file, bounded: the size is checked before it is parsed. A log written with
    a larger bound keeps only its newest `max_entries` (the rest count as dropped)."""
    limit = max_file_bytes(MAX_ENTRIES_LIMIT)
    if len(data) > limit:
        raise ReportLogError(f"report log: {len(data)} bytes, over the {limit}-byte limit")
    try:
        raw = parse_json_bounded(bytes(data), "report log", max_depth=4)
    except InputFileError as exc:
        raise ReportLogError(f"report log: {exc.problem}") from None
    if not isinstance(raw, dict) or raw.get("format") != LOG_FORMAT or raw.get("version") != LOG_VERSION:
        raise ReportLogError(f"report log: not a {LOG_FORMAT!r} version {LOG_VERSION} file")
    entries_raw, dropped, nxt = raw.get("entries"), raw.get("dropped"), raw.get("next_sequence")
    if not isinstance(entries_raw, list) or len(entries_raw) > MAX_ENTRIES_LIMIT \
            or not _is_count(dropped) or not _is_count(nxt):
        raise ReportLogError("report log: malformed entries, dropped or next_sequence")
    entries = [LogEntry.from_json(e, f"entries[{i}]") for i, e in enumerate(entries_raw)]
    for a, b in zip(entries, entries[1:]):
        if b.sequence <= a.sequence:
            raise ReportLogError(f"report log: entry sequences do not increase ({a.sequence}, {b.sequence})")
    if entries and entries[-1].sequence >= nxt:
        raise ReportLogError("report log: next_sequence is not above the last entry's sequence")
    over = max(0, len(entries) - max_entries)
    return LogState(max_entries, tuple(entries[over:]), dropped + over, nxt)


def draft(kind: EntryKind, outcome: EntryOutcome, *, adapter: Any = None, version: Any = None, digest: Any = None,
          reason: str | None = None, record_sequence: int | None, time_s: float) -> LogEntry:
    """An entry before `LogState.append` numbers it."""
    return LogEntry(0, kind, outcome, _cut(adapter), _cut(version), _cut(digest), _cut(reason), record_sequence,
                    float(time_s))


def entries_json(entries: Sequence[LogEntry]) -> list[dict[str, Any]]:
    return [e.to_json() for e in entries]


# ------------------------------------------------------------------ on the device

class DeviceReportLog:
    """The device's log: its RAM copy (`state`) and the appends through the adapter store.

    Configuration (`max_entries`) survives reboots; `state` is reloaded from the store at every
    boot (`load`), so it says what the flash holds. `unlogged` counts entries lost since the
    last boot because the store refused the append (RAM only, like a firmware's counter).
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if not isinstance(max_entries, int) or isinstance(max_entries, bool) \
                or not 1 <= max_entries <= MAX_ENTRIES_LIMIT:
            raise ReportLogError(f"a report log holds 1 to {MAX_ENTRIES_LIMIT} entries, got {max_entries!r}")
        self.max_entries = max_entries
        self.state = LogState(max_entries)
        self.unlogged = 0
        self.loaded = False  # read from (or started on) the mounted store at this boot

    def load(self, store: AdapterStore | None) -> str | None:
        """Read the log at boot. Returns None when it was read, else why the log starts anew:
        absent (a new device, or the log was just enabled), or unreadable."""
        self.unlogged = 0
        self.loaded = False
        self.state = LogState(self.max_entries)
        if store is None:
            return "the adapter store is not mounted"
        try:
            data = store.read(LOG_NAME)
        except StoreNotFoundError:
            self.loaded = True
            return "absent"
        except (PowerLoss, FlashMisuseError):
            raise
        except (StoreError, FlashError) as exc:  # a fault: the log cannot be trusted, start anew
            self.loaded = True
            return f"unreadable ({reason_of(exc)})"
        try:
            self.state = decode_log(data, self.max_entries)
        except ReportLogError as exc:
            self.loaded = True
            return f"unreadable ({reason_of(exc)})"
        self.loaded = True
        return None

    def append(self, store: AdapterStore | None, drafts: Sequence[LogEntry], timeline: Timeline) -> bool:
        """Append `drafts` in one atomic store write. After an operation committed, nothing here
        may fail it: a store fault is swallowed and counted (`unlogged`); `PowerLoss` propagates
        (the device is off; the next boot reconciles), and so does a `FlashMisuseError` (a bug)."""
        if not drafts:
            return True
        if store is None or not self.loaded:
            self.unlogged += len(drafts)
            timeline.instant("report not logged", cat="report", entries=len(drafts), error="no mounted store")
            return False
        new = self.state.append(drafts)
        try:
            with timeline.span("report log", cat="report", entries=len(drafts)):
                store.write(LOG_NAME, new.encode())
        except (PowerLoss, FlashMisuseError):
            raise
        except (StoreError, FlashError) as exc:
            if self._landed(store, new):  # the write failed after the rename: the entries are there
                self.state = new
                return True
            self.unlogged += len(drafts)
            timeline.instant("report not logged", cat="report", entries=len(drafts), error=reason_of(exc))
            return False
        self.state = new
        return True

    @staticmethod
    def _landed(store: AdapterStore, new: LogState) -> bool:
        """After a failed write the file holds the old or the new log: which one?"""
        try:
            return store.read(LOG_NAME) == new.encode()
        except (PowerLoss, FlashMisuseError):
            raise
        except (StoreError, FlashError):
            return False  # unreadable now: keep the old RAM copy (the next boot reloads the file)

    def to_json(self) -> dict[str, Any]:
        """The export: the file's content plus the RAM-only counter."""
        return {**self.state.to_json(), "unlogged": self.unlogged}


def boot_drafts(problem: str | None, last_record: int | None, report: BootReport, current: int | None,
                time_s: float) -> list[LogEntry]:
    """What a boot appends (see the module docstring): the log started, or records committed
    without a report; then the revert, or the boot's own repairs."""
    loaded = report.record_sequence
    drafts = []
    if problem == "absent":
        drafts.append(draft(EntryKind.BOOT, EntryOutcome.APPLIED, reason="report log started",
                            record_sequence=loaded, time_s=time_s))
    elif problem is not None:
        drafts.append(draft(EntryKind.BOOT, EntryOutcome.FAILED, reason=f"report log {problem}: started anew",
                            record_sequence=loaded, time_s=time_s))
    elif loaded is not None and (last_record is None or loaded > last_record):
        drafts.append(draft(EntryKind.RECOVERED, EntryOutcome.APPLIED,
                            reason=f"metadata record {last_record} -> {loaded} committed without a report "
                                   f"(power lost before the report was written)",
                            record_sequence=loaded, time_s=time_s))
    if report.reverted:
        drafts.append(draft(EntryKind.REVERT, EntryOutcome.APPLIED,
                            reason="the trial state was not confirmed: the confirmed state was restored",
                            record_sequence=current, time_s=time_s))
    elif current != loaded:
        what = f"cleared slots {report.cleared_slots}" if report.cleared_slots else "restored state persisted"
        drafts.append(draft(EntryKind.BOOT, EntryOutcome.APPLIED, reason=f"boot repairs committed: {what}",
                            record_sequence=current, time_s=time_s))
    return drafts


__all__ = ["ALWAYS_REPORTED", "DEFAULT_MAX_ENTRIES", "EntryKind", "EntryOutcome", "DeviceReportLog", "LOG_NAME", "LogEntry", "LogState",
           "ReportLogError", "boot_drafts", "decode_log", "draft", "entries_json", "max_file_bytes", "reason_of"]
