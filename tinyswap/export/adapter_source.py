"""Float adapters as users bring them: tinyswap's own directory format and PEFT LoRA directories.

tinyswap format, a directory with `adapter.json`

    {"name": "wake-word-de", "version": "1.2.0", "sequence": 7, "kind": "lora",
     "tags": {"task": "kws", "user": null, "tenant": "acme"}, "accuracy": 0.93,
     "targets": {"fc1": {"rank": 8, "alpha": 16}, "conv2": {"rank": 4, "alpha": 4}}}

and `adapter.npz`:
- kind "lora": `<layer>/A` [rank, K] and `<layer>/B` [out, rank]; K is the fan-in, for conv2d
  kh * kw * cin in TFLite filter order (kh, kw, cin). Effective delta (alpha / rank) * B @ A.
- kind "bottleneck": `<layer>/D` [rank, C], `<layer>/bias_D` [rank], `<layer>/U` [C, rank],
  `<layer>/bias_U` [C]; on the layer's output h: h + U relu(D h + bias_D) + bias_U.

PEFT LoRA format (what `peft`'s `save_pretrained` writes): `adapter_config.json` (`peft_type`
"LORA", `r`, `lora_alpha`, `target_modules`, optional `rank_pattern` / `alpha_pattern`,
`use_rslora`) and `adapter_model.safetensors` with, per adapted module,
`base_model.model.<module path>.lora_A.weight` [r, in] (Conv2d: [r, cin, kh, kw]) and
`...lora_B.weight` [out, r] (Conv2d: [out, r, 1, 1]; Conv1d: lora_A [r, cin, k], lora_B
[out, r, 1]). Module path -> layer: the path with the `base_model.model.` prefix removed, when it
is one of `layer_names` (a bundle exported from a PyTorch module names its layers by module
path); otherwise its last dotted component (`encoder.fc1` -> `fc1`), or pass
`layer_map={module path: layer}`. Scaling is
lora_alpha / r, or lora_alpha / sqrt(r) with `use_rslora`. Refused with a message naming the
field: other PEFT methods, DoRA, trained biases, `modules_to_save`, and weights for modules
that the config does not explain. Name, version and sequence come from `tinyswap.json` in the
directory if present, else from arguments to `load_adapter`.

Both readers check every field before using it and refuse with one `AdapterSourceError` line
naming the file, layer and field: ranks are positive integers (not booleans), alphas and pattern
values finite numbers, `rank_pattern` / `alpha_pattern` objects, `tags` an object of string ->
string (a null value leaves the tag unset), and weights float16, bfloat16 (safetensors only),
float32 or float64 arrays of finite values, of the shapes the declared rank implies. The
safetensors file is read from its documented layout with every offset bounded, because NumPy
has no bfloat16: BF16 tensors are widened to float32 exactly.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, NamedTuple, Union

import numpy as np

from tinyswap.export.errors import AdapterSourceError
from tinyswap.errors import InputFileError
from tinyswap.files import parse_json_bounded, read_bytes, read_json, read_npz
from tinyswap.package import MAX_SEQUENCE

PEFT_PREFIX = "base_model.model."
KINDS = ("lora", "bottleneck")

FLOAT_DTYPES = ("float16", "float32", "float64")  # bfloat16 comes only from safetensors (read below)
MAX_SAFETENSORS_HEADER = 100 << 20
# safetensors dtype -> (NumPy dtype of the stored bytes, bytes per value); BF16 is widened below.
_ST_FLOATS = {"F16": ("<f2", 2), "BF16": ("<u2", 2), "F32": ("<f4", 4), "F64": ("<f8", 8)}
_ST_OTHERS = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "U32": 4, "I32": 4,
              "U64": 8, "I64": 8}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rank(value: Any, where: str) -> int:
    if not _is_int(value) or value < 1:
        raise AdapterSourceError(f"{where} must be a positive integer, got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if not (_is_int(value) or isinstance(value, float)) or not math.isfinite(float(value)):
        raise AdapterSourceError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _float_array(array: np.ndarray, where: str) -> np.ndarray:
    """`array` as float64 if it is a float16/32/64 array of finite values; else a refusal naming `where`."""
    if array.dtype.name not in FLOAT_DTYPES:
        raise AdapterSourceError(f"{where} has dtype {array.dtype}; expected float16, bfloat16, float32 or float64")
    out = np.asarray(array, np.float64)
    bad = np.size(out) - int(np.count_nonzero(np.isfinite(out)))
    if bad:
        raise AdapterSourceError(f"{where} holds {bad} NaN or infinite values")
    return out


def _tags(value: Any, where: str) -> dict[str, str]:
    """An object of string -> string; a null value means the tag is unset (dropped)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AdapterSourceError(f"{where} must be an object of string -> string, got {type(value).__name__} {value!r}")
    for tag, v in value.items():
        if not isinstance(tag, str) or not (v is None or isinstance(v, str)):
            raise AdapterSourceError(f"{where}: tag {tag!r} must map to a string or null, got {v!r}")
    return {tag: v for tag, v in value.items() if v is not None}


