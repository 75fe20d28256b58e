"""One call from any model a user has to a bundle with adapter slots: `export_model`.

Sources, told apart by type (TensorFlow and torch are imported only when the source is theirs):

- a `ModelSpec`, or a spec `.json` path (weights: the `.npz` beside it, or `weights=`);
- a Keras model object, or a `.keras` / `.h5` path (needs the `training` extra); plan layer names
  are Keras layer names (`tinyswap.export.keras_import`);
- a PyTorch `nn.Module` with `example_input` (or the first row of `calibration`), in the module's
  own layout (NCHW); plan layer names are module paths (`tinyswap.export.torch_import`);
- an int8 `.tflite` (bytes or path): slots are injected into the file as it is
  (`tinyswap.export.inject`); plan layer names are output tensor names or `#<operator index>`.

Specs, Keras and PyTorch models are quantized on `calibration` (float32, batch first, in the
source's own layout) and compiled by `build_bundle`. `slot_alignment` raises the plan's slot
alignment to a flash sector size (the command line's `--target PROFILE` passes the profile's).
A Keras model with LoRA enabled is exported with its frozen base kernels, its LoRA written to
`lora_out` as a tinyswap adapter directory that `tinyswap pack` takes; without `lora_out` it is
refused.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from tinyswap.export.adapter_source import Lora
from tinyswap.export.build import BuiltBundle, build_bundle, bundle_from_compiled
from tinyswap.export.bundle import check_section
from tinyswap.export.errors import KerasImportError, ModelSourceError, TorchImportError
from tinyswap.export.inject import inject_slots
from tinyswap.export.slot_plan import SlotPlan
from tinyswap.export.spec import ModelSpec, load_spec
from tinyswap.files import read_bytes, read_npy

KERAS_SUFFIXES = (".keras", ".h5")


def _is_keras_model(obj: Any) -> bool:
    return any(c.__module__.split(".")[0] in ("keras", "tf_keras") and c.__name__ in ("Model", "Functional",
                                                                                       "Sequential")
               for c in type(obj).__mro__)


def _is_torch_module(obj: Any) -> bool:
    return any(c.__module__ == "torch.nn.modules.module" and c.__name__ == "Module" for c in type(obj).__mro__)


def _plan(plan: SlotPlan | str | Path | None, slot_alignment: int | None) -> SlotPlan | None:
    if plan is not None and not isinstance(plan, SlotPlan):
        plan = SlotPlan.load(plan)
    if plan is not None and slot_alignment is not None and slot_alignment > plan.alignment:
        plan = dataclasses.replace(plan, alignment=slot_alignment)  # validated again on construction
    return plan


def _calibration(calibration: np.ndarray | str | Path | None, what: str) -> np.ndarray:
    if calibration is None:
        raise ModelSourceError(f"{what} needs calibration data to quantize its activations: pass calibration= "
                               "(tinyswap export --calibration X.npy), float32 rows shaped like the model input, "
                               "batch first")
    if isinstance(calibration, (str, Path)):
        return read_npy(calibration, "calibration data")
    return np.asarray(calibration, np.float32)


def _load_keras(path: Path) -> Any:
    try:
        import keras
    except ImportError:
        raise ModelSourceError(f"{path}: reading a Keras file needs Keras: pip install 'tinyswap[training]' "
                               "(TensorFlow), or keras with torch and KERAS_BACKEND=torch") from None
    if not path.is_file():
        raise ModelSourceError(f"{path}: no such Keras file")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for unreadable files
        raise ModelSourceError(f"{path}: Keras cannot load it ({type(exc).__name__}: {exc})") from None


def write_lora_adapter(lora: dict[str, Lora], out_dir: str | Path, name: str) -> Path:
    """The LoRA factors as a tinyswap adapter directory (`adapter.json` + `adapter.npz`) for `tinyswap pack`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    targets = {layer: {"rank": int(f.a.shape[0]), "alpha": float(f.scaling * f.a.shape[0])} for layer, f in lora.items()}
    arrays = {}
    for layer, f in lora.items():
        arrays[f"{layer}/A"] = np.asarray(f.a, np.float32)
        arrays[f"{layer}/B"] = np.asarray(f.b, np.float32)
    np.savez(out / "adapter.npz", **arrays)
    config = {"name": name, "version": "1.0.0", "sequence": 1, "kind": "lora", "tags": {}, "targets": targets}
    (out / "adapter.json").write_text(json.dumps(config, indent=2) + "\n")
    return out


def _lora_targets(plan: SlotPlan | None) -> frozenset[str]:
    return frozenset(t.layer for t in (plan.targets if plan else ()) if t.kind == "lora")


def _check_lora_plan(lora: dict[str, Lora], plan: SlotPlan | None) -> None:
    missing = sorted(set(lora) - _lora_targets(plan))
    if missing:
        raise KerasImportError(f"layers {missing} have LoRA enabled but the slot plan gives them no LoRA slot; add "
                               "them to the plan's targets (kind 'lora'), or merge the LoRA into the kernels first")


