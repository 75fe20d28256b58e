"""Reading files: the scenario itself (bounded, one typed error for anything that is not a
JSON object in a regular file), and what it names (keyring, packages, datasets)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from tinyswap.firmware_sim.scenario.errors import ScenarioFileError, ScenarioFormatError
from tinyswap.firmware_sim.scenario.registry import Step
from tinyswap.firmware_sim.scenario.validate import DatasetSpec
from tinyswap.package import Keyring
from tinyswap.quantize import quantize_int8
from tinyswap.errors import InputFileError
from tinyswap.files import parse_json_bounded, read_bytes, read_npz
from tinyswap.keys import KeyAlgorithm, load_public_key
from tinyswap.package import MAX_PACKAGE_BYTES

# A scenario scripts a day in a few hundred steps (the committed ones are under 10 KB); a
# megabyte leaves room for generated scenarios while refusing, before reading, a file that
# was named by mistake (a model, a dataset, a device node).
MAX_SCENARIO_BYTES = 1 << 20


@dataclass
class Dataset:
    """Inputs (float or int8, batch first) and optional integer labels."""

    x: np.ndarray
    y: np.ndarray | None = None
    scale: float = 1.0


@dataclass
class Inputs:
    """A dataset ready for the device: int8 rows shaped as the model input, labels or None."""

    x: np.ndarray
    y: np.ndarray | None
    cursor: int = 0


def load_scenario(path: str | Path, *, max_bytes: int = MAX_SCENARIO_BYTES) -> dict[str, Any]:
    """Read a scenario file: a JSON object of at most `max_bytes` bytes in UTF-8.

    Raises ScenarioFileError (missing, a directory, not a regular file, too large, unreadable)
    or ScenarioFormatError (not UTF-8 text, not JSON, duplicate keys, not an object).
    """
    path = Path(path)
    try:
        data = read_bytes(path, "scenario", max_bytes=max_bytes)
    except InputFileError as exc:
        raise ScenarioFileError(f"cannot read scenario {path}: {exc.problem}") from exc
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (some editors write one) is not JSON
    except UnicodeDecodeError as exc:
        raise ScenarioFormatError(f"scenario {path} is not UTF-8 text (byte {exc.start} is "
                                  f"{data[exc.start]:#04x}); a scenario is a JSON file") from exc
    return parse_scenario_text(text, str(path))


def parse_scenario_text(text: str, name: str = "<scenario>") -> dict[str, Any]:
    """A scenario from JSON text (strict: no NaN / Infinity, no duplicate keys)."""
    try:
        data = parse_json_bounded(text, f"scenario {name}", object_pairs_hook=_no_duplicates,
                                  parse_constant=_no_constant)
    except _DuplicateKey as exc:
        raise ScenarioFormatError(f"scenario {name} is not valid: the key {exc.key!r} appears twice in one object",
                                  field=exc.key) from None
    except InputFileError as exc:  # nested too deeply, or an integer too long to parse safely
        detail = exc.problem.removeprefix("not valid JSON: ")
        raise ScenarioFormatError(f"scenario {name} is not valid JSON: {detail}") from None
    except (ValueError, RecursionError) as exc:
        detail = exc if isinstance(exc, ValueError) else "nested too deeply"
        raise ScenarioFormatError(f"scenario {name} is not valid JSON: {detail}") from None
    if not isinstance(data, dict):
        raise ScenarioFormatError(f"scenario {name}: the top level must be a JSON object")
    return data


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # JSON allows a key twice and json.loads keeps the last: in a scenario that silently drops
    # a field the author meant, so it is refused.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# ---------------------------------------------------------------- what the scenario names

def first_use(steps: Sequence[Step], field: str, label: str) -> Step | None:
    """The first step naming a package or dataset label (to name it in a file error)."""
    for s in steps:
        if getattr(s.params, field, None) == label:
            return s
        requests = getattr(s.params, "requests", None) if field == "dataset" else None
        if requests and any(r.dataset == label for r in requests):
            return s
    return None


def file_error(message: str, user: Step | None, what: str) -> ScenarioFileError:
    if user is not None:
        name = "dataset" if what.startswith("dataset") else "package"
        return ScenarioFileError(f"step {user.index} ({user.kind}): {name} {message}", step=user.index, field=name,
                                 kind=user.kind)
    return ScenarioFileError(f"scenario: {what}: {message}", field=what)


def load_keyring(paths: Sequence[str], base: Path) -> Keyring:
    keys = []
    for j, p in enumerate(paths):
        path = base / p
        try:
            keys.append(load_public_key(path, KeyAlgorithm.ED25519, "public key"))
        except InputFileError as exc:
            raise ScenarioFileError(f"scenario: keyring[{j}]: {exc}", field=f"keyring[{j}]") from exc
    return Keyring(keys)


def load_package(path: Path, label: str, user: Step | None) -> bytes:
    try:
        return read_bytes(path, "adapter package", max_bytes=MAX_PACKAGE_BYTES)
    except InputFileError as exc:
        raise file_error(f"{label!r} -> {path}: {exc.problem}", user, f"packages[{label!r}]") from exc


def load_dataset(spec: DatasetSpec, base: Path, label: str, user: Step | None) -> Dataset:
    path = base / spec.path
    where = f"datasets[{label!r}]"
    try:
        arrays = read_npz(path, "dataset")
    except InputFileError as exc:
        raise file_error(f"{label!r}: cannot read {path}: {exc.problem}", user, where) from exc
    if spec.x not in arrays:
        raise file_error(f"{label!r}: {path} has no array {spec.x!r} (arrays: {sorted(arrays)})", user, where)
    x, y = np.asarray(arrays[spec.x]), None
    if spec.y is not None:
        if spec.y in arrays:
            y = np.asarray(arrays[spec.y])
        elif spec.y != "y":  # the default key may be absent: no labels
            raise file_error(f"{label!r}: {path} has no array {spec.y!r} (arrays: {sorted(arrays)})", user, where)
    return Dataset(x, y, float(spec.scale))


def coerce_dataset(value: Any, label: str) -> Dataset:
    """A dataset given in memory: a `Dataset`, (x, y), or {"x": ..., "y": ..., "scale": ...}."""
    if isinstance(value, Dataset):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return Dataset(np.asarray(value[0]), None if value[1] is None else np.asarray(value[1]))
    if isinstance(value, Mapping) and "x" in value:
        y = value.get("y")
        return Dataset(np.asarray(value["x"]), None if y is None else np.asarray(y), float(value.get("scale", 1.0)))
    raise ScenarioFormatError(f"datasets[{label!r}]: pass a Dataset, (x, y) or {{'x': ..., 'y': ...}}",
                              field=f"datasets[{label!r}]")


def prepare(ds: Dataset, label: str, input_detail: Mapping[str, Any]) -> Inputs:
    """Quantize a dataset for the model input (round half to even, clipped to int8), as
    models/digits/evaluate.py does; int8 inputs are used as they are."""
    shape = tuple(int(s) for s in input_detail["shape"][1:])
    x = np.asarray(ds.x)
    if x.dtype.kind not in "iuf":
        raise ScenarioFormatError(f"dataset {label!r}: rows must be numbers (int or float), got dtype {x.dtype}",
                                  field=f"datasets[{label!r}]")
    if x.ndim == 0 or len(x) == 0:
        raise ScenarioFormatError(f"dataset {label!r} holds no rows", field=f"datasets[{label!r}]")
    per_row = int(np.prod(x.shape[1:])) if x.ndim > 1 else 1
    if per_row != int(np.prod(shape)):
        raise ScenarioFormatError(f"dataset {label!r}: rows of shape {x.shape[1:]} do not fit the model input "
                                  f"{list(shape)}", field=f"datasets[{label!r}]")
    if x.dtype.kind == "f" and not np.isfinite(x).all():  # NaN and inf have no int8 value
        raise ScenarioFormatError(f"dataset {label!r}: rows hold NaN or infinite values", field=f"datasets[{label!r}]")
    if x.dtype == np.int8:
        q = x
    else:
        scale, zero_point = input_detail["quantization"]
        f = x.astype(np.float64) * ds.scale
        q = quantize_int8(f, scale, zero_point)
    q = q.reshape(len(x), *shape)
    y = None
    if ds.y is not None:
        y = np.asarray(ds.y)
        if y.dtype.kind not in "iuf" or (y.dtype.kind == "f" and not np.isfinite(y).all()):
            raise ScenarioFormatError(f"dataset {label!r}: labels must be finite numbers, got dtype {y.dtype}",
                                      field=f"datasets[{label!r}]")
        if y.ndim == 2:
            y = y.argmax(axis=1)
        if y.ndim != 1 or len(y) != len(x):
            raise ScenarioFormatError(f"dataset {label!r}: {len(x)} rows but labels of shape {y.shape}",
                                      field=f"datasets[{label!r}]")
        if y.dtype.kind == "f" and not (y == np.round(y)).all():
            raise ScenarioFormatError(f"dataset {label!r}: labels are class indices, got fractions",
                                      field=f"datasets[{label!r}]")
        y = y.astype(np.int64)
    return Inputs(q, y)


__all__ = ["Dataset", "Inputs", "MAX_SCENARIO_BYTES", "coerce_dataset", "file_error", "first_use", "load_dataset",
           "load_keyring", "load_package", "load_scenario", "parse_scenario_text", "prepare"]
