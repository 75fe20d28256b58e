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
`...lora_B.weight` [out, r] (Conv2d: [out, r, 1, 1]). Module path -> layer: the path with the
`base_model.model.` prefix removed must equal a layer name; otherwise its last dotted component
is used (`encoder.fc1` -> `fc1`), or pass `layer_map={module path: layer}`. Scaling is
lora_alpha / r, or lora_alpha / sqrt(r) with `use_rslora`. Refused with a message naming the
field: other PEFT methods, DoRA, trained biases, `modules_to_save`, and weights for modules
that the config does not explain. Name, version and sequence come from `tinyswap.json` in the
directory if present, else from arguments to `load_adapter`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Union

import numpy as np

from tinyswap.export.errors import AdapterSourceError
from tinyswap.errors import InputFileError
from tinyswap.files import parse_json_bounded

PEFT_PREFIX = "base_model.model."
KINDS = ("lora", "bottleneck")


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
                 layer_map: dict[str, str] | None = None) -> FloatAdapter:
    """Read an adapter directory in either format (detected by its config file)."""
    path = Path(path)
    if (path / "adapter_config.json").exists():
        return load_peft(path, name=name, version=version, sequence=sequence, tags=tags, layer_map=layer_map)
    if (path / "adapter.json").exists():
        adapter = load_tinyswap(path)
        adapter.name = name or adapter.name
        adapter.version = version or adapter.version
        adapter.sequence = adapter.sequence if sequence is None else int(sequence)
        adapter.tags = {**adapter.tags, **(tags or {})}
        return adapter
    raise AdapterSourceError(f"{path} holds neither adapter.json (tinyswap) nor adapter_config.json (PEFT)")