def _identity(config: dict[str, Any], where: str, *, required: bool) -> None:
    """Types of name / version / sequence / accuracy in adapter.json or tinyswap.json."""
    for key in ("name", "version"):
        if key in config or required:
            if not isinstance(config.get(key), str) or not config[key]:
                raise AdapterSourceError(f"{where}: {key!r} must be a non-empty string, got {config.get(key)!r}")
    if "sequence" in config or required:
        seq = config.get("sequence")
        if not _is_int(seq) or not 0 <= seq <= MAX_SEQUENCE:
            raise AdapterSourceError(f"{where}: 'sequence' must be an integer in 0..{MAX_SEQUENCE}, got {seq!r}")
    if config.get("accuracy") is not None:
        _number(config["accuracy"], f"{where}: 'accuracy'")


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as float64, read from the format itself (an 8-byte
    little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, the data):
    NumPy has no bfloat16, so BF16 values (the upper 16 bits of a float32) are widened exactly.
    Every bound is checked; non-float dtypes are refused with the tensor named."""
    name = path.name
    try:
        raw = read_bytes(path, "safetensors file")
    except InputFileError as exc:
        raise AdapterSourceError(f"cannot read {path}: {exc.problem}") from exc
    if len(raw) < 8:
        raise AdapterSourceError(f"{name}: {len(raw)} bytes is too short for a safetensors file")
    n = int.from_bytes(raw[:8], "little")
    if n > MAX_SAFETENSORS_HEADER or 8 + n > len(raw):
        raise AdapterSourceError(f"{name}: header length {n} runs past the {len(raw)}-byte file "
                                 f"(limit {MAX_SAFETENSORS_HEADER})")
    try:
        header = parse_json_bounded(raw[8:8 + n], name, path=path)
    except InputFileError as exc:
        raise AdapterSourceError(f"cannot read {path}: {exc}") from exc
    if not isinstance(header, dict):
        raise AdapterSourceError(f"{name}: header must be a JSON object")
    data = memoryview(raw)[8 + n:]
    tensors: dict[str, np.ndarray] = {}
    for key, spec in header.items():
        if key == "__metadata__":
            continue
        where = f"{name}: tensor {key!r}"
        if not isinstance(spec, dict):
            raise AdapterSourceError(f"{where}: header entry must be an object")
        dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
        if dtype in _ST_OTHERS:
            raise AdapterSourceError(f"{where} has dtype {dtype}; expected F16, BF16, F32 or F64")
        if dtype not in _ST_FLOATS:
            raise AdapterSourceError(f"{where}: unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape) or len(shape) > 8:
            raise AdapterSourceError(f"{where}: shape {shape!r} is not a list of non-negative integers")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= len(data)):
            raise AdapterSourceError(f"{where}: data_offsets {offsets!r} are not inside the {len(data)}-byte data")
        stored, size = _ST_FLOATS[dtype]
        count = math.prod(shape)
        if offsets[1] - offsets[0] != count * size:
            raise AdapterSourceError(f"{where}: {offsets[1] - offsets[0]} bytes for shape {shape} of {dtype}")
        values = np.frombuffer(data[offsets[0]:offsets[1]], np.dtype(stored))
        if dtype == "BF16":
            values = (values.astype(np.uint32) << 16).view(np.float32)
        tensors[key] = _float_array(values.reshape(shape), where)
    return tensors



class Lora(NamedTuple):
    a: np.ndarray  # [rank, K]
    b: np.ndarray  # [out, rank]
    scaling: float  # the delta is scaling * b @ a


class Bottleneck(NamedTuple):
    down: np.ndarray  # [rank, C]
    down_bias: np.ndarray  # [rank]
    up: np.ndarray  # [C, rank]
    up_bias: np.ndarray  # [C]


@dataclass
class FloatAdapter:
    name: str
    version: str
    sequence: int
    tags: dict[str, Any]
    targets: dict[str, Union[Lora, Bottleneck, tuple]]
    kind: str = "lora"
    accuracy: float | None = None
    source: str = "tinyswap"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AdapterSourceError(f"adapter kind {self.kind!r}; expected one of {KINDS}")
        if not self.targets:
            raise AdapterSourceError(f"adapter {self.name!r} targets no layer")
        wrap = Lora if self.kind == "lora" else Bottleneck
        self.targets = {layer: wrap(*t) for layer, t in self.targets.items()}


# The earlier name of the class, kept for callers that build LoRA adapters directly.
FloatLora = FloatAdapter


def load_adapter(path: str | Path, *, name: str | None = None, version: str | None = None,
                 sequence: int | None = None, tags: dict[str, Any] | None = None,
                 layer_map: dict[str, str] | None = None, layer_names: Collection[str] = ()) -> FloatAdapter:
    """Read an adapter directory in either format (detected by its config file)."""
    path = Path(path)
    if (path / "adapter_config.json").exists():
        return load_peft(path, name=name, version=version, sequence=sequence, tags=tags, layer_map=layer_map,
                         layer_names=layer_names)
    if (path / "adapter.json").exists():
        adapter = load_tinyswap(path)
        adapter.name = name or adapter.name
        adapter.version = version or adapter.version
        adapter.sequence = adapter.sequence if sequence is None else _sequence_arg(sequence)
        adapter.tags = {**adapter.tags, **_tags(tags, "tags")}
        return adapter
    raise AdapterSourceError(f"{path} holds neither adapter.json (tinyswap) nor adapter_config.json (PEFT)")


def _sequence_arg(sequence: Any) -> int:
    if not _is_int(sequence) or not 0 <= sequence <= MAX_SEQUENCE:
        raise AdapterSourceError(f"sequence must be an integer in 0..{MAX_SEQUENCE}, got {sequence!r}")
    return sequence


def load_tinyswap(path: str | Path) -> FloatAdapter:
    path = Path(path)
    cfg_file = path / "adapter.json"
    try:
        config = read_json(cfg_file, "adapter.json")
        raw = read_npz(path / "adapter.npz", "adapter.npz")
    except InputFileError as exc:
        raise AdapterSourceError(f"cannot read adapter {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise AdapterSourceError(f"{cfg_file} must hold a JSON object")
    for key in ("name", "version", "sequence"):
        if key not in config:
            raise AdapterSourceError(f"{cfg_file} lacks {key!r}")
    _identity(config, "adapter.json", required=True)
    kind = config.get("kind", "lora")
    if kind not in KINDS:
        raise AdapterSourceError(f"{cfg_file}: kind {kind!r}; expected one of {KINDS}")
    tags = _tags(config.get("tags"), "adapter.json: 'tags'")
    spec_targets = config.get("targets")
    if not isinstance(spec_targets, dict) or not spec_targets:
        raise AdapterSourceError(f"adapter.json: 'targets' must be a non-empty object of layer -> "
                                 f"{{rank, alpha}}, got {spec_targets!r}")
    arrays = {k: _float_array(v, f"adapter.npz: array {k!r}") for k, v in raw.items()}
    targets: dict[str, Any] = {}
    for layer, spec in spec_targets.items():
        where = f"adapter.json: layer {layer!r}"
        if not isinstance(spec, dict):
            raise AdapterSourceError(f"{where}: targets entry must be an object with 'rank', got {spec!r}")
        roles = ("A", "B") if kind == "lora" else ("D", "bias_D", "U", "bias_U")
        missing = [f"{layer}/{r}" for r in roles if f"{layer}/{r}" not in arrays]
        if missing:
            raise AdapterSourceError(f"adapter layer {layer!r}: adapter.npz lacks {missing}")
        if kind == "lora":
            a, b = arrays[f"{layer}/A"], arrays[f"{layer}/B"]
            if "rank" not in spec:
                raise AdapterSourceError(f"{where}: targets entry needs an integer 'rank'")
            rank = _rank(spec["rank"], f"{where}: 'rank'")
            alpha = _number(spec.get("alpha", rank), f"{where}: 'alpha'")
            if a.ndim != 2 or b.ndim != 2 or a.shape[0] != rank or b.shape[1] != rank:
                raise AdapterSourceError(f"adapter layer {layer!r}: A {a.shape} and B {b.shape} do not have rank {rank}")
            targets[layer] = Lora(a, b, alpha / rank)
        else:
            d, bd, u, bu = (arrays[f"{layer}/{r}"] for r in roles)
            if d.ndim != 2 or u.shape != (d.shape[1], d.shape[0]) or bd.shape != (d.shape[0],) or bu.shape != (d.shape[1],):
                raise AdapterSourceError(f"adapter layer {layer!r}: D {d.shape}, bias_D {bd.shape}, U {u.shape}, "
                                         f"bias_U {bu.shape} are not [r, C], [r], [C, r], [C]")
            if "rank" in spec and _rank(spec["rank"], f"{where}: 'rank'") != d.shape[0]:
                raise AdapterSourceError(f"adapter layer {layer!r}: rank {spec['rank']} but D has {d.shape[0]} rows")
            targets[layer] = Bottleneck(d, bd, u, bu)
    unexplained = sorted({k.split("/")[0] for k in arrays} - set(targets))
    if unexplained:
        raise AdapterSourceError(f"adapter.npz holds weights for layers {unexplained} that adapter.json does not target")
    return FloatAdapter(config["name"], config["version"], config["sequence"], tags, targets, kind,
                        None if config.get("accuracy") is None else float(config["accuracy"]))


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's rank_pattern / alpha_pattern: a key matches a module path exactly or as a
    regular expression matching its end (PEFT matches `(.*\\.)?{key}$`)."""
    for key, value in patterns.items():
        try:
            if module == key or re.fullmatch(rf"(.*\.)?{key}", module):
                return value
        except re.error as exc:
            raise AdapterSourceError(f"adapter_config.json: pattern key {key!r} is not a regular expression: {exc}") from None
    return default


