"""Validation of a whole scenario (top level, router, datasets, then every step through the
registry), complete before anything is read from disk or run on the device."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from tinyswap.firmware_sim.scenario.errors import ScenarioFormatError
from tinyswap.firmware_sim.scenario.fields import Labels, Where
from tinyswap.firmware_sim.scenario.registry import Step, StepContext, step_kinds

FORMAT = "tinyswap-scenario"
VERSION = 1
TOP_LEVEL = ("format", "version", "name", "description", "note", "profile", "bundle", "keyring", "packages",
             "datasets", "router", "device", "build", "steps")
DEVICE_OPTIONS = ("store_bytes", "worst", "report_log", "stream_state", "stream_ram_bytes")
# Report log entries (firmware_sim/report_log.py); 0: no log. Off by default: the log writes to
# the store after every operation, which moves the flash operation numbers power cuts name.
MAX_REPORT_LOG = 1024
DEFAULT_STORE_BYTES = 256 * 1024
# The simulator keeps every flash partition in RAM: a store larger than this is a typo (10**15),
# refused before a byte is allocated. Real adapter stores are a few MiB of QSPI NOR or an SD card
# partition far smaller than this.
MAX_STORE_BYTES = 256 * 1024 * 1024
# Stream state is RAM (firmware_sim/device_streams.py): the budget is checked against the
# profile's free RAM when the first stream opens; this bound only refuses a typo before that.
DEFAULT_STREAM_RAM_BYTES = 8 * 1024
MAX_STREAM_RAM_BYTES = 1024 * 1024 * 1024
MAX_PORT = 255  # a graph input or output position
DATASET_KEYS = ("path", "x", "y", "scale")

_TOP = Where()


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset file: an `.npz`, the array holding the inputs, the one holding labels (None:
    unlabelled), and the factor applied to float inputs before quantization."""

    path: str
    x: str = "x"
    y: str | None = "y"
    scale: float = 1.0


@dataclass(frozen=True)
class RuleSpec:
    """A routing rule: requests whose fields equal `match` go to `adapter`."""

    match: dict[str, Any]
    adapter: str


@dataclass(frozen=True)
class ExperimentSpec:
    """An A/B split of the requests matching `match` between `arms` (adapter: percent)."""

    name: str
    arms: dict[str, Any]
    key: str = "user"
    match: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceOptions:
    store_bytes: int = DEFAULT_STORE_BYTES
    worst: bool = False
    report_log: int = 0
    stream_state: tuple[int, int] = (0, 0)  # (data input, output) carrying a stream's state
    stream_ram_bytes: int = DEFAULT_STREAM_RAM_BYTES


@dataclass(frozen=True)
class Scenario:
    """A validated scenario: everything the runner reads, typed."""

    steps: tuple[Step, ...]
    name: str | None = None
    description: str | None = None
    profile: str | None = None
    bundle: str | None = None
    keyring: tuple[str, ...] = ()
    packages: dict[str, str] = field(default_factory=dict)
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    rules: tuple[RuleSpec, ...] = ()
    experiments: tuple[ExperimentSpec, ...] = ()
    device: DeviceOptions = DeviceOptions()


def validate_scenario(scenario: Mapping[str, Any], *, packages: Mapping[str, Any] = (),
                      datasets: Mapping[str, Any] = ()) -> list[Step]:
    """Check the whole scenario before anything runs; returns the typed steps.

    `packages` / `datasets`: labels supplied in memory besides the scenario's own.
    """
    return list(parse_scenario(scenario, packages=packages, datasets=datasets).steps)


def parse_scenario(scenario: Mapping[str, Any], *, packages: Mapping[str, Any] = (),
                   datasets: Mapping[str, Any] = ()) -> Scenario:
    """Check the whole scenario and return it typed (`validate_scenario` returns its steps)."""
    if not isinstance(scenario, Mapping):
        raise ScenarioFormatError("a scenario is a JSON object")
    unknown = sorted(set(scenario) - set(TOP_LEVEL))
    if unknown:
        raise ScenarioFormatError(f"scenario: unknown field {unknown[0]!r} (known: {sorted(TOP_LEVEL)})",
                                  field=unknown[0])
    if scenario.get("format", FORMAT) != FORMAT or scenario.get("version", VERSION) != VERSION:
        raise ScenarioFormatError(f"scenario: format {scenario.get('format')!r} version {scenario.get('version')!r}; "
                                  f"this runner reads {FORMAT!r} version {VERSION}", field="format")
    for key in ("packages", "datasets", "router", "device", "build"):
        if key in scenario and not isinstance(scenario[key], dict):
            raise _TOP.fail(key, "must be a JSON object")
    for key in ("name", "description", "note", "profile", "bundle"):
        if key in scenario and not isinstance(scenario[key], str):
            raise _TOP.fail(key, "must be a string")
    keyring = scenario.get("keyring", [])
    if not (isinstance(keyring, str) or (isinstance(keyring, list) and all(isinstance(k, str) for k in keyring))):
        raise _TOP.fail("keyring", "a PEM path or a list of them")
    device = _validate_device(scenario.get("device", {}))
    rules, experiments = _validate_router(scenario.get("router", {}))
    dataset_specs = {label: dataset_spec(spec, f"datasets[{label!r}]")
                     for label, spec in scenario.get("datasets", {}).items()}
    for label, path in scenario.get("packages", {}).items():
        if not isinstance(path, str):
            raise _TOP.fail(f"packages[{label!r}]", "a package path")
    build = scenario.get("build", {})
    build_labels = build.get("adapters", {}) if isinstance(build.get("adapters", {}), dict) else {}
    labels = Labels(packages=frozenset(scenario.get("packages", {})) | frozenset(packages or ())
                    | frozenset(build_labels),
                    datasets=frozenset(dataset_specs) | frozenset(datasets or ()))

    raw_steps = scenario.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise _TOP.fail("steps", "a non-empty list of steps is required")
    registry = step_kinds()
    steps = tuple(registry.parse(raw, i, StepContext(labels, raw_steps, i)) for i, raw in enumerate(raw_steps))
    return Scenario(steps, name=scenario.get("name"), description=scenario.get("description"),
                    profile=scenario.get("profile"), bundle=scenario.get("bundle"),
                    keyring=(keyring,) if isinstance(keyring, str) else tuple(keyring),
                    packages=dict(scenario.get("packages", {})), datasets=dataset_specs, rules=rules,
                    experiments=experiments, device=device)


