"""The step-kind registry: one registration per kind carries its name, fields, checks and
handler.

A step kind is a frozen dataclass whose fields are the step's JSON fields (declared with
`fields.param`), decorated with `@step_kind(...)`:

    @step_kind("confirm", example={"kind": "confirm", "note": "the health check passed"})
    @dataclass(frozen=True, kw_only=True)
    class Confirm(StepParams):
        '''Make the trial state permanent.'''

        def run(self, run: Run, step: Step) -> dict[str, Any]:
            return {"confirmed": run.device.confirm()}

From that one place the registry validates steps (unknown, missing, mistyped and out-of-range
fields, then the kind's own `check` for rules that span fields or steps), turns them into typed
`Step` records, serialises them back to JSON, runs them (`run`), describes their result in the
progress line (`describe`), and documents them (docs/scenario-format.md is generated from it).
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, TypeVar

from tinyswap.firmware_sim.scenario.errors import ScenarioFormatError, StepKindRegistryError
from tinyswap.firmware_sim.scenario.fields import (
    Labels,
    Param,
    ValueType,
    Where,
    check_value,
    params_of,
    to_json_value,
)

if TYPE_CHECKING:
    from tinyswap.firmware_sim.scenario.report import StepRecord
    from tinyswap.firmware_sim.scenario.runner import Run

# Fields every step may carry besides its kind's own (JSON has no comments, hence `note`).
COMMON: tuple[Param, ...] = (
    Param("at", ValueType.DURATION, False,
          doc="the simulated time at which the step starts; the device idles until then (never goes back)"),
    Param("note", ValueType.TEXT, False, doc="free text, copied into the report"),
    Param("expect_error", ValueType.NAME, False,
          doc="the name of an error class the step must raise, or of one of its bases (e.g. \"UnknownKeyError\" "
              "or \"PackageError\"); the run goes on"),
)


@dataclass(frozen=True, kw_only=True)
class StepParams:
    """Base of the step kinds' field records. Subclasses add `param` fields and a `run`."""

    def check(self, where: Where, context: StepContext) -> None:
        """Rules across fields or steps, after every field passed its own check."""

    def run(self, run: Run, step: Step) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self, record: StepRecord) -> str:
        """What happened, for the step's progress line (`record.result` is what `run` returned)."""
        return ""


P = TypeVar("P", bound=type[StepParams])


@dataclass(frozen=True)
class StepContext:
    """What a step's checks may look at besides the step itself."""

    labels: Labels
    steps: Sequence[Any]  # the raw JSON steps, for rules about the next step
    index: int

    def next_kind(self) -> str | None:
        """The kind of the following step (None at the end, or when it is not an object)."""
        if self.index + 1 >= len(self.steps) or not isinstance(self.steps[self.index + 1], dict):
            return None
        kind = self.steps[self.index + 1].get("kind")
        return kind if isinstance(kind, str) else None


@dataclass(frozen=True)
class StepKind:
    """A registered step kind."""

    name: str
    summary: str
    params: type[StepParams]
    fields: tuple[Param, ...]
    target: tuple[str, ...]  # fields naming what the step acts on, for the report and the plot labels
    example: Mapping[str, Any]
    flash_work: bool = True  # may write flash, so an armed power cut can land in it

    def field_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.fields)


@dataclass(frozen=True)
class Step:
    """One validated step: its place, kind, common fields, and the kind's typed fields."""

    index: int
    kind: str
    params: StepParams
    at: float | None = None
    note: str | None = None
    expect_error: str | None = None

    @property
    def spec(self) -> StepKind:
        return STEP_KINDS[self.kind]

    def target(self) -> Any:
        for name in self.spec.target:
            value = getattr(self.params, name)
            if value:
                return to_json_value(value)
        return None

    def to_json(self) -> dict[str, Any]:
        """The step as JSON that validates back into an equal step."""
        out: dict[str, Any] = {"kind": self.kind}
        for p in COMMON:
            value = getattr(self, p.name)
            if value is not None:
                out[p.name] = value
        for p in self.spec.fields:
            value = getattr(self.params, p.name)
            if p.required or value != p.default:
                out[p.name] = to_json_value(value)
        return out


