"""Scenarios: a day in the life of a simulated device, from a JSON file, with a report, a trace
and plots. `tinyswap sim SCENARIO --profile NAME --out DIR` runs one; `run_scenario` is the
same runner for other code (the demo passes packages and datasets in memory).

Scenario format (JSON object; `format`/`version`, when present, must be
"tinyswap-scenario" / 1). Relative paths resolve against the scenario file's folder. Unknown
keys are refused everywhere (`ScenarioFormatError` names the step index and the field).

Top level keys:

- `name`, `description`, `note`: free text (`note` is allowed on every step too: JSON has no
  comments).
- `profile`: the default device profile (`mcu-qspi`, `mcu-ram`, `gateway`); `--profile`
  overrides it.
- `bundle`: a bundle directory holding `model.tflite` and `slotmap.json` (`tinyswap export`).
- `keyring`: a public-key PEM file or a list of them: the keys whose packages the device accepts.
- `packages`: {label: path of a signed `.tsap` package} (`tinyswap pack`); steps name packages
  by label.
- `datasets`: {label: dataset}, see below.
- `router`: {`rules`: [{`match`: {field: value}, `adapter`: name}], `experiments`: [{`name`,
  `arms`: {adapter or "__base__": percent}, `key` (default "user"), `match`}]}. Rules and
  experiments are configuration: they survive reboots, and the arms' counts cover the whole run.
  A rule with an empty `match` catches every request (a default).
- `device`: {`store_bytes`: the adapter store's size, `worst`: charge datasheet maximum timings}.
- `build`: resolved by the `tinyswap sim` command only (it needs the compiler, which
  `firmware_sim` never imports): {`spec`, `plan`, `calibration` (default `<spec>.calibration.npy`),
  `adapters`: {label: adapter directory, or {`dir`, `name`, `version`, `sequence`,
  `untrusted`}}}. The command compiles the bundle and packs every adapter with a throwaway
  Ed25519 key into `OUT/build/` (`untrusted`: signed by a second key the device does not
  trust), then runs the scenario as if `bundle`, `keyring` and `packages` named those files;
  `packages` and `keyring` may add more. Without `build`, make the files yourself:
  `tinyswap export SPEC --plan PLAN -o DIR`, `tinyswap keygen -o KEYS`, and
  `tinyswap pack ADAPTER_DIR --bundle DIR --key KEYS/signing_key.pem -o LABEL.tsap`.
- `steps`: the list of steps, run in order.

A dataset is a path to an `.npz` with `x` (inputs, batch first) and optionally `y` (integer
labels, or one-hot rows), or an object {`path`, `x`: array key, `y`: label key or null,
`scale`}. Float (or unsigned) inputs are multiplied by `scale` (default 1), reshaped to the
model's input shape when the element count per row matches, and quantized with the model
input's scale and zero point (round half to even, clipped to int8), as
`models/digits/evaluate.py` does; int8 inputs are used as they are. The digits test file has
one uint8 array of 0..16 pixels per domain plus `labels`, so a domain reads
`{"path": "../digits_test.npz", "x": "invert", "y": "labels", "scale": 0.0625}`.
`run_scenario(datasets=...)` also takes {label: `Dataset` | (x, y) | {"x": ..., "y": ...}}.

Steps. Every step has `kind`, and optionally `at` (the simulated time at which it starts; the
device idles until then), `note`, and `expect_error` (the name of an error class the step must
raise, or of one of its bases, e.g. "UnknownKeyError" or "PackageError"; the run goes on).
Times are seconds, or strings "250ms", "5s", "10min", "6h", "HH:MM", "HH:MM:SS(.fff)".
`permanent` (default false) skips the trial: without it a change runs on trial and the next
boot reverts it unless a `confirm` step came first.

- `install` {`package`}: OTA arrival: verify everything, then store (`Device.install`).
- `update` {`package`, `permanent`}: install and bring live: a new name is loaded into a slot
  (or, with every slot taken, written on first use), a known name is hot-swapped to the new
  version (`Device.update`).
- `swap` {`package`, `permanent`}: bring an installed package live (`Device.swap`).
- `activate` {`adapters`, `permanent`}: the default active set: a name, [names] or {name: weight}.
- `infer` {`dataset`, `rows`, `start`, `batch`, `adapters` | `per_row` | `requests`, `tenant`}:
  run `rows` rows (default: the whole dataset) in invokes of `batch` rows (default 64), from row
  `start` (default: where the previous step on that dataset stopped; wraps around), through
  `adapters` (one spec for every row), `per_row` (specs cycled over the rows), `requests`
  (router requests cycled over the rows: `user`, `tenant`, `task`, `session`, `context`, and
  `dataset` to draw that request's rows from another dataset; "{row}" in a string is replaced
  by the row number, so "user-{row}" makes distinct users; rows are batched per tenant), or
  the active set. `tenant` is the requesting tenant of `adapters` / `per_row` / active-set rows.
  With labels, accuracy is recorded per adapter version and dataset, and each routed row's
  correctness (1 or 0) is recorded as the outcome of its experiment arm.
- `power_cut` {`when`, `op`, `keep`}: `when` "now" (default): power is lost between
  operations. "before" / "after" / "torn": power is lost before, after, or in the middle of
  the `op`-th mutating flash operation (program or erase, all flash parts of the device,
  counted from 1) of the NEXT step; torn: only `keep` bytes of it land (default: a point inside
  its middle write unit). Operation counts depend on the profile: each step's `mutating_ops`
  in the report tells where to aim. If the next step makes fewer, nothing happens and the
  report says so.
- `reboot` {}: power on (a power cycle when running) and boot; the `BootReport` is recorded.
- `confirm` {}: make the trial state permanent.
- `rollback` {`name`, `permanent`}: back to the version accepted before (a gate flip when it
  is still in a slot).
- `delete` {`name`, `permanent`}: remove an adapter; its slots are cleared.
- `prefetch` {`name`}: stage the adapter's package in the RAM cache.
- `wait` {`seconds`}: advance the simulated clock (idle).

A step whose power was cut is recorded as "power lost"; every later step needs power, so a
`reboot` normally follows. Any other error that is not the step's `expect_error`, or an
`expect_error` that did not happen, stops the run: the outputs are still written, then
`ScenarioStepFailed` is raised (its `report` holds them).

Outputs in `out_dir`: `report.json` (below), `trace.json` (Chrome / Perfetto trace of the
device timeline: ui.perfetto.dev or chrome://tracing), `timeline.png` (simulated time; one row
per kind of event; long idle periods are drawn compressed and labelled), `flash_ops.png`
(erases, programs and reads per step and cumulative). `report.json`: `scenario`, `profile`,
`steps` (per step: index, kind, outcome ok / expected error / power lost / error, error,
simulated `start_s` / `duration_s`, time by category, flash ops and bytes per part, mutating
ops, what happened in `result`, the active adapters after it), `accuracy` (per adapter version
and dataset), `experiments` (per-arm requests, outcomes, mean = accuracy), `boots` (every
boot report, the initial one included), `power_cuts`, `final` (device status, active adapters,
slot table), `budget` (RAM: arena bytes vs budget, package cache budget and use, model copy;
flash: each part and the model / slot / store / metadata partitions, sizes and use, erases of
base-model sectors during the run), `time` (simulated, idle, by category; wall seconds).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from tinyswap.firmware_sim.device import BootReport, Device
from tinyswap.firmware_sim.errors import DeviceStateError, PowerLoss
from tinyswap.firmware_sim.flash import CutPoint, FlashCounters, PowerCut
from tinyswap.firmware_sim.metadata import encode_record
from tinyswap.firmware_sim.model_image import FlashModelImage
from tinyswap.firmware_sim.profiles import DEVICES
from tinyswap.errors import TinySwapError
from tinyswap.package import Keyring, parse_package
from tinyswap.router import Experiment, Request, RouterError

FORMAT = "tinyswap-scenario"
VERSION = 1
REPORT_FORMAT = "tinyswap-sim-report"
BASE = "__base__"


# ==================================================================== errors

class ScenarioError(TinySwapError):
    """Base class of the scenario runner's errors. `step` is the step index (0-based) or None
    for the scenario's top level; `field` the offending key."""

    def __init__(self, message: str, *, step: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.field = field


class ScenarioFormatError(ScenarioError, ValueError):
    """The scenario is malformed: unknown step kind or key, a missing or mistyped field, an
    unknown package or dataset label."""


class ScenarioFileError(ScenarioError):
    """A file the scenario names is missing or unreadable (bundle, key, package, dataset)."""


class ScenarioStepFailed(ScenarioError):
    """A step raised an error it did not expect, or did not raise the one it expected.
    The outputs were written; `report` is the report up to and including that step."""

    def __init__(self, message: str, *, step: int, report: dict[str, Any]) -> None:
        super().__init__(message, step=step)
        self.report = report


# ==================================================================== format

@dataclass
class Dataset:
    """Inputs (float or int8, batch first) and optional integer labels."""

    x: np.ndarray
    y: np.ndarray | None = None
    scale: float = 1.0


STEP_COMMON = {"kind", "at", "note", "expect_error"}
# kind -> (required fields, optional fields)
STEP_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "install": ({"package"}, set()),
    "update": ({"package"}, {"permanent"}),
    "swap": ({"package"}, {"permanent"}),
    "activate": ({"adapters"}, {"permanent"}),
    "infer": (set(), {"dataset", "rows", "start", "batch", "adapters", "per_row", "requests", "tenant"}),
    "power_cut": (set(), {"when", "op", "keep"}),
    "reboot": (set(), set()),
    "confirm": (set(), set()),
    "rollback": ({"name"}, {"permanent"}),
    "delete": ({"name"}, {"permanent"}),
    "prefetch": ({"name"}, set()),
    "wait": ({"seconds"}, set()),
}
TOP_LEVEL = {"format", "version", "name", "description", "note", "profile", "bundle", "keyring", "packages",
             "datasets", "router", "device", "build", "steps"}