def export_model(source: Any, plan: SlotPlan | str | Path | None, *, calibration: np.ndarray | str | Path | None = None,
                 out: str | Path | None = None, example_input: Any = None, weights: str | Path | None = None,
                 slot_alignment: int | None = None, lora_out: str | Path | None = None,
                 keys_dir: str | Path | None = None, section: str | None = None,
                 section_align: int | None = None) -> BuiltBundle:
    """Compile `source` with `plan`'s slots into a bundle (written to `out` when given)."""
    check_section(section, section_align)  # before reading or compiling anything
    plan = _plan(plan, slot_alignment)
    if isinstance(source, (bytes, bytearray, memoryview)) or (
            isinstance(source, (str, Path)) and Path(source).suffix.lower() == ".tflite"):
        return _export_tflite(source, plan, calibration, out, section, section_align)
    lora: dict[str, Lora] = {}
    if isinstance(source, ModelSpec):
        spec = source
        cal = _calibration(calibration, f"model {spec.name!r}")
    elif isinstance(source, (str, Path)):
        path = Path(source)
        suffix = path.suffix.lower()
        if suffix in KERAS_SUFFIXES:
            return export_model(_load_keras(path), plan, calibration=calibration, out=out, lora_out=lora_out,
                                keys_dir=keys_dir, section=section, section_align=section_align)
        spec = load_spec(path, weights)  # any other file is read as a JSON spec
        if calibration is None:
            calibration = path.with_suffix(".calibration.npy")
            if not calibration.exists():
                raise ModelSourceError(f"no calibration data: pass --calibration FILE.npy (float32, batch first); "
                                       f"{calibration} does not exist")
        cal = _calibration(calibration, f"spec {path}")
    elif _is_keras_model(source):
        from tinyswap.export.keras_import import import_keras

        imported = import_keras(source, keep_unfolded=_lora_targets(plan))
        spec, lora = imported.spec, imported.lora
        cal = _calibration(calibration, f"Keras model {source.name!r}")
        if lora:
            if lora_out is None:
                raise KerasImportError(
                    f"layers {sorted(lora)} have LoRA enabled; exporting them with the frozen base kernel alone "
                    "would drop the LoRA. Pass lora_out=DIR (tinyswap export --lora-out DIR) to write it as an "
                    "adapter directory for `tinyswap pack`, or merge it into the kernels first")
            _check_lora_plan(lora, plan)
    elif _is_torch_module(source):
        from tinyswap.export.torch_import import import_torch

        import torch

        cal_raw = _calibration(calibration, f"PyTorch module {type(source).__name__}")
        if example_input is None:
            example_input = torch.from_numpy(np.ascontiguousarray(cal_raw[:1]))
        imported_t = import_torch(source, example_input, keep_unfolded=_lora_targets(plan))
        spec = imported_t.spec
        cal = imported_t.to_spec_layout(cal_raw)
        if plan is not None:
            permuted = sorted(t.layer for t in plan.targets if t.kind == "lora" and t.layer in imported_t.permuted_inputs)
            if permuted:
                raise TorchImportError(
                    f"LoRA slots on {permuted}: these Linear layers read a flattened channels-first feature map, whose "
                    "values the spec orders (h, w, c), not PyTorch's (c, h, w), so a PEFT LoRA's columns would not "
                    "line up; target another layer, or pool the map (AdaptiveAvgPool2d(1)) before the Linear")
    else:
        raise ModelSourceError(f"cannot export a {type(source).__name__}: give a ModelSpec, a spec .json path, a Keras "
                               "model or .keras/.h5 path, a torch.nn.Module with example_input, or int8 .tflite bytes")
    built = build_bundle(spec, plan, cal, out, keys_dir=keys_dir, section=section, section_align=section_align)
    if lora:
        assert lora_out is not None
        write_lora_adapter(lora, lora_out, f"{spec.name}-lora")
    return built


def _export_tflite(source: Any, plan: SlotPlan | None, calibration: Any, out: str | Path | None,
                   section: str | None, section_align: int | None) -> BuiltBundle:
    if plan is None:
        raise ModelSourceError("an int8 .tflite needs a slot plan: it already is a model without slots")
    data = bytes(source) if not isinstance(source, (str, Path)) else read_bytes(source, "model")
    cal = None if calibration is None else _calibration(calibration, "the .tflite model")
    name = Path(source).stem if isinstance(source, (str, Path)) else None  # else the file's description
    compiled = inject_slots(data, plan, cal, name=name)
    return bundle_from_compiled(compiled, out, section=section, section_align=section_align)


__all__ = ["KERAS_SUFFIXES", "export_model", "write_lora_adapter"]