def _validate_device(device: Mapping[str, Any]) -> DeviceOptions:
    for key, value in device.items():
        if key == "store_bytes" and not (isinstance(value, int) and not isinstance(value, bool)
                                         and 0 < value <= MAX_STORE_BYTES):
            raise _TOP.fail("device.store_bytes", f"a positive integer of at most {MAX_STORE_BYTES:,} bytes, got {value!r}")
        if key == "worst" and not isinstance(value, bool):
            raise _TOP.fail("device.worst", "true or false")
        if key == "report_log" and not (isinstance(value, int) and not isinstance(value, bool)
                                        and 0 <= value <= MAX_REPORT_LOG):
            raise _TOP.fail("device.report_log", f"an entry count from 0 (no log) to {MAX_REPORT_LOG}, got {value!r}")
        if key == "stream_state" and not (isinstance(value, list) and len(value) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_PORT for v in value)):
            raise _TOP.fail("device.stream_state", f"[data input, output]: the positions (0 to {MAX_PORT}, gates not "
                                                   f"counted) of the tensor pair carrying a stream's state, got {value!r}")
        if key == "stream_ram_bytes" and not (isinstance(value, int) and not isinstance(value, bool)
                                              and 0 < value <= MAX_STREAM_RAM_BYTES):
            raise _TOP.fail("device.stream_ram_bytes", f"a positive integer of at most {MAX_STREAM_RAM_BYTES:,} bytes, "
                                                       f"got {value!r}")
        if key not in DEVICE_OPTIONS:
            raise _TOP.fail(f"device.{key}", f"unknown (known: {', '.join(DEVICE_OPTIONS)})")
    options = dict(device)
    if "stream_state" in options:
        options["stream_state"] = tuple(options["stream_state"])
    return DeviceOptions(**options)


def _validate_router(router: Mapping[str, Any]) -> tuple[tuple[RuleSpec, ...], tuple[ExperimentSpec, ...]]:
    for key in router:
        if key not in ("rules", "experiments"):
            raise _TOP.fail(f"router.{key}", "unknown (known: rules, experiments)")
    rules = router.get("rules", [])
    if not isinstance(rules, list):
        raise _TOP.fail("router.rules", "a list")
    for j, rule in enumerate(rules):
        if not (isinstance(rule, dict) and set(rule) <= {"match", "adapter"} and isinstance(rule.get("adapter"), str)
                and isinstance(rule.get("match", {}), dict)):
            raise _TOP.fail(f"router.rules[{j}]", "{match: {field: value}, adapter: name}")
    exps = router.get("experiments", [])
    if not isinstance(exps, list):
        raise _TOP.fail("router.experiments", "a list")
    for j, e in enumerate(exps):
        ok = (isinstance(e, dict) and set(e) <= {"name", "arms", "key", "match"} and isinstance(e.get("name"), str)
              and isinstance(e.get("arms"), dict) and isinstance(e.get("key", "user"), str)
              and isinstance(e.get("match", {}), dict))
        if not ok:
            raise _TOP.fail(f"router.experiments[{j}]", "{name, arms: {adapter: percent}, key, match}")
    return (tuple(RuleSpec(dict(r.get("match", {})), r["adapter"]) for r in rules),
            tuple(ExperimentSpec(e["name"], dict(e["arms"]), e.get("key", "user"), dict(e.get("match", {})))
                  for e in exps))


def dataset_spec(spec: Any, where: str) -> DatasetSpec:
    """A dataset entry of the scenario: a path, or {path, x, y, scale}."""
    if isinstance(spec, str):
        return DatasetSpec(spec)
    if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
        raise ScenarioFormatError(f"scenario: field {where}: a path or {{path, x, y, scale}}", field=where)
    unknown = sorted(set(spec) - set(DATASET_KEYS))
    if unknown:
        raise ScenarioFormatError(f"scenario: field {where}.{unknown[0]}: unknown (known: {', '.join(DATASET_KEYS)})",
                                  field=f"{where}.{unknown[0]}")
    out = DatasetSpec(spec["path"], spec.get("x", "x"), spec.get("y", "y"), spec.get("scale", 1.0))
    if not isinstance(out.x, str) or not (out.y is None or isinstance(out.y, str)) \
            or isinstance(out.scale, bool) or not isinstance(out.scale, (int, float)):
        raise ScenarioFormatError(f"scenario: field {where}: x and y are array keys, scale a number", field=where)
    if not (math.isfinite(out.scale) and out.scale > 0):  # NaN would quantize every row to zero, silently
        raise ScenarioFormatError(f"scenario: field {where}.scale: a finite number above 0, got {out.scale!r}",
                                  field=f"{where}.scale")
    return out


__all__ = ["DatasetSpec", "DeviceOptions", "ExperimentSpec", "FORMAT", "RuleSpec", "Scenario", "TOP_LEVEL", "VERSION",
           "dataset_spec", "parse_scenario", "validate_scenario"]
