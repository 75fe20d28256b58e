"""Field declarations of scenario steps: value types, bounds, and their checks.

A step kind declares its fields once, as dataclass fields made with `param(...)`; the
registry reads those declarations to validate steps, to convert JSON values into typed
ones, to serialise steps back to JSON, and to write the field tables of
docs/scenario-format.md. A new value type needs a checker here, and the generator test
(tests/tinyswap/firmware_sim/scenario/test_generated.py) a strategy for it.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from tinyswap.firmware_sim.scenario.errors import ScenarioFormatError
from tinyswap.router import Request

BASE = "__base__"  # the adapter spec meaning "no adapter" (the router's and the manager's name)

# Bounds. They are generous for a scripted day but keep a typo from asking the simulator for
# years of idle time or billions of rows: a time must stay a finite float well inside the
# simulated clock's precision, a row count must fit in memory as per-row bookkeeping.
MAX_SECONDS = 10 * 366 * 24 * 3600.0  # ten years of simulated time
MAX_ROWS = 1_000_000
MAX_BATCH = 65_536
MAX_INDEX = 2**31 - 1  # a flash operation number, a byte count, a row number

_UNITS = {"ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}


class ValueType(enum.Enum):
    """What a field holds; the value is how docs/scenario-format.md names the type."""

    TEXT = "string"
    NAME = "non-empty string"
    BOOL = "true / false"
    INT = "integer"
    DURATION = "time"
    CHOICE = "one of"
    PACKAGE = "package label"
    DATASET = "dataset label"
    ADAPTERS = "adapter spec"
    ADAPTERS_LIST = "list of adapter specs"
    REQUESTS = "list of requests"


@dataclass(frozen=True)
class Param:
    """One field of a step: its name, type, whether it is required, default and bounds."""

    name: str
    type: ValueType
    required: bool
    default: Any = None
    minimum: int | None = None
    maximum: int | float | None = None
    choices: type[enum.Enum] | None = None
    doc: str = ""

    def type_text(self) -> str:
        """The type as the user document writes it (with the bounds)."""
        if self.type is ValueType.CHOICE:
            assert self.choices is not None
            return "one of " + ", ".join(f'"{c.value}"' for c in self.choices)
        if self.type is ValueType.INT:
            low = 0 if self.minimum is None else self.minimum
            return f"integer, {low} to {MAX_INDEX if self.maximum is None else self.maximum:,}"
        if self.type is ValueType.DURATION:
            return "time (seconds >= 0, or \"250ms\", \"5s\", \"10min\", \"6h\", \"HH:MM\", \"HH:MM:SS\")"
        return self.type.value

    def default_text(self) -> str:
        if self.required:
            return "required"
        if isinstance(self.default, enum.Enum):
            return f'"{self.default.value}"'
        if isinstance(self.default, bool):
            return str(self.default).lower()
        return "-" if self.default is None else repr(self.default)


_META = "tinyswap.scenario.param"


def param(type_: ValueType, *, doc: str, default: Any = dataclasses.MISSING, minimum: int | None = None,
          maximum: int | float | None = None, choices: type[enum.Enum] | None = None) -> Any:
    """A dataclass field declaring a step field (required when it has no default)."""
    meta = {_META: (type_, minimum, maximum, choices, doc)}
    return dataclasses.field(default=default, metadata=meta)


def params_of(cls: type) -> tuple[Param, ...]:
    """The `Param` declarations of a step's dataclass, in declaration order."""
    out = []
    for f in dataclasses.fields(cls):
        if _META not in f.metadata:
            continue
        type_, minimum, maximum, choices, doc = f.metadata[_META]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else f.default
        out.append(Param(f.name, type_, required, default, minimum, maximum, choices, doc))
    return tuple(out)


@dataclass(frozen=True)
class Where:
    """Where a value sits in the scenario: the top level, or a step (index and kind)."""

    step: int | None = None
    kind: str | None = None

    def __str__(self) -> str:
        if self.step is None:
            return "scenario"
        return f"step {self.step}" + (f" ({self.kind})" if self.kind else "")

    def fail(self, field: str, message: str) -> ScenarioFormatError:
        return ScenarioFormatError(f"{self}: field {field!r}: {message}", step=self.step, field=field,
                                   kind=self.kind)


