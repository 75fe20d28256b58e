"""Hostile adapter directories, generated from a table of fields and the values that break them.

A valid directory of each format (tinyswap: adapter.json + adapter.npz; PEFT: adapter_config.json
+ adapter_model.safetensors) is changed in one place (or, in the full run, two): a config field
set to a value of the wrong type or range, a weight array given another dtype, a NaN or an Inf,
another shape, or removed. Every case must end in one of two ways: `load_adapter` raises a typed
one-line `AdapterSourceError` (and `pack` a `PackError`), or the adapter loads with finite float64
weights of the declared rank and string tags, and packs into the example bundle. A traceback of
any other type fails the case. CI runs a seeded sample; `TINYSWAP_FULL=1` runs every single change
and a sample of pairs.
"""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import numpy as np
import pytest

from tinyswap.export.adapter_source import AdapterSourceError, Lora, load_adapter
from tinyswap.export.pack import PackError, pack

from tests.adapter_cases import KEY, example_bundle
from tests.conftest import FULL

NAN, INF = float("nan"), float("inf")
BAD_NUMBERS = ["four", 0, -4, True, False, None, NAN, INF, -INF, 4.5, [4], {"r": 4}, 10 ** 30]
HUGE_ALPHAS = [1e308, -1e308, 1e300]  # finite numbers whose scaled delta overflows float64
BAD_OBJECTS = [["ab"], "ab", 3, None, {"fc2": "x"}, {"fc2": None}, {"(": 2}, {"fc2": 2}]

# (format, field, values): a JSON field of the config file; "targets.fc2.rank" addresses nested keys.
CONFIG_CHANGES: list[tuple[str, str, list[Any]]] = [
    ("tinyswap", "targets.fc2.rank", BAD_NUMBERS),
    ("tinyswap", "targets.fc2.alpha", BAD_NUMBERS + HUGE_ALPHAS),
    ("tinyswap", "targets.fc2", [4, "x", None, [], {}]),
    ("tinyswap", "targets", [[], {}, None, "fc2", {"fc2": {"rank": 4}, "fc9": {"rank": 4}}]),
    ("tinyswap", "tags", BAD_OBJECTS + [{"task": 3}, {"task": None}, {"task": ["a"]}]),
    ("tinyswap", "name", ["", 3, None, ["x"]]),
    ("tinyswap", "version", ["", 3, None]),
    ("tinyswap", "sequence", ["7", -1, True, 1.5, None, 10 ** 30]),
    ("tinyswap", "kind", ["bottleneck", "ia3", None, 3]),
    ("tinyswap", "accuracy", ["high", NAN, INF, None, 0.5]),
    ("peft", "r", BAD_NUMBERS),
    ("peft", "lora_alpha", BAD_NUMBERS + HUGE_ALPHAS),
    ("peft", "rank_pattern", BAD_OBJECTS),
    ("peft", "alpha_pattern", BAD_OBJECTS),
    ("peft", "use_rslora", ["yes", 1, None, True]),
    ("peft", "peft_type", ["IA3", None, 3]),
    ("peft", "bias", ["all", None]),
    ("peft", "use_dora", [True]),
    ("peft", "modules_to_save", [["fc2"]]),
]
# (format, array role, change): weights changed in the data file.
ARRAY_CHANGES = ["int32", "int8", "bool", "complex", "float16", "bfloat16", "nan", "inf", "-inf", "transpose",
                 "rank+1", "3d", "empty", "missing", "extra"]
CASES = ([("config", fmt, field, value) for fmt, field, values in CONFIG_CHANGES for value in values]
         + [("array", fmt, role, change) for fmt in ("tinyswap", "peft") for role in ("A", "B") for change in ARRAY_CHANGES])


def _set(config: dict[str, Any], field: str, value: Any) -> None:
    *parents, last = field.split(".")
    for key in parents:
        if not isinstance(config.get(key), dict):
            config[key] = {}
        config = config[key]
    config[last] = value