def _read_json_object(file: Path) -> dict[str, Any]:
    """A JSON object from an adapter directory's file (bounded), or one `AdapterSourceError`."""
    try:
        value = read_json(file, file.name)
    except InputFileError as exc:
        raise AdapterSourceError(f"cannot read {file}: {exc}") from exc
    if not isinstance(value, dict):
        raise AdapterSourceError(f"{file} must hold a JSON object")
    return value


def load_peft(path: str | Path, *, name: str | None = None, version: str | None = None, sequence: int | None = None,
              tags: dict[str, Any] | None = None, layer_map: dict[str, str] | None = None,
              layer_names: Collection[str] = ()) -> FloatAdapter:
    path = Path(path)
    config = _read_json_object(path / "adapter_config.json")
    if config.get("peft_type") != "LORA":
        raise AdapterSourceError(f"peft_type is {config.get('peft_type')!r}; only LORA adapters are imported")
    if config.get("use_dora"):
        raise AdapterSourceError("use_dora is true: DoRA's magnitude vector has no slot")
    if config.get("bias", "none") != "none":
        raise AdapterSourceError(f"bias is {config.get('bias')!r}: trained biases have no slot (expected 'none')")
    if config.get("modules_to_save"):
        raise AdapterSourceError(f"modules_to_save {config['modules_to_save']} replaces whole layers; a slot holds a LoRA")
    r_default = _rank(config.get("r", 8), "adapter_config.json: 'r'")
    alpha_default = _number(config.get("lora_alpha", 8), "adapter_config.json: 'lora_alpha'")
    patterns = {}
    for key in ("rank_pattern", "alpha_pattern"):
        value = {} if config.get(key) is None else config[key]
        if not isinstance(value, dict):
            raise AdapterSourceError(f"adapter_config.json: {key!r} must be an object of module -> number, got {value!r}")
        for module_key, v in value.items():
            if key == "rank_pattern":
                _rank(v, f"adapter_config.json: rank_pattern[{module_key!r}]")
            else:
                _number(v, f"adapter_config.json: alpha_pattern[{module_key!r}]")
        patterns[key] = value
    rslora = config.get("use_rslora", False)
    if rslora is not None and not isinstance(rslora, bool):
        raise AdapterSourceError(f"adapter_config.json: 'use_rslora' must be true or false, got {rslora!r}")
    weights_file = path / "adapter_model.safetensors"
    tensors = read_safetensors(weights_file)
    meta: Any = {}
    if (path / "tinyswap.json").exists():
        meta = _read_json_object(path / "tinyswap.json")
        _identity(meta, "tinyswap.json", required=False)
    modules: dict[str, dict[str, np.ndarray]] = {}
    pattern = re.compile(r"^(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$")
    for key, value in tensors.items():
        m = pattern.match(key)
        if not m:
            raise AdapterSourceError(f"{weights_file.name}: tensor {key!r} is not a LoRA A/B weight")
        modules.setdefault(m.group(1), {})[m.group(2)] = value
    targets: dict[str, Lora] = {}
    for module, pair in sorted(modules.items()):
        if set(pair) != {"A", "B"}:
            raise AdapterSourceError(f"module {module!r} has lora_{''.join(sorted(pair))} but not both A and B")
        a, b = pair["A"], pair["B"]
        if a.ndim == 4:  # Conv2d: [r, cin, kh, kw] -> TFLite order [r, kh, kw, cin], flattened
            a = np.transpose(a, (0, 2, 3, 1)).reshape(a.shape[0], -1)
        if a.ndim == 3:  # Conv1d: [r, cin, k] -> [r, k, cin], flattened (a 1 x k window)
            a = np.transpose(a, (0, 2, 1)).reshape(a.shape[0], -1)
        if b.ndim == 3 and b.shape[2] == 1:
            b = b[:, :, 0]
        if b.ndim == 4:
            if b.shape[2:] != (1, 1):
                raise AdapterSourceError(f"module {module!r}: lora_B kernel {b.shape[2:]} is not 1x1")
            b = b[:, :, 0, 0]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise AdapterSourceError(f"module {module!r}: lora_A {pair['A'].shape} and lora_B {pair['B'].shape} "
                                     "do not form a LoRA pair")
        r = _pattern_value(patterns["rank_pattern"], module, r_default)
        alpha = float(_pattern_value(patterns["alpha_pattern"], module, alpha_default))
        if r != a.shape[0]:
            raise AdapterSourceError(f"module {module!r}: config rank {r} but lora_A has {a.shape[0]} rows")
        layer = (layer_map or {}).get(module) or module
        if layer_map is None and "." in layer and layer not in layer_names:
            layer = layer.rsplit(".", 1)[1]
        if layer in targets:
            raise AdapterSourceError(f"modules map to layer {layer!r} twice; pass layer_map")
        targets[layer] = Lora(a, b, alpha / (math.sqrt(r) if rslora else r))
    if not targets:
        raise AdapterSourceError(f"{weights_file.name} holds no LoRA weights")
    base = config.get("base_model_name_or_path")
    accuracy = meta.get("accuracy")
    return FloatAdapter(
        name=name or meta.get("name") or path.name, version=version or meta.get("version", "0.0.0"),
        sequence=_sequence_arg(sequence) if sequence is not None else meta.get("sequence", 1),
        tags=_tags(tags, "tags") if tags is not None else _tags(meta.get("tags"), "tinyswap.json: 'tags'"),
        targets=dict(targets), kind="lora", accuracy=None if accuracy is None else float(accuracy), source="peft",
        extra={"base_model_name_or_path": base},
    )


__all__ = ["AdapterSourceError", "Bottleneck", "FloatAdapter", "FloatLora", "Lora", "load_adapter", "load_peft",
           "load_tinyswap", "read_safetensors"]