@dataclass(frozen=True)
class Labels:
    """The package and dataset labels steps may name."""

    packages: frozenset[str] = frozenset()
    datasets: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RequestSpec:
    """One routed request of an `infer` step; "{row}" in a string becomes the row number."""

    user: str | None = None
    tenant: str | None = None
    task: str | None = None
    session: str | None = None
    context: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    dataset: str | None = None

    def request(self, row: int) -> Request:
        return Request(user=_fill(self.user, row), tenant=_fill(self.tenant, row), task=_fill(self.task, row),
                       session=_fill(self.session, row), context={k: _fill(v, row) for k, v in self.context.items()})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in ("user", "tenant", "task", "session", "dataset")
                               if getattr(self, k) is not None}
        if self.context:
            out["context"] = dict(self.context)
        return out


REQUEST_FIELDS = ("user", "tenant", "task", "session", "context", "dataset")


def _fill(value: Any, row: int) -> Any:
    return value.replace("{row}", str(row)) if isinstance(value, str) else value


def parse_duration(value: Any, where: str, *, step: int | None = None) -> float:
    """Seconds from a number or "250ms" / "5s" / "10min" / "6h" / "HH:MM" / "HH:MM:SS(.fff)"."""
    seconds, problem = _seconds(value)
    if problem:
        raise ScenarioFormatError(f"{where}: {problem}", step=step, field=where.rsplit(" ", 1)[-1])
    return seconds


def _seconds(value: Any) -> tuple[float, str]:
    """(seconds, "") or (0, what is wrong)."""
    seconds = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|min|h)", text)
        if m:
            seconds = float(m.group(1)) * _UNITS[m.group(2)]
        m = re.fullmatch(r"(\d+):([0-5]\d)(?::([0-5]\d(?:\.\d+)?))?", text)
        if m:
            seconds = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3) or 0)
    if seconds is None or not seconds >= 0:  # `not >=` also refuses NaN
        return 0.0, (f"{value!r} is not a time (seconds >= 0, or '250ms', '5s', '10min', '6h', 'HH:MM', "
                     f"'HH:MM:SS')")
    if seconds > MAX_SECONDS:
        return 0.0, f"{value!r} is more than {MAX_SECONDS:.0f} s (ten years)"
    return seconds, ""


def is_adapter_spec(value: Any) -> bool:
    """An adapter spec: a name, a non-empty list of names, or {name: finite weight}."""
    if isinstance(value, str):
        return bool(value)
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, str) and v for v in value)
    if isinstance(value, dict):
        return bool(value) and all(isinstance(k, str) and k and isinstance(w, (int, float))
                                   and not isinstance(w, bool) and math.isfinite(w) for k, w in value.items())
    return False