def _arrays(rank: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    return {"A": rng.standard_normal((rank, 128)).astype(np.float32) / 11,
            "B": rng.standard_normal((64, rank)).astype(np.float32) * 0.05}


def _change_array(arrays: dict[str, Any], role: str, change: str) -> None:
    x = arrays[role]
    if change in ("int32", "int8", "bool"):
        arrays[role] = np.ones_like(x, dtype=change)
    elif change == "complex":
        arrays[role] = x.astype(np.complex64)
    elif change == "float16":
        arrays[role] = x.astype(np.float16)
    elif change == "bfloat16":
        arrays[role] = ("BF16", (x.view(np.uint32) >> 16).astype("<u2"))
    elif change in ("nan", "inf", "-inf"):
        x = x.copy()
        x.flat[3] = float(change)
        arrays[role] = x
    elif change == "transpose":
        arrays[role] = x.T.copy()
    elif change == "rank+1":
        arrays[role] = np.concatenate([x, x[:1]], 0) if role == "A" else np.concatenate([x, x[:, :1]], 1)
    elif change == "3d":
        arrays[role] = x[None]
    elif change == "empty":
        arrays[role] = np.zeros((0, 0), np.float32)
    elif change == "missing":
        del arrays[role]
    elif change == "extra":
        arrays["fc9/" + role] = x


def _write_safetensors(path, tensors: dict[str, Any]) -> None:
    header, data = {}, b""
    names = {np.dtype(np.float16): "F16", np.dtype(np.float32): "F32", np.dtype(np.float64): "F64",
             np.dtype(np.int32): "I32", np.dtype(np.int8): "I8", np.dtype(bool): "BOOL", np.dtype(np.complex64): "C64"}
    for key, value in tensors.items():
        dtype, array = value if isinstance(value, tuple) else (names[value.dtype], value)
        raw = np.ascontiguousarray(array).tobytes()
        header[key] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def build_case(path, changes: list[tuple[str, str, str, Any]]) -> str:
    """Write the directory for `changes` (all of one format) under `path`; return the format."""
    fmt = changes[0][1]
    arrays: dict[str, Any] = _arrays()
    if fmt == "tinyswap":
        config: dict[str, Any] = {"name": "hostile", "version": "1.0", "sequence": 3, "kind": "lora",
                                  "tags": {"task": "kws"}, "targets": {"fc2": {"rank": 4, "alpha": 8}}}
    else:
        config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["fc2"], "bias": "none",
                  "rank_pattern": {}, "alpha_pattern": {}, "use_rslora": False}
    for what, _, field, value in changes:
        if what == "config":
            _set(config, field, value)
        else:
            _change_array(arrays, field, value)
    path.mkdir(parents=True)
    if fmt == "tinyswap":
        (path / "adapter.json").write_text(json.dumps(config))
        if any(isinstance(v, tuple) for v in arrays.values()):  # no bfloat16 in .npz: store the raw halves
            arrays = {k: v[1] if isinstance(v, tuple) else v for k, v in arrays.items()}
        np.savez(path / "adapter.npz", **{(k if "/" in k else f"fc2/{k}"): v for k, v in arrays.items()})
    else:
        (path / "adapter_config.json").write_text(json.dumps(config))
        _write_safetensors(path / "adapter_model.safetensors", {
            (f"base_model.model.{k.split('/')[0]}.lora_{k.split('/')[1]}.weight" if "/" in k
             else f"base_model.model.fc2.lora_{k}.weight"): v for k, v in arrays.items()})
    return fmt


def check_case(path, smap) -> str:
    """'refused: ...' or 'loaded'; anything but a typed refusal or a correct adapter fails."""
    try:
        adapter = load_adapter(path)
    except AdapterSourceError as exc:
        assert str(exc) and "\n" not in str(exc), repr(exc)
        return f"refused: {exc}"
    assert isinstance(adapter.name, str) and isinstance(adapter.version, str)
    assert isinstance(adapter.sequence, int) and not isinstance(adapter.sequence, bool) and adapter.sequence >= 0
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in adapter.tags.items())
    for layer, target in adapter.targets.items():
        assert isinstance(target, Lora), layer
        assert target.a.dtype == target.b.dtype == np.float64
        assert np.isfinite(target.a).all() and np.isfinite(target.b).all() and np.isfinite(target.scaling)
        assert target.a.ndim == target.b.ndim == 2 and target.a.shape[0] == target.b.shape[1] >= 1
    try:
        data, report = pack(adapter, smap, KEY)
    except PackError as exc:
        assert "\n" not in str(exc), repr(exc)
        return f"pack refused: {exc}"
    assert len(data) == report.bytes and set(report.layers) == set(adapter.targets)
    return "loaded"


def _selected() -> list[list[tuple[str, str, str, Any]]]:
    rng = random.Random(20261201)
    singles = [[c] for c in CASES]
    if not FULL:
        return rng.sample(singles, 40)
    pairs = [list(p) for p in itertools.combinations(CASES, 2) if p[0][1] == p[1][1] and p[0][2] != p[1][2]]
    return singles + rng.sample(pairs, 300)


SELECTED = _selected()


@pytest.fixture(scope="module")
def smap():
    return example_bundle("mlp").smap


@pytest.mark.parametrize("changes", SELECTED, ids=[" + ".join(f"{c[1]}:{c[2]}={c[3]!r}" for c in ch) for ch in SELECTED])
def test_hostile_adapter_directory_is_refused_by_type_or_loads_correctly(tmp_path, smap, changes) -> None:
    build_case(tmp_path / "adapter", changes)
    check_case(tmp_path / "adapter", smap)


def test_the_known_hostile_cases_are_refused(tmp_path, smap) -> None:
    """Values that must never load (the regressions this sweep was written for), in both formats."""
    must_refuse = [("config", "tinyswap", "targets.fc2.rank", v) for v in ("four", 0, -4, True)] + \
        [("config", "tinyswap", "tags", ["ab"]), ("config", "peft", "lora_alpha", NAN),
         ("config", "peft", "rank_pattern", ["fc2"]), ("config", "peft", "alpha_pattern", {"fc2": "x"})] + \
        [("array", fmt, "A", ch) for fmt in ("tinyswap", "peft") for ch in ("int32", "bool", "nan", "inf", "rank+1",
                                                                            "missing")]
    for i, case in enumerate(must_refuse):
        build_case(tmp_path / str(i), [case])
        assert check_case(tmp_path / str(i), smap).startswith("refused: "), case
    for j, (fmt, field) in enumerate([("tinyswap", "targets.fc2.alpha"), ("peft", "lora_alpha")]):
        build_case(tmp_path / f"huge{j}", [("config", fmt, field, 1e308)])
        assert check_case(tmp_path / f"huge{j}", smap).startswith("pack refused: layer 'fc2': the adapter's values "
                                                                  "overflow"), fmt
    build_case(tmp_path / "bf16", [("array", "peft", "A", "bfloat16")])
    assert check_case(tmp_path / "bf16", smap) == "loaded"