class Registry:
    """Step kinds by name; registering a name twice is refused."""

    def __init__(self) -> None:
        self._kinds: dict[str, StepKind] = {}

    def add(self, kind: StepKind) -> StepKind:
        if kind.name in self._kinds:
            raise StepKindRegistryError(f"step kind {kind.name!r} is registered twice "
                                        f"({self._kinds[kind.name].params.__name__} and {kind.params.__name__})")
        clash = {p.name for p in COMMON} & set(kind.field_names()) | ({"kind"} & set(kind.field_names()))
        if clash:
            raise StepKindRegistryError(f"step kind {kind.name!r}: fields {sorted(clash)} are common to every step")
        self._kinds[kind.name] = kind
        return kind

    def __getitem__(self, name: str) -> StepKind:
        return self._kinds[name]

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __iter__(self) -> Iterator[StepKind]:
        return iter(self._kinds.values())

    def names(self) -> list[str]:
        return sorted(self._kinds)

    def parse(self, raw: Any, index: int, context: StepContext) -> Step:
        """Validate one JSON step completely and return it typed."""
        if not isinstance(raw, dict):
            raise ScenarioFormatError(f"step {index}: a step is a JSON object, got {type(raw).__name__}", step=index)
        name = raw.get("kind")
        if name is None:
            raise ScenarioFormatError(f"step {index}: field 'kind' is missing (one of {self.names()})",
                                      step=index, field="kind")
        if not isinstance(name, str) or name not in self._kinds:
            raise ScenarioFormatError(f"step {index}: field 'kind': unknown step kind {name!r} "
                                      f"(known: {self.names()})", step=index, field="kind")
        kind = self._kinds[name]
        where = Where(index, name)
        allowed = {"kind"} | {p.name for p in COMMON} | set(kind.field_names())
        for key in raw:
            if key not in allowed:
                raise where.fail(key, f"not a field of a {name!r} step (fields: {sorted(allowed)})")
        for p in kind.fields:
            if p.required and p.name not in raw:
                raise where.fail(p.name, "is missing")
        common = {p.name: check_value(raw[p.name], p, where, context.labels) for p in COMMON if p.name in raw}
        values = {p.name: check_value(raw[p.name], p, where, context.labels) for p in kind.fields if p.name in raw}
        params = kind.params(**values)
        params.check(where, context)
        return Step(index, name, params, **common)


STEP_KINDS = Registry()


def step_kind(name: str, *, example: Mapping[str, Any], target: tuple[str, ...] = (),
              flash_work: bool = True, registry: Registry | None = None) -> Callable[[P], P]:
    """Register the decorated `StepParams` dataclass as the step kind `name`.

    example: a JSON step of this kind, shown in the user document (a test validates it).
    target: fields naming what the step acts on (first non-empty wins).
    flash_work: False for kinds that never touch flash (an armed power cut cannot land there).
    registry: where to register (default: the runner's).
    """
    def register(cls: P) -> P:
        if not (dataclasses.is_dataclass(cls) and issubclass(cls, StepParams)):
            raise StepKindRegistryError(f"step kind {name!r}: {cls.__name__} is not a StepParams dataclass")
        if cls.run is StepParams.run:
            raise StepKindRegistryError(f"step kind {name!r}: {cls.__name__} has no `run` handler")
        if example.get("kind") != name:
            raise StepKindRegistryError(f"step kind {name!r}: its example has kind {example.get('kind')!r}")
        fields = params_of(cls)
        unknown = set(target) - {p.name for p in fields}
        if unknown:
            raise StepKindRegistryError(f"step kind {name!r}: target names unknown fields {sorted(unknown)}")
        (STEP_KINDS if registry is None else registry).add(
            StepKind(name, inspect.getdoc(cls) or "", cls, fields, target, dict(example), flash_work))
        return cls
    return register


def step_kinds() -> Registry:
    """The runner's registry with every built-in kind registered (their modules register on import)."""
    from tinyswap.firmware_sim.scenario import infer, kinds, stream, train  # noqa: F401  (import registers)

    return STEP_KINDS


__all__ = ["COMMON", "Registry", "STEP_KINDS", "Step", "StepContext", "StepKind", "StepParams", "step_kind",
           "step_kinds"]