def load_tinyswap(path: str | Path) -> FloatAdapter:
    path = Path(path)
    try:
        config = parse_json_bounded((path / "adapter.json").read_text(), "adapter.json", path=path / "adapter.json")
        with np.load(path / "adapter.npz", allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k], np.float64) for k in npz.files}
    except (OSError, ValueError, InputFileError) as exc:
        raise AdapterSourceError(f"cannot read adapter {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise AdapterSourceError(f"{path / 'adapter.json'} must hold a JSON object")
    for key in ("name", "version", "sequence"):
        if key not in config:
            raise AdapterSourceError(f"{path / 'adapter.json'} lacks {key!r}")
    kind = config.get("kind", "lora")
    if kind not in KINDS:
        raise AdapterSourceError(f"{path / 'adapter.json'}: kind {kind!r}; expected one of {KINDS}")
    targets: dict[str, Any] = {}
    for layer, spec in (config.get("targets") or {}).items():
        roles = ("A", "B") if kind == "lora" else ("D", "bias_D", "U", "bias_U")
        missing = [f"{layer}/{r}" for r in roles if f"{layer}/{r}" not in arrays]
        if missing:
            raise AdapterSourceError(f"adapter layer {layer!r}: adapter.npz lacks {missing}")
        if kind == "lora":
            a, b = arrays[f"{layer}/A"], arrays[f"{layer}/B"]
            try:
                rank, alpha = int(spec["rank"]), float(spec.get("alpha", spec["rank"]))
            except (KeyError, TypeError, ValueError):
                raise AdapterSourceError(f"adapter layer {layer!r}: targets entry needs an integer 'rank'") from None
            if a.ndim != 2 or b.ndim != 2 or a.shape[0] != rank or b.shape[1] != rank:
                raise AdapterSourceError(f"adapter layer {layer!r}: A {a.shape} and B {b.shape} do not have rank {rank}")
            targets[layer] = Lora(a, b, alpha / rank)
        else:
            d, bd, u, bu = (arrays[f"{layer}/{r}"] for r in roles)
            if d.ndim != 2 or u.shape != (d.shape[1], d.shape[0]) or bd.shape != (d.shape[0],) or bu.shape != (d.shape[1],):
                raise AdapterSourceError(f"adapter layer {layer!r}: D {d.shape}, bias_D {bd.shape}, U {u.shape}, "
                                         f"bias_U {bu.shape} are not [r, C], [r], [C, r], [C]")
            targets[layer] = Bottleneck(d, bd, u, bu)
    unexplained = sorted({k.split("/")[0] for k in arrays} - set(targets))
    if unexplained:
        raise AdapterSourceError(f"adapter.npz holds weights for layers {unexplained} that adapter.json does not target")
    return FloatAdapter(str(config["name"]), str(config["version"]), int(config["sequence"]),
                        dict(config.get("tags") or {}), targets, kind, config.get("accuracy"))


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's rank_pattern / alpha_pattern: a key matches a module path exactly or as a
    regular expression matching its end (PEFT matches `(.*\\.)?{key}$`)."""
    for key, value in patterns.items():
        if module == key or re.fullmatch(rf"(.*\.)?{key}", module):
            return value
    return default


def load_peft(path: str | Path, *, name: str | None = None, version: str | None = None, sequence: int | None = None,
              tags: dict[str, Any] | None = None, layer_map: dict[str, str] | None = None) -> FloatAdapter:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    try:
        config = parse_json_bounded((path / "adapter_config.json").read_text(), "adapter_config.json",
                                    path=path / "adapter_config.json")
    except (OSError, ValueError, InputFileError) as exc:
        raise AdapterSourceError(f"cannot read {path / 'adapter_config.json'}: {exc}") from exc
    if not isinstance(config, dict):
        raise AdapterSourceError(f"{path / 'adapter_config.json'} must hold a JSON object")
    if config.get("peft_type") != "LORA":
        raise AdapterSourceError(f"peft_type is {config.get('peft_type')!r}; only LORA adapters are imported")
    if config.get("use_dora"):
        raise AdapterSourceError("use_dora is true: DoRA's magnitude vector has no slot")
    if config.get("bias", "none") != "none":
        raise AdapterSourceError(f"bias is {config.get('bias')!r}: trained biases have no slot (expected 'none')")
    if config.get("modules_to_save"):
        raise AdapterSourceError(f"modules_to_save {config['modules_to_save']} replaces whole layers; a slot holds a LoRA")
    weights_file = path / "adapter_model.safetensors"
    try:
        tensors = {k: np.asarray(v, np.float64) for k, v in load_file(str(weights_file)).items()}
    except (OSError, SafetensorError, ValueError) as exc:
        raise AdapterSourceError(f"cannot read {weights_file}: {exc}") from exc
    meta = {}
    if (path / "tinyswap.json").exists():
        try:
            meta = parse_json_bounded((path / "tinyswap.json").read_text(), "tinyswap.json",
                                      path=path / "tinyswap.json")
        except (OSError, ValueError, InputFileError) as exc:
            raise AdapterSourceError(f"cannot read {path / 'tinyswap.json'}: {exc}") from exc
    modules: dict[str, dict[str, np.ndarray]] = {}
    pattern = re.compile(r"^(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$")
    for key, value in tensors.items():
        m = pattern.match(key)
        if not m:
            raise AdapterSourceError(f"{weights_file.name}: tensor {key!r} is not a LoRA A/B weight")
        modules.setdefault(m.group(1), {})[m.group(2)] = value
    r_default, alpha_default = config.get("r", 8), config.get("lora_alpha", 8)
    rslora = bool(config.get("use_rslora", False))
    targets: dict[str, Lora] = {}
    for module, pair in sorted(modules.items()):
        if set(pair) != {"A", "B"}:
            raise AdapterSourceError(f"module {module!r} has lora_{''.join(sorted(pair))} but not both A and B")
        a, b = pair["A"], pair["B"]
        if a.ndim == 4:  # Conv2d: [r, cin, kh, kw] -> TFLite order [r, kh, kw, cin], flattened
            a = np.transpose(a, (0, 2, 3, 1)).reshape(a.shape[0], -1)
        if b.ndim == 4:
            if b.shape[2:] != (1, 1):
                raise AdapterSourceError(f"module {module!r}: lora_B kernel {b.shape[2:]} is not 1x1")
            b = b[:, :, 0, 0]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise AdapterSourceError(f"module {module!r}: lora_A {pair['A'].shape} and lora_B {pair['B'].shape} "
                                     "do not form a LoRA pair")
        r = int(_pattern_value(config.get("rank_pattern") or {}, module, r_default))
        alpha = float(_pattern_value(config.get("alpha_pattern") or {}, module, alpha_default))
        if r != a.shape[0]:
            raise AdapterSourceError(f"module {module!r}: config rank {r} but lora_A has {a.shape[0]} rows")
        layer = (layer_map or {}).get(module) or module
        if layer_map is None and "." in layer:
            layer = layer.rsplit(".", 1)[1]
        if layer in targets:
            raise AdapterSourceError(f"modules map to layer {layer!r} twice; pass layer_map")
        targets[layer] = Lora(a, b, alpha / (math.sqrt(r) if rslora else r))
    base = config.get("base_model_name_or_path")
    return FloatAdapter(
        name=name or str(meta.get("name") or path.name), version=version or str(meta.get("version", "0.0.0")),
        sequence=int(sequence if sequence is not None else meta.get("sequence", 1)),
        tags=dict(tags if tags is not None else meta.get("tags") or {}), targets=dict(targets), kind="lora",
        accuracy=meta.get("accuracy"), source="peft", extra={"base_model_name_or_path": base},
    )


__all__ = ["AdapterSourceError", "Bottleneck", "FloatAdapter", "FloatLora", "Lora", "load_adapter", "load_peft",
           "load_tinyswap"]