REQUEST_FIELDS = {"user", "tenant", "task", "session", "context", "dataset"}
CUT_WHEN = ("now", "before", "after", "torn")

_UNITS = {"ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}


def parse_duration(value: Any, where: str, *, step: int | None = None) -> float:
    """Seconds from a number or "250ms" / "5s" / "10min" / "6h" / "HH:MM" / "HH:MM:SS(.fff)"."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, (int, float)) and value >= 0:
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|min|h)", text)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
        m = re.fullmatch(r"(\d+):([0-5]\d)(?::([0-5]\d(?:\.\d+)?))?", text)
        if m:
            return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3) or 0)
    raise ScenarioFormatError(f"{where}: {value!r} is not a time (seconds >= 0, or '250ms', '5s', '10min', "
                              f"'6h', 'HH:MM', 'HH:MM:SS')", step=step, field=where.rsplit(" ", 1)[-1])


def _where(index: int | None, kind: str | None = None) -> str:
    if index is None:
        return "scenario"
    return f"step {index}" + (f" ({kind})" if kind else "")


def _fail(message: str, index: int | None, kind: str | None, name: str) -> ScenarioFormatError:
    return ScenarioFormatError(f"{_where(index, kind)}: field {name!r}: {message}", step=index, field=name)


def _is_spec(value: Any) -> bool:
    """An adapter spec: a name, a list of names, or {name: weight}."""
    if isinstance(value, str):
        return bool(value)
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, str) and v for v in value)
    if isinstance(value, dict):
        return bool(value) and all(isinstance(k, str) and isinstance(w, (int, float)) and not isinstance(w, bool)
                                   for k, w in value.items())
    return False


@dataclass
class Step:
    index: int
    kind: str
    raw: dict[str, Any]
    at: float | None = None

    def get(self, name: str, default: Any = None) -> Any:
        return self.raw.get(name, default)


def validate_scenario(scenario: Mapping[str, Any], *, packages: Mapping[str, Any] = (),
                      datasets: Mapping[str, Any] = ()) -> list[Step]:
    """Check the whole scenario before anything runs; returns the parsed steps.

    `packages` / `datasets`: labels supplied in memory besides the scenario's own.
    """
    if not isinstance(scenario, Mapping):
        raise ScenarioFormatError("a scenario is a JSON object")
    unknown = sorted(set(scenario) - TOP_LEVEL)
    if unknown:
        raise ScenarioFormatError(f"scenario: unknown field {unknown[0]!r} (known: {sorted(TOP_LEVEL)})",
                                  field=unknown[0])
    if scenario.get("format", FORMAT) != FORMAT or scenario.get("version", VERSION) != VERSION:
        raise ScenarioFormatError(f"scenario: format {scenario.get('format')!r} version {scenario.get('version')!r}; "
                                  f"this runner reads {FORMAT!r} version {VERSION}", field="format")
    for key in ("packages", "datasets", "router", "device", "build"):
        if key in scenario and not isinstance(scenario[key], dict):
            raise _fail("must be a JSON object", None, None, key)
    for key in ("name", "description", "note", "profile", "bundle"):
        if key in scenario and not isinstance(scenario[key], str):
            raise _fail("must be a string", None, None, key)
    keyring = scenario.get("keyring", [])
    if not (isinstance(keyring, str) or (isinstance(keyring, list) and all(isinstance(k, str) for k in keyring))):
        raise _fail("a PEM path or a list of them", None, None, "keyring")
    device = scenario.get("device", {})
    for key, value in device.items():
        if key == "store_bytes" and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise _fail("a positive integer", None, None, "device.store_bytes")
        if key == "worst" and not isinstance(value, bool):
            raise _fail("true or false", None, None, "device.worst")
        if key not in ("store_bytes", "worst"):
            raise _fail("unknown (known: store_bytes, worst)", None, None, f"device.{key}")
    _validate_router(scenario.get("router", {}))
    for label, spec in scenario.get("datasets", {}).items():
        _dataset_spec(spec, f"datasets[{label!r}]")
    pkg_labels = set(scenario.get("packages", {})) | set(packages or ()) \
        | set(scenario.get("build", {}).get("adapters", {}))
    ds_labels = set(scenario.get("datasets", {})) | set(datasets or ())
    for label, path in scenario.get("packages", {}).items():
        if not isinstance(path, str):
            raise _fail("a package path", None, None, f"packages[{label!r}]")

    raw_steps = scenario.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise _fail("a non-empty list of steps is required", None, None, "steps")
    steps = []
    for i, raw in enumerate(raw_steps):
        if not isinstance(raw, dict):
            raise ScenarioFormatError(f"step {i}: a step is a JSON object, got {type(raw).__name__}", step=i)
        kind = raw.get("kind")
        if kind is None:
            raise ScenarioFormatError(f"step {i}: field 'kind' is missing (one of {sorted(STEP_FIELDS)})",
                                      step=i, field="kind")
        if kind not in STEP_FIELDS:
            raise ScenarioFormatError(f"step {i}: field 'kind': unknown step kind {kind!r} "
                                      f"(known: {sorted(STEP_FIELDS)})", step=i, field="kind")
        required, optional = STEP_FIELDS[kind]
        for name in raw:
            if name not in STEP_COMMON | required | optional:
                raise _fail(f"not a field of a {kind!r} step (fields: {sorted(required | optional | STEP_COMMON)})",
                            i, kind, name)
        for name in sorted(required):
            if name not in raw:
                raise _fail("is missing", i, kind, name)
        step = Step(i, kind, raw)
        if "at" in raw:
            step.at = parse_duration(raw["at"], f"{_where(i, kind)}: field at", step=i)
        if "expect_error" in raw and not (isinstance(raw["expect_error"], str) and raw["expect_error"]):
            raise _fail("the name of an error class", i, kind, "expect_error")
        if "note" in raw and not isinstance(raw["note"], str):
            raise _fail("must be a string", i, kind, "note")
        if "permanent" in raw and not isinstance(raw["permanent"], bool):
            raise _fail("true or false", i, kind, "permanent")
        if "package" in raw:
            if not isinstance(raw["package"], str):
                raise _fail("a package label", i, kind, "package")
            if raw["package"] not in pkg_labels:
                raise _fail(f"no package labelled {raw['package']!r} (packages: {sorted(pkg_labels)})", i, kind,
                            "package")
        if "name" in raw and not (isinstance(raw["name"], str) and raw["name"]):
            raise _fail("an adapter name", i, kind, "name")
        if kind == "activate" and not _is_spec(raw["adapters"]):
            raise _fail("an adapter name, a list of names or {name: weight}", i, kind, "adapters")
        if kind == "wait":
            parse_duration(raw["seconds"], f"{_where(i, kind)}: field seconds", step=i)
        if kind == "infer":
            _validate_infer(raw, i, ds_labels)
        if kind == "power_cut":
            _validate_cut(raw, i, raw_steps)
        steps.append(step)
    return steps


def _positive_int(raw: Mapping[str, Any], name: str, i: int, kind: str, minimum: int = 1) -> None:
    value = raw.get(name)
    if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
        raise _fail(f"an integer >= {minimum}", i, kind, name)


def _validate_infer(raw: Mapping[str, Any], i: int, ds_labels: set[str]) -> None:
    kind = "infer"
    modes = [m for m in ("adapters", "per_row", "requests") if m in raw]
    if len(modes) > 1:
        raise _fail(f"give at most one of adapters, per_row, requests (got {modes})", i, kind, modes[1])
    for name in ("rows", "batch"):
        _positive_int(raw, name, i, kind)
    _positive_int(raw, "start", i, kind, 0)
    if "tenant" in raw and not isinstance(raw["tenant"], str):
        raise _fail("a tenant name", i, kind, "tenant")
    if "adapters" in raw and not _is_spec(raw["adapters"]):
        raise _fail("an adapter name, a list of names or {name: weight}", i, kind, "adapters")
    if "per_row" in raw:
        if not (isinstance(raw["per_row"], list) and raw["per_row"] and all(_is_spec(s) for s in raw["per_row"])):
            raise _fail("a non-empty list of adapter specs (cycled over the rows)", i, kind, "per_row")
    used = []
    if "requests" in raw:
        reqs = raw["requests"]
        if not (isinstance(reqs, list) and reqs and all(isinstance(r, dict) for r in reqs)):
            raise _fail("a non-empty list of request objects", i, kind, "requests")
        if "tenant" in raw:
            raise _fail("routed requests carry their own tenant", i, kind, "tenant")
        for j, r in enumerate(reqs):
            for key, value in r.items():
                if key not in REQUEST_FIELDS:
                    raise _fail(f"unknown request field {key!r} (fields: {sorted(REQUEST_FIELDS)})", i, kind,
                                f"requests[{j}].{key}")
                if key == "context" and not isinstance(value, dict):
                    raise _fail("a JSON object", i, kind, f"requests[{j}].context")
                if key != "context" and not isinstance(value, str):
                    raise _fail("a string", i, kind, f"requests[{j}].{key}")
            if "dataset" in r:
                used.append((f"requests[{j}].dataset", r["dataset"]))
            elif "dataset" not in raw:
                raise _fail(f"request {j} names no dataset and the step has none", i, kind, "dataset")
    if "dataset" in raw:
        used.append(("dataset", raw["dataset"]))
    elif "requests" not in raw:
        raise _fail("is missing", i, kind, "dataset")
    for name, label in used:
        if not isinstance(label, str) or label not in ds_labels:
            raise _fail(f"no dataset labelled {label!r} (datasets: {sorted(ds_labels)})", i, kind, name)


def _validate_cut(raw: Mapping[str, Any], i: int, raw_steps: Sequence[Any]) -> None:
    kind = "power_cut"
    when = raw.get("when", "now")
    if when not in CUT_WHEN:
        raise _fail(f"one of {list(CUT_WHEN)}, got {when!r}", i, kind, "when")
    if when == "now":
        for name in ("op", "keep"):
            if name in raw:
                raise _fail("only for a cut at an operation of the next step (when: before/after/torn)", i, kind, name)
        return
    if "op" not in raw:
        raise _fail("is missing (which mutating flash operation of the next step, from 1)", i, kind, "op")
    _positive_int(raw, "op", i, kind)
    if "keep" in raw:
        if when != "torn":
            raise _fail("only for when: torn", i, kind, "keep")
        _positive_int(raw, "keep", i, kind, 0)
    following = raw_steps[i + 1] if i + 1 < len(raw_steps) else None
    if not isinstance(following, dict) or following.get("kind") in (None, "power_cut", "wait"):
        raise _fail("a cut at an operation needs a next step that does flash work (not the last step, a wait "
                    "or another power_cut)", i, kind, "when")


def _validate_router(router: Mapping[str, Any]) -> None:
    for key in router:
        if key not in ("rules", "experiments"):
            raise _fail("unknown (known: rules, experiments)", None, None, f"router.{key}")
    rules = router.get("rules", [])
    if not isinstance(rules, list):
        raise _fail("a list", None, None, "router.rules")
    for j, rule in enumerate(rules):
        if not (isinstance(rule, dict) and set(rule) <= {"match", "adapter"} and isinstance(rule.get("adapter"), str)
                and isinstance(rule.get("match", {}), dict)):
            raise _fail("{match: {field: value}, adapter: name}", None, None, f"router.rules[{j}]")
    exps = router.get("experiments", [])
    if not isinstance(exps, list):
        raise _fail("a list", None, None, "router.experiments")
    for j, e in enumerate(exps):
        ok = (isinstance(e, dict) and set(e) <= {"name", "arms", "key", "match"} and isinstance(e.get("name"), str)
              and isinstance(e.get("arms"), dict) and isinstance(e.get("key", "user"), str)
              and isinstance(e.get("match", {}), dict))
        if not ok:
            raise _fail("{name, arms: {adapter: percent}, key, match}", None, None, f"router.experiments[{j}]")


def _dataset_spec(spec: Any, where: str) -> dict[str, Any]:
    if isinstance(spec, str):
        return {"path": spec, "x": "x", "y": "y", "scale": 1.0}
    if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
        raise ScenarioFormatError(f"scenario: field {where}: a path or {{path, x, y, scale}}", field=where)
    unknown = sorted(set(spec) - {"path", "x", "y", "scale"})
    if unknown:
        raise ScenarioFormatError(f"scenario: field {where}.{unknown[0]}: unknown (known: path, x, y, scale)",
                                  field=f"{where}.{unknown[0]}")
    out = {"path": spec["path"], "x": spec.get("x", "x"), "y": spec.get("y", "y"), "scale": spec.get("scale", 1.0)}
    if not isinstance(out["x"], str) or not (out["y"] is None or isinstance(out["y"], str)) \
            or isinstance(out["scale"], bool) or not isinstance(out["scale"], (int, float)):
        raise ScenarioFormatError(f"scenario: field {where}: x and y are array keys, scale a number", field=where)
    return out


def load_scenario(path: str | Path) -> dict[str, Any]:
    """Read a scenario file (JSON)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ScenarioFileError(f"cannot read scenario {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ScenarioFormatError(f"scenario {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ScenarioFormatError(f"scenario {path}: the top level must be a JSON object")
    return data


# ==================================================================== resolution

def _first_use(steps: Sequence[Step], key: str, label: str) -> Step | None:
    for s in steps:
        if s.get(key) == label:
            return s
        if key == "dataset" and s.kind == "infer":
            if any(r.get("dataset") == label for r in s.get("requests", []) or []):
                return s
    return None


def _file_error(message: str, users: Step | None, what: str) -> ScenarioFileError:
    if users is not None:
        name = "dataset" if what.startswith("dataset") else "package"
        return ScenarioFileError(f"step {users.index} ({users.kind}): {name} {message}", step=users.index, field=name)
    return ScenarioFileError(f"scenario: {what}: {message}", field=what)


def _load_keyring(paths: Sequence[str], base: Path) -> Keyring:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys = []
    for j, p in enumerate(paths):
        path = base / p
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except OSError as exc:
            raise ScenarioFileError(f"scenario: keyring[{j}]: cannot read {path}: {exc.strerror or exc}",
                                    field=f"keyring[{j}]") from exc
        except ValueError as exc:
            raise ScenarioFileError(f"scenario: keyring[{j}]: {path} is not a PEM public key: {exc}",
                                    field=f"keyring[{j}]") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ScenarioFileError(f"scenario: keyring[{j}]: {path} is not an Ed25519 public key",
                                    field=f"keyring[{j}]")
        keys.append(key)
    return Keyring(keys)


def _load_dataset(spec: dict[str, Any], base: Path, label: str, users: Step | None) -> Dataset:
    path = base / spec["path"]
    try:
        with np.load(path, allow_pickle=False) as npz:
            if spec["x"] not in npz.files:
                raise _file_error(f"{label!r}: {path} has no array {spec['x']!r} (arrays: {npz.files})", users,
                                  f"datasets[{label!r}]")
            x = np.asarray(npz[spec["x"]])
            y = None
            if spec["y"] is not None:
                if spec["y"] in npz.files:
                    y = np.asarray(npz[spec["y"]])
                elif spec["y"] != "y":  # the default key may be absent: no labels
                    raise _file_error(f"{label!r}: {path} has no array {spec['y']!r} (arrays: {npz.files})",
                                      users, f"datasets[{label!r}]")
    except ScenarioError:
        raise
    except (OSError, ValueError) as exc:
        raise _file_error(f"{label!r}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}", users,
                          f"datasets[{label!r}]") from exc
    return Dataset(x, y, float(spec["scale"]))


def _coerce_dataset(value: Any, label: str) -> Dataset:
    if isinstance(value, Dataset):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return Dataset(np.asarray(value[0]), None if value[1] is None else np.asarray(value[1]))
    if isinstance(value, Mapping) and "x" in value:
        y = value.get("y")
        return Dataset(np.asarray(value["x"]), None if y is None else np.asarray(y), float(value.get("scale", 1.0)))
    raise ScenarioFormatError(f"datasets[{label!r}]: pass a Dataset, (x, y) or {{'x': ..., 'y': ...}}",
                              field=f"datasets[{label!r}]")


@dataclass
class _Inputs:
    """A dataset ready for the device: int8 rows shaped as the model input, labels or None."""

    x: np.ndarray
    y: np.ndarray | None
    cursor: int = 0


def _prepare(ds: Dataset, label: str, input_detail: Mapping[str, Any]) -> _Inputs:
    shape = tuple(int(s) for s in input_detail["shape"][1:])
    x = np.asarray(ds.x)
    if x.ndim == 0 or len(x) == 0:
        raise ScenarioFormatError(f"dataset {label!r} holds no rows", field=f"datasets[{label!r}]")
    per_row = int(np.prod(x.shape[1:])) if x.ndim > 1 else 1
    if per_row != int(np.prod(shape)):
        raise ScenarioFormatError(f"dataset {label!r}: rows of shape {x.shape[1:]} do not fit the model input "
                                  f"{list(shape)}", field=f"datasets[{label!r}]")
    if x.dtype == np.int8:
        q = x
    else:
        scale, zero_point = input_detail["quantization"]
        f = x.astype(np.float64) * ds.scale
        q = np.clip(np.round(f / scale) + zero_point, -128, 127).astype(np.int8)
    q = q.reshape(len(x), *shape)
    y = None
    if ds.y is not None:
        y = np.asarray(ds.y)
        if y.ndim == 2:
            y = y.argmax(axis=1)
        if y.ndim != 1 or len(y) != len(x):
            raise ScenarioFormatError(f"dataset {label!r}: {len(x)} rows but labels of shape {y.shape}",
                                      field=f"datasets[{label!r}]")
        y = y.astype(np.int64)
    return _Inputs(q, y)


# ==================================================================== runner

@dataclass
class _Run:
    """The runner's state while the steps run."""

    device: Device
    packages: dict[str, bytes]
    inputs: dict[str, _Inputs]
    progress: Callable[[str], None]
    records: list[dict[str, Any]] = field(default_factory=list)
    boots: list[dict[str, Any]] = field(default_factory=list)
    cuts: list[dict[str, Any]] = field(default_factory=list)
    accuracy: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    pending_cut: tuple[int, PowerCut] | None = None


def run_scenario(scenario: Mapping[str, Any], *, profile: str, out_dir: str | Path, base_dir: str | Path,
                 packages: Mapping[str, bytes] | None = None, datasets: Mapping[str, Any] | None = None,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run a scenario on a new device of `profile`; write report.json, trace.json, timeline.png
    and flash_ops.png into `out_dir`; return the report.

    base_dir: where relative paths in the scenario start (the scenario file's folder).
    packages / datasets: labels given in memory (added to, and overriding, the scenario's).
    progress: called with one line per step (default: nothing is printed).
    """
    wall0 = time.perf_counter()
    if "build" in scenario:
        raise ScenarioFormatError("scenario: field 'build' is resolved by the `tinyswap sim` command (it compiles "
                                  "and packs with the export package); give 'bundle', 'keyring' and 'packages'",
                                  field="build")
    if profile not in DEVICES:
        raise ScenarioFormatError(f"unknown device profile {profile!r} (profiles: {sorted(DEVICES)})", field="profile")
    packages = dict(packages or {})
    datasets = dict(datasets or {})
    steps = validate_scenario(scenario, packages=packages, datasets=datasets)
    base = Path(base_dir)
    out = Path(out_dir)
    say = progress or (lambda line: None)

    # ---- files
    if "bundle" not in scenario:
        raise ScenarioFormatError("scenario: field 'bundle' is missing (a bundle directory)", field="bundle")
    bundle = base / scenario["bundle"]
    for name in ("model.tflite", "slotmap.json"):
        if not (bundle / name).is_file():
            raise ScenarioFileError(f"scenario: bundle: {bundle / name} does not exist (a bundle directory from "
                                    f"`tinyswap export`)", field="bundle")
    keyring_paths = scenario.get("keyring", [])
    keyring_paths = [keyring_paths] if isinstance(keyring_paths, str) else list(keyring_paths)
    if not keyring_paths:
        raise ScenarioFormatError("scenario: field 'keyring' is missing (public-key PEM files)", field="keyring")
    keyring = _load_keyring(keyring_paths, base)
    pkg_bytes: dict[str, bytes] = {}
    for label, p in scenario.get("packages", {}).items():
        if label in packages:
            continue
        path = base / p
        try:
            pkg_bytes[label] = path.read_bytes()
        except OSError as exc:
            raise _file_error(f"{label!r} -> {path}: {exc.strerror or exc}", _first_use(steps, "package", label),
                              f"packages[{label!r}]") from exc
    pkg_bytes.update({k: bytes(v) for k, v in packages.items()})
    raw_ds: dict[str, Dataset] = {}
    for label, spec in scenario.get("datasets", {}).items():
        if label not in datasets:
            raw_ds[label] = _load_dataset(_dataset_spec(spec, f"datasets[{label!r}]"), base, label,
                                          _first_use(steps, "dataset", label))
    raw_ds.update({k: _coerce_dataset(v, k) for k, v in datasets.items()})

    # ---- the device
    opts = scenario.get("device", {})
    device = Device(profile, bundle, None, keyring, store_bytes=opts.get("store_bytes", 256 * 1024),
                    worst=bool(opts.get("worst", False)))
    from tinyswap.interpreter import Interpreter

    detail = Interpreter(model_content=device.model).get_input_details()[0]
    inputs = {label: _prepare(ds, label, detail) for label, ds in raw_ds.items()}
    run = _Run(device, pkg_bytes, inputs, say)
    router = scenario.get("router", {})
    for rule in router.get("rules", []):
        device.add_rule(rule.get("match", {}), rule["adapter"])
    try:
        for e in router.get("experiments", []):
            device.add_experiment(Experiment(e["name"], dict(e["arms"]), e.get("key", "user"),
                                             dict(e.get("match", {}))))
    except RouterError as exc:
        raise ScenarioFormatError(f"scenario: router.experiments: {exc}", field="router.experiments") from exc

    name = scenario.get("name", "scenario")
    say(f"{name}: {len(steps)} steps on {profile} ({device.profile.description})")
    device.provision()
    first = device.boot()
    run.boots.append({"step": None, "time_s": device.timeline.now, **_boot_dict(first)})
    baseline = {n: f.snapshot() for n, f in device.flashes.items()}
    say(f"{_clock(device.timeline.now)}  provisioned and booted ({_secs(device.timeline.now)})")

    failure: tuple[int, str] | None = None
    for step in steps:
        failure = _run_step(run, step)
        if failure is not None:
            break

    report = _report(run, scenario, steps, profile, baseline, failure)
    report["time"]["wall_seconds"] = round(time.perf_counter() - wall0, 3)
    paths = write_outputs(report, device, out)
    report["outputs"] = {k: str(v) for k, v in paths.items()}
    (out / "report.json").write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    if failure is not None:
        index, message = failure
        raise ScenarioStepFailed(f"{message} (outputs written to {out})", step=index, report=report)
    return report


def _run_step(run: _Run, step: Step) -> tuple[int, str] | None:
    """Run one step, record it; returns (index, message) when the scenario must stop."""
    d = run.device
    tl = d.timeline
    if step.at is not None and step.at > tl.now:
        tl.advance(step.at - tl.now, "idle", cat="idle", track="device", until=step.at)
    start = tl.now
    snaps = {n: f.snapshot() for n, f in d.flashes.items()}
    totals = dict(tl.totals)
    cut = None
    if run.pending_cut is not None:
        cut_step, cut = run.pending_cut
        run.pending_cut = None
        d.arm_power_cuts([cut])
    target = step.get("package") or step.get("name") or step.get("adapters") or step.get("dataset")
    record: dict[str, Any] = {"index": step.index, "kind": step.kind, "target": target, "note": step.get("note"),
                              "at_s": step.at, "start_s": start, "outcome": "ok", "error": None, "result": {}}
    expected = step.get("expect_error")
    failure = None
    try:
        record["result"] = _HANDLERS[step.kind](run, step) or {}
        if expected:
            record["outcome"] = "error"
            record["error"] = f"expected {expected}, but the step succeeded"
            failure = (step.index, f"step {step.index} ({step.kind}): expected {expected}, but the step succeeded")
    except PowerLoss as exc:
        fired = cut is not None and not d.power.powered
        record["error"] = f"{type(exc).__name__}: {exc}"
        if fired:
            record["outcome"] = "power lost"
            info = {"step": step.index, "armed_by": cut_step, "when": cut.when.value, "op": cut.op, "fired": True,
                    "time_s": tl.now, "message": str(exc)}
            run.cuts.append(info)
            record["cut"] = info
            run.records[cut_step]["result"].update(fired=True, time_s=tl.now)
            tl.instant("power cut", cat="power", when=cut.when.value, op=cut.op, step=step.index)
            if expected and not _matches(exc, expected):
                record["outcome"] = "error"
                failure = (step.index, f"step {step.index} ({step.kind}): expected {expected}, but power was cut")
        elif expected and _matches(exc, expected):
            record["outcome"] = "expected error"
        else:
            record["outcome"] = "error"
            failure = (step.index, f"step {step.index} ({step.kind}): {type(exc).__name__}: {exc}")
    except TinySwapError as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        if expected and _matches(exc, expected):
            record["outcome"] = "expected error"
        else:
            record["outcome"] = "error"
            failure = (step.index, f"step {step.index} ({step.kind}): {type(exc).__name__}: {exc}")
    finally:
        if cut is not None:
            if d.power.powered:
                note = f"not reached: step {step.index} made only {d.mutations} mutating flash operations"
                run.records[cut_step]["result"].update(fired=False, note=note)
                record["cut"] = {"armed_by": cut_step, "when": cut.when.value, "op": cut.op, "fired": False,
                                 "note": note}
            d.arm_power_cuts([])
    record["duration_s"] = tl.now - start
    record["time_by_category"] = {k: v - totals.get(k, 0.0) for k, v in tl.totals.items()
                                  if v - totals.get(k, 0.0) > 0}
    record["flash"] = {n: _ops(f.snapshot() - snaps[n]) for n, f in d.flashes.items()}
    record["mutating_ops"] = sum(v["program_ops"] + v["erase_ops"] for v in record["flash"].values())
    record["active_after"] = _active(d)
    run.records.append(record)
    run.progress(_progress_line(step, record))
    return failure


def _matches(exc: BaseException, name: str) -> bool:
    return any(cls.__name__ == name for cls in type(exc).__mro__)


# ---------------------------------------------------------------- step handlers

def _pkg(run: _Run, step: Step) -> bytes:
    return run.packages[step.get("package")]


def _adapter_state(d: Device, name: str) -> dict[str, Any]:
    info = d.manager.adapter_info(name)
    state = d.manager.export_state()
    digest = state["adapters"][name]["current"]
    slot = next((s["slot"] for s in state["slots"] if s["digest"] == digest), None)
    return {"name": name, "version": info.version, "sequence": info.sequence, "digest": digest, "slot": slot}


def _install(run: _Run, step: Step) -> dict[str, Any]:
    return asdict(run.device.install(_pkg(run, step)))


def _update(run: _Run, step: Step) -> dict[str, Any]:
    d = run.device
    data = _pkg(run, step)
    if step.kind == "update":
        d.update(data, permanent=step.get("permanent", False))
    else:
        d.swap(parse_package(data).content_digest, permanent=step.get("permanent", False))
    return {**_adapter_state(d, parse_package(data).name), "trial": d.trial}


def _activate(run: _Run, step: Step) -> dict[str, Any]:
    run.device.activate(step.get("adapters"), permanent=step.get("permanent", False))
    return {"active": _active(run.device), "trial": run.device.trial}


def _confirm(run: _Run, step: Step) -> dict[str, Any]:
    return {"confirmed": run.device.confirm()}


def _rollback(run: _Run, step: Step) -> dict[str, Any]:
    d = run.device
    d.rollback(step.get("name"), permanent=step.get("permanent", False))
    return {**_adapter_state(d, step.get("name")), "trial": d.trial}


def _delete(run: _Run, step: Step) -> dict[str, Any]:
    run.device.delete(step.get("name"), permanent=step.get("permanent", False))
    return {"deleted": step.get("name"), "trial": run.device.trial}


def _prefetch(run: _Run, step: Step) -> dict[str, Any]:
    run.device.prefetch(step.get("name"))
    return {"prefetched": step.get("name"), "cache_used": run.device.manager.cache.used}


def _wait(run: _Run, step: Step) -> dict[str, Any]:
    seconds = parse_duration(step.get("seconds"), "seconds", step=step.index)
    run.device.timeline.advance(seconds, "wait", cat="idle", track="device")
    return {"seconds": seconds}


def _power_cut(run: _Run, step: Step) -> dict[str, Any]:
    d = run.device
    when = step.get("when", "now")
    if when == "now":
        if not d.power.powered:
            return {"when": "now", "note": "the power was already off"}
        d.power_cut()
        run.cuts.append({"step": step.index, "armed_by": step.index, "when": "now", "op": None,
                         "time_s": d.timeline.now, "message": "power cut between operations"})
        d.timeline.instant("power cut", cat="power", when="now", step=step.index)
        return {"when": "now", "fired": True, "time_s": d.timeline.now}
    cut = PowerCut(int(step.get("op")), CutPoint(when), step.get("keep"))
    run.pending_cut = (step.index, cut)
    return {"when": when, "op": cut.op, "keep": cut.keep, "armed_for_step": step.index + 1, "fired": False}


def _reboot(run: _Run, step: Step) -> dict[str, Any]:
    d = run.device
    if d.power.powered and d.booted:
        d.power_cut()  # a reboot is a power cycle: RAM is lost, a trial state reverts
        cycled = True
    else:
        cycled = False
    if not d.power.powered:
        d.power_on()
    d.timeline.instant("reboot", cat="power", step=step.index)
    report = d.boot()
    out = {"power_cycled": cycled, **_boot_dict(report)}
    run.boots.append({"step": step.index, "time_s": d.timeline.now, **_boot_dict(report)})
    return out


def _boot_dict(report: BootReport) -> dict[str, Any]:
    return {"record_sequence": report.record_sequence, "reverted": report.reverted, "restored": report.restored,
            "cleared_slots": report.cleared_slots, "active": report.active, "errors": report.errors}


def _spec_label(d: Device, spec: Any) -> str:
    """A readable name for an adapter spec, with the versions current now."""
    def one(name: str) -> str:
        if name == BASE:
            return BASE
        try:
            return f"{name}@{d.manager.adapter_info(name).version}"
        except TinySwapError:
            return name
    if spec is None:
        return "+".join(one(n) if w == 1 else f"{one(n)}x{w:g}" for n, w in sorted(d.status()["active"].items())) \
            or BASE
    if isinstance(spec, str):
        return one(spec)
    if isinstance(spec, Mapping):
        return "+".join(one(n) if w == 1 else f"{one(n)}x{w:g}" for n, w in spec.items())
    return "+".join(one(n) for n in spec)


def _fill(value: Any, row: int) -> Any:
    return value.replace("{row}", str(row)) if isinstance(value, str) else value


def _infer(run: _Run, step: Step) -> dict[str, Any]:
    d = run.device
    if not d.booted:
        raise DeviceStateError("infer: the device is not booted (a power cut needs a reboot step)")
    default_ds = step.get("dataset")
    reqs = step.get("requests")
    # how many rows (default: the whole dataset), and which dataset each comes from
    if step.get("rows") is not None:
        n = int(step.get("rows"))
    else:
        n = len(run.inputs[default_ds or reqs[0]["dataset"]].x)
    labels = [(reqs[r % len(reqs)].get("dataset", default_ds) if reqs else default_ds) for r in range(n)]
    if step.get("start") is not None:
        for label in set(labels):
            run.inputs[label].cursor = int(step.get("start"))
    rows: list[tuple[str, int]] = []
    for label in labels:
        ds = run.inputs[label]
        rows.append((label, ds.cursor % len(ds.x)))
        ds.cursor += 1
    batch = int(step.get("batch") or 64)
    per_row = step.get("per_row")
    routed: dict[str, int] = {}
    by: dict[tuple[str, str], list[int]] = {}
    invokes = 0
    for b0 in range(0, n, batch):
        chunk = list(range(b0, min(n, b0 + batch)))
        groups: list[tuple[list[int], dict[str, Any]]] = []
        if reqs:
            requests = {r: _request(reqs[r % len(reqs)], r) for r in chunk}
            names = {r: d.router.route(requests[r]) for r in chunk}
            for r in chunk:
                routed[names[r]] = routed.get(names[r], 0) + 1
            for tenant in dict.fromkeys(requests[r].tenant for r in chunk):
                members = [r for r in chunk if requests[r].tenant == tenant]
                groups.append((members, {"per_row": [names[r] for r in members], "tenant": tenant}))
        elif per_row:
            cycle = [per_row[r % len(per_row)] for r in chunk]
            groups.append((chunk, {"per_row": cycle, "tenant": step.get("tenant")}))
        elif step.get("adapters") is not None:
            groups.append((chunk, {"adapters": step.get("adapters"), "tenant": step.get("tenant")}))
        else:
            groups.append((chunk, {"tenant": step.get("tenant")}))
        for members, kw in groups:
            specs = kw["per_row"] if "per_row" in kw else [kw.get("adapters")] * len(members)
            known: dict[str, str] = {}  # one label per distinct spec (versions looked up once)
            tags = []
            for spec in specs:
                key = json.dumps(spec, sort_keys=True)
                if key not in known:
                    known[key] = _spec_label(d, spec)
                tags.append(known[key])
            x = np.stack([run.inputs[rows[r][0]].x[rows[r][1]] for r in members])
            out = d.infer(x, **kw)
            invokes += 1
            pred = np.asarray(out[0]).reshape(len(members), -1).argmax(axis=1)
            for k, r in enumerate(members):
                label, idx = rows[r]
                y = run.inputs[label].y
                correct = None if y is None else int(pred[k] == y[idx])
                if correct is None:
                    continue
                cell = by.setdefault((tags[k], label), [0, 0])
                cell[0] += 1
                cell[1] += correct
                if reqs:
                    _record_outcome(d, requests[r], kw["per_row"][k], correct)
    for key, (count, correct) in by.items():
        total = run.accuracy.setdefault(key, [0, 0])
        total[0] += count
        total[1] += correct
    result: dict[str, Any] = {
        "rows": n, "invokes": invokes, "datasets": {k: labels.count(k) for k in dict.fromkeys(labels)},
        "by_adapter": [{"adapter": a, "dataset": ds, "rows": c, "correct": k, "accuracy": k / c}
                       for (a, ds), (c, k) in by.items()],
    }
    if by:
        rows_l = sum(c for c, _ in by.values())
        result["accuracy"] = sum(k for _, k in by.values()) / rows_l
        result["labelled_rows"] = rows_l
    if reqs:
        result["routed"] = routed
        if d.router.experiments:
            result["experiments"] = d.router.metrics()
    return result


def _request(raw: Mapping[str, Any], row: int) -> Request:
    return Request(user=_fill(raw.get("user"), row), tenant=_fill(raw.get("tenant"), row),
                   task=_fill(raw.get("task"), row), session=_fill(raw.get("session"), row),
                   context={k: _fill(v, row) for k, v in (raw.get("context") or {}).items()})


def _record_outcome(d: Device, request: Request, routed: str, correct: int) -> None:
    """An outcome for the experiment that routed this request (not for a sticky session's
    earlier choice, nor for a rule's)."""
    for exp in d.router.experiments:
        if all(request.field(k) == v for k, v in exp.match.items()):
            if exp.arm(request) == routed:
                d.router.record(exp.name, request, correct)
            return


_HANDLERS: dict[str, Callable[[_Run, Step], dict[str, Any] | None]] = {
    "install": _install, "update": _update, "swap": _update, "activate": _activate, "infer": _infer,
    "power_cut": _power_cut, "reboot": _reboot, "confirm": _confirm, "rollback": _rollback, "delete": _delete,
    "prefetch": _prefetch, "wait": _wait,
}


# ---------------------------------------------------------------- report

def _ops(c: FlashCounters) -> dict[str, int]:
    return {"read_ops": c.read_ops, "read_bytes": c.read_bytes, "program_ops": c.program_ops,
            "program_bytes": c.program_bytes, "erase_ops": c.erase_ops, "erase_bytes": c.erase_bytes}


def _active(d: Device) -> dict[str, Any] | None:
    if not d.booted:
        return None
    return {n: {"version": a.version, "weight": a.weight, "slot": a.slot} for n, a in d.active_adapters().items()}


def _report(run: _Run, scenario: Mapping[str, Any], steps: Sequence[Step], profile: str,
            baseline: Mapping[str, FlashCounters], failure: tuple[int, str] | None) -> dict[str, Any]:
    d = run.device
    p = d.profile
    experiments = {e.name: {arm: {"requests": s.requests, "outcomes": s.outcomes, "mean": s.mean}
                            for arm, s in e.stats.items()} for e in d.experiments}
    sim_time = {"simulated_s": d.timeline.now, "idle_s": d.timeline.totals.get("idle", 0.0),
                "by_category": dict(d.timeline.totals)}  # before the budget's store probe reads flash
    report: dict[str, Any] = {
        "format": REPORT_FORMAT, "version": 1,
        "scenario": {k: scenario.get(k) for k in ("name", "description") if k in scenario},
        "profile": {"name": p.name, "description": p.description, "model_placement": p.model_placement,
                    "model_storage": d.model_storage.name, "store_storage": d.store_storage.name,
                    "worst_case_timings": d.timeline.worst},
        "completed": failure is None,
        "failed": None if failure is None else {"step": failure[0], "error": failure[1]},
        "steps": run.records,
        "accuracy": [{"adapter": a, "dataset": ds, "rows": c, "correct": k, "accuracy": k / c}
                     for (a, ds), (c, k) in run.accuracy.items()],
        "experiments": experiments,
        "boots": run.boots,
        "power_cuts": run.cuts,
        "final": _final(d),
        "budget": _budget(d, baseline),
        "time": sim_time,
    }
    return report


def _final(d: Device) -> dict[str, Any]:
    status = d.status()
    if not d.booted:
        return {"status": status}
    state = d.manager.export_state()
    return {"status": status, "active": _active(d),
            "adapters": {n: {"current": a["current"], "versions": a["versions"],
                             "version": d.manager.adapter_info(n).version} for n, a in state["adapters"].items()},
            "slots": [{"slot": s["slot"], "adapter": d.manager.resident().get(s["slot"])} for s in state["slots"]],
            "trial": d.trial}


def _budget(d: Device, baseline: Mapping[str, FlashCounters]) -> dict[str, Any]:
    p = d.profile
    model_copy = 0 if d.xip else len(d.model)
    arena = d.arena_bytes or 0
    cache_used = d.manager.cache.used if d.booted else None
    ram = {"ram_bytes": p.ram_bytes, "sram_bytes": p.sram_bytes, "ext_ram_bytes": p.ext_ram_bytes,
           "arena_bytes": d.arena_bytes, "arena_budget": d.arena_budget,
           "cache_budget": d.cache_budget, "cache_used": cache_used, "model_copy_bytes": model_copy,
           "model_budget": p.model_budget, "planned_bytes": arena + d.cache_budget + model_copy,
           "free_bytes": p.ram_bytes - (arena + d.cache_budget + model_copy)}
    if d.booted:
        c = d.manager.cache
        ram["cache_stats"] = {"hits": c.hits, "misses": c.misses, "evictions": c.evictions}
    L = d.layout
    model_flash = d.flashes["model"]
    g = model_flash.geometry
    slots = [{"slot": s.slot, "offset": s.offset, "length": s.length} for s in d.slotmap.slots]
    slot_sectors = {sec for s in d.slotmap.slots for sec in g.sectors_in(L.model.offset + s.offset, s.length)}
    model_sectors = set(g.sectors_in(L.model.offset, L.model.size))
    base_sectors = sorted(model_sectors - slot_sectors)
    now = model_flash.snapshot() - baseline["model"]
    record_bytes = None
    if d.metadata.current is not None:
        record_bytes = len(encode_record(d.metadata.current.sequence, d.metadata.current.payload))
    store: dict[str, Any] = {"part": "model" if L.store_shared else "store", "offset": L.store.offset,
                             "size": L.store.size}
    if d.booted and d._store is not None:
        try:
            free = d.store.free_bytes()
            store.update(used_bytes=L.store.size - free, free_bytes=free, packages=len(d.store.list()))
        except TinySwapError as exc:
            store["error"] = str(exc)
    parts = {}
    for n, f in d.flashes.items():
        fg = f.geometry
        wear = [f.wear(s) for s in range(fg.sector_count)]
        total = f.snapshot() - baseline[n]
        parts[n] = {"name": fg.name, "size": fg.size, "sectors": fg.sector_count,
                    "sector_size": fg.uniform_sector_size, "erase_value": fg.erase_value,
                    "write_align": fg.write_align,
                    "storage": (d.model_storage if n == "model" else d.store_storage).name,
                    "max_sector_wear": max(wear) if wear else 0, "run": _ops(total)}
    flash = {
        "parts": parts,
        "model": {"part": "model", "offset": L.model.offset, "size": L.model.size, "model_bytes": len(d.model),
                  "slot_bytes": sum(s["length"] for s in slots), "slots": slots,
                  "base_sector_erases_during_run": sum(now.sector_erases[s] for s in base_sectors),
                  "base_sector_programs_during_run": sum(now.sector_programs[s] for s in base_sectors)},
        "metadata": {"part": "model", "offset": L.metadata.offset, "size": L.metadata.size,
                     "areas": L.metadata_areas, "area_capacity": d.metadata.capacity, "record_bytes": record_bytes},
        "store": store,
    }
    if isinstance(d._image, FlashModelImage):
        flash["model"]["slot_sector_erase_counts"] = {str(k): v for k, v in sorted(d._image.erase_counts.items())}
    return {"ram": ram, "flash": flash}


def write_outputs(report: Mapping[str, Any], device: Device, out_dir: Path) -> dict[str, Path]:
    """trace.json and the plots (report.json is written by the caller, with these paths in it)."""
    from tinyswap.firmware_sim.scenario_plots import plot_flash_ops, plot_timeline

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"report": out_dir / "report.json", "trace": device.write_trace(out_dir / "trace.json")}
    title = str(report.get("scenario", {}).get("name", "scenario"))
    paths["timeline"] = plot_timeline(device.timeline.events, out_dir / "timeline.png",
                                      title=f"{title} on {device.profile.name}: device timeline (simulated time)")
    paths["flash_ops"] = plot_flash_ops(report["steps"], out_dir / "flash_ops.png",
                                        title=f"{title} on {device.profile.name}: flash operations per step")
    return paths


# ---------------------------------------------------------------- text

def _clock(seconds: float) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h):3d}:{int(m):02d}:{s:06.3f}"


def _secs(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def _progress_line(step: Step, rec: Mapping[str, Any]) -> str:
    r = rec["result"]
    k = step.kind
    what = ""
    if k in ("update", "swap", "rollback") and "name" in r:
        where = f"in slot {r['slot']}" if r["slot"] is not None else "stored, not in a slot (written on first use)"
        what = f"{r['name']} {r['version']} {where}" + (" (trial)" if r.get("trial") else "")
    elif k == "install" and "name" in r:
        what = f"{r['name']} {r['version']} " + ("stored" if r["stored"] else "already stored")
    elif k == "activate" and "active" in r:
        what = ", ".join(f"{n}@{a['version']}" for n, a in (r["active"] or {}).items()) or BASE
    elif k == "infer" and "rows" in r:
        accs = ", ".join(f"{b['adapter']} on {b['dataset']} {100 * b['accuracy']:.1f}%" for b in r["by_adapter"])
        what = f"{r['rows']} rows" + (f": {accs}" if accs else "")
    elif k == "power_cut":
        what = "power off now" if r.get("when") == "now" else \
            f"armed: {r.get('when')} flash write {r.get('op')} of the next step"
    elif k == "reboot" and "reverted" in r:
        act = ", ".join(f"{n}@{a['version']}" for n, a in (rec["active_after"] or {}).items()) or BASE
        disabled = r["restored"].get("disabled_slots") or []
        what = ("reverted the trial; " if r["reverted"] else "") + f"active {act}" + \
            (f"; slots {disabled} disabled (bytes differ from the record)" if disabled else "") + \
            (f"; cleared slots {r['cleared_slots']}" if r["cleared_slots"] else "") + \
            "".join(f"; {e}" for e in r["errors"])
    elif k == "confirm":
        what = "confirmed" if r.get("confirmed") else "nothing on trial"
    elif k == "delete":
        what = f"deleted {r.get('deleted')}"
    elif k == "wait":
        what = f"{_secs(r.get('seconds', 0.0))}"
    elif k == "prefetch":
        what = f"{r.get('prefetched')} staged"
    if rec["outcome"] == "power lost":
        cut = rec["cut"]
        what = f"POWER LOST ({cut['when']} flash write {cut['op']} of this step)"
    elif rec["outcome"] != "ok":
        what = f"{rec['outcome'].upper()}: {rec['error']}" + (f" | {what}" if what else "")
    if rec.get("cut", {}).get("fired") is False:
        what += f" (armed power cut at flash write {rec['cut']['op']} not reached)"
    return (f"{_clock(rec['start_s'])}  step {step.index:>2} {k:<9} {what}  "
            f"[{_secs(rec['duration_s'])}, {rec['mutating_ops']} flash writes]")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


__all__ = ["Dataset", "ScenarioError", "ScenarioFileError", "ScenarioFormatError", "ScenarioStepFailed",
           "load_scenario", "parse_duration", "run_scenario", "validate_scenario", "write_outputs"]