def _copy_spec(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value


# ---------------------------------------------------------------- checkers, one per value type
# Each takes (value, param, where, labels) and returns the typed value or raises where.fail(...).

Checker = Callable[[Any, Param, Where, Labels], Any]


def _text(value: Any, p: Param, where: Where, labels: Labels) -> str:
    if not isinstance(value, str):
        raise where.fail(p.name, "must be a string")
    return value


def _name(value: Any, p: Param, where: Where, labels: Labels) -> str:
    if not (isinstance(value, str) and value):
        raise where.fail(p.name, f"a non-empty string ({p.doc})")
    return value


def _bool(value: Any, p: Param, where: Where, labels: Labels) -> bool:
    if not isinstance(value, bool):
        raise where.fail(p.name, "true or false")
    return value


def _int(value: Any, p: Param, where: Where, labels: Labels) -> int:
    low = 0 if p.minimum is None else p.minimum
    high = MAX_INDEX if p.maximum is None else p.maximum
    if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
        raise where.fail(p.name, f"an integer >= {low} and <= {high:,}, got {value!r}")
    return value


def _duration(value: Any, p: Param, where: Where, labels: Labels) -> float:
    seconds, problem = _seconds(value)
    if problem:
        raise where.fail(p.name, problem)
    return seconds


def _choice(value: Any, p: Param, where: Where, labels: Labels) -> enum.Enum:
    assert p.choices is not None
    known = [c.value for c in p.choices]
    if not isinstance(value, str) or value not in known:
        raise where.fail(p.name, f"one of {known}, got {value!r}")
    return p.choices(value)


def _package(value: Any, p: Param, where: Where, labels: Labels) -> str:
    if not isinstance(value, str):
        raise where.fail(p.name, "a package label")
    if value not in labels.packages:
        raise where.fail(p.name, f"no package labelled {value!r} (packages: {sorted(labels.packages)})")
    return value


def _dataset(value: Any, p: Param, where: Where, labels: Labels, field: str | None = None) -> str:
    if not isinstance(value, str) or value not in labels.datasets:
        raise where.fail(field or p.name, f"no dataset labelled {value!r} (datasets: {sorted(labels.datasets)})")
    return value


def _adapters(value: Any, p: Param, where: Where, labels: Labels) -> Any:
    if not is_adapter_spec(value):
        raise where.fail(p.name, "an adapter name, a list of names or {name: weight}")
    return _copy_spec(value)


def _adapters_list(value: Any, p: Param, where: Where, labels: Labels) -> tuple[Any, ...]:
    if not (isinstance(value, list) and value and all(is_adapter_spec(s) for s in value)):
        raise where.fail(p.name, "a non-empty list of adapter specs (cycled over the rows)")
    return tuple(_copy_spec(s) for s in value)


def _requests(value: Any, p: Param, where: Where, labels: Labels) -> tuple[RequestSpec, ...]:
    if not (isinstance(value, list) and value and all(isinstance(r, dict) for r in value)):
        raise where.fail(p.name, "a non-empty list of request objects")
    out = []
    for j, r in enumerate(value):
        for key, v in r.items():
            if key not in REQUEST_FIELDS:
                raise where.fail(f"requests[{j}].{key}", f"unknown request field {key!r} "
                                 f"(fields: {sorted(REQUEST_FIELDS)})")
            if key == "context" and not (isinstance(v, dict) and all(_is_context_value(c) for c in v.values())):
                raise where.fail(f"requests[{j}].context", "a JSON object of strings, finite numbers, true / false "
                                 "or null")
            if key != "context" and not isinstance(v, str):
                raise where.fail(f"requests[{j}].{key}", "a string")
        if "dataset" in r:
            _dataset(r["dataset"], p, where, labels, field=f"requests[{j}].dataset")
        out.append(RequestSpec(**{k: (dict(v) if k == "context" else v) for k, v in r.items()}))
    return tuple(out)


def _is_context_value(value: Any) -> bool:
    # Rules and experiments compare context values for equality, so only scalars that equal
    # themselves (no NaN) and survive a JSON round trip are meaningful.
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (str, int, bool))


CHECKERS: dict[ValueType, Checker] = {
    ValueType.TEXT: _text, ValueType.NAME: _name, ValueType.BOOL: _bool, ValueType.INT: _int,
    ValueType.DURATION: _duration, ValueType.CHOICE: _choice, ValueType.PACKAGE: _package,
    ValueType.DATASET: _dataset, ValueType.ADAPTERS: _adapters, ValueType.ADAPTERS_LIST: _adapters_list,
    ValueType.REQUESTS: _requests,
}
assert set(CHECKERS) == set(ValueType), "every value type needs a checker"


def check_value(value: Any, p: Param, where: Where, labels: Labels) -> Any:
    return CHECKERS[p.type](value, p, where, labels)


def to_json_value(value: Any) -> Any:
    """A typed field value back in its JSON form (the inverse of the checkers)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, RequestSpec):
        return value.to_json()
    if isinstance(value, tuple):
        return [to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json_value(v) for v in value]
    return value


__all__ = ["BASE", "Labels", "MAX_BATCH", "MAX_INDEX", "MAX_ROWS", "MAX_SECONDS", "Param", "REQUEST_FIELDS",
           "RequestSpec", "ValueType", "Where", "check_value", "is_adapter_spec", "param", "params_of",
           "parse_duration", "to_json_value"]
