"""The slot map (`slotmap.json`) as the runtime reads it: typed, validated against the model.

The compiler writes the slot map next to `model.tflite`; the device trusts neither blindly.
`SlotMap.from_json` checks every field the swap manager relies on and `check_model` checks the
ranges against the model bytes: every tensor inside its slot's range, inside the file, and the
base-model digest (SHA-256 of the model with every slot range zeroed) equal to the recorded one.
Every failure is a `SlotMapError` naming the field.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyswap.errors import TinySwapError

SLOTMAP_FORMAT = "tinyswap-slotmap"
SLOTMAP_VERSION = 1
_DTYPES = {"int8": 1, "int32": 4}


class SlotMapError(TinySwapError):
    """`slotmap.json` is malformed or does not describe the model it is paired with."""


@dataclass(frozen=True)
class SlotTensorInfo:
    slot: int
    layer: str
    kind: str  # "lora" | "bottleneck"
    role: str  # A, B, D, U, bias_A, bias_B, bias_D, bias_U
    tensor_index: int
    offset: int  # absolute, in model.tflite
    length: int
    shape: tuple[int, ...]
    dtype: str
    scales: tuple[float, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.layer, self.role)


@dataclass(frozen=True)
class SlotInfo:
    slot: int
    offset: int
    length: int
    tensors: tuple[SlotTensorInfo, ...]
    frame: tuple[tuple[int, bytes], ...] | None = None  # base bytes inside the range (see `template`)

    def template(self) -> bytes | None:
        """The range as the base model has it with every slot tensor zero: the flatbuffer
        length prefixes (and spacer) that live between the slot's tensors. None when the slot
        map predates the `frame` field."""
        if self.frame is None:
            return None
        out = bytearray(self.length)
        for rel, data in self.frame:
            out[rel : rel + len(data)] = data
        return bytes(out)


@dataclass(frozen=True)
class GateInfo:
    slot: int
    name: str
    input_index: int  # position among the graph inputs
    scale: float
    zero_point: int
    gate_max: float

    def quantize(self, weight: float) -> int:
        """The int8 gate value for a real weight in [0, gate_max] (0.0 is exactly the zero point)."""
        return int(np.clip(round(weight / self.scale) + self.zero_point, -128, 127))


@dataclass(frozen=True)
class SlotMap:
    model_bytes: int
    base_digest: str
    gate_max: float
    slots: tuple[SlotInfo, ...]
    gates: tuple[GateInfo, ...]
    raw: dict[str, Any]

    @property
    def num_slots(self) -> int:
        return len(self.slots)

    @property
    def layout(self) -> tuple[SlotTensorInfo, ...]:
        """The tensors of one slot (every slot has the same layout): what a package must carry."""
        return self.slots[0].tensors

    def layout_dicts(self) -> list[dict[str, Any]]:
        """The layout as `verify_package` reads it."""
        return [{"layer": t.layer, "role": t.role, "shape": list(t.shape), "dtype": t.dtype} for t in self.layout]

    @classmethod
    def load(cls, path: str | Path) -> "SlotMap":
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SlotMapError(f"cannot read slot map {path}: {exc}") from None
        return cls.from_json(raw)

    @classmethod
    def from_json(cls, raw: Any) -> "SlotMap":
        if not isinstance(raw, dict):
            raise SlotMapError("a slot map must be a JSON object")
        if raw.get("format") != SLOTMAP_FORMAT or raw.get("version") != SLOTMAP_VERSION:
            raise SlotMapError(f"format {raw.get('format')!r} version {raw.get('version')!r}: "
                               f"expected {SLOTMAP_FORMAT!r} version {SLOTMAP_VERSION}")
        model_bytes = _int(raw, "model_bytes", 1)
        digest = raw.get("base_digest")
        if not isinstance(digest, str) or len(digest) != 64:
            raise SlotMapError(f"base_digest must be 64 hex digits, got {digest!r}")
        gate_max = raw.get("gate_max")
        if not isinstance(gate_max, (int, float)) or not gate_max > 0:
            raise SlotMapError(f"gate_max must be a positive number, got {gate_max!r}")
        slots_raw, gates_raw = raw.get("slots"), raw.get("gates")
        if not isinstance(slots_raw, list) or len(slots_raw) < 2:
            raise SlotMapError(f"slots must list at least 2 slots, got {slots_raw!r:.80}")
        if not isinstance(gates_raw, list) or len(gates_raw) != len(slots_raw):
            raise SlotMapError(f"gates must list one gate per slot ({len(slots_raw)})")
        slots = tuple(_slot(s, i, model_bytes) for i, s in enumerate(slots_raw))
        ranges = sorted((s.offset, s.offset + s.length, s.slot) for s in slots)
        for (_, end, a), (start, _, b) in zip(ranges, ranges[1:]):
            if start < end:
                raise SlotMapError(f"slots {a} and {b} overlap at byte {start}")
        first = [(t.layer, t.kind, t.role, t.shape, t.dtype) for t in slots[0].tensors]
        for s in slots[1:]:
            if [(t.layer, t.kind, t.role, t.shape, t.dtype) for t in s.tensors] != first:
                raise SlotMapError(f"slot {s.slot} has a different tensor layout than slot 0")
        gates = []
        for i, g in enumerate(gates_raw):
            if not isinstance(g, dict):
                raise SlotMapError(f"gates[{i}] must be an object")
            scale = g.get("scale")
            if not isinstance(scale, (int, float)) or not scale > 0:
                raise SlotMapError(f"gates[{i}].scale must be positive, got {scale!r}")
            gates.append(GateInfo(_int(g, "slot", 0), str(g.get("name")), _int(g, "input_index", 1), float(scale),
                                  _int(g, "zero_point", -128, 127), float(gate_max)))
        if [g.slot for g in gates] != list(range(len(slots))):
            raise SlotMapError("gates must be listed in slot order 0..S-1")
        return cls(model_bytes, digest, float(gate_max), slots, tuple(gates), raw)

    def check_model(self, model: bytes | bytearray | memoryview) -> None:
        """The model is the one this map describes: size, and base digest with slots zeroed."""
        if len(model) != self.model_bytes:
            raise SlotMapError(f"model has {len(model)} bytes, the slot map describes {self.model_bytes}")
        if self.digest_of(model) != self.base_digest:
            raise SlotMapError(f"base-model digest mismatch: the model is not the one this slot map was made for "
                               f"(expected {self.base_digest[:16]}...)")

    def damaged_frames(self, model: bytes | bytearray | memoryview) -> list[int]:
        """Slots whose base bytes inside the range (length prefixes, spacer) differ from the
        recorded frame, e.g. after an interrupted slot write. The interpreter cannot read such
        a model until the slot is rewritten. Slot maps without frames report nothing."""
        damaged = []
        view = memoryview(model)
        for s in self.slots:
            template = s.template()
            if template is None:
                continue
            data = bytearray(view[s.offset : s.offset + s.length])
            for t in s.tensors:
                data[t.offset - s.offset : t.offset - s.offset + t.length] = bytes(t.length)
            if data != template:
                damaged.append(s.slot)
        return damaged

    def digest_of(self, model: bytes | bytearray | memoryview) -> str:
        """SHA-256 of the model with every slot range zeroed (the compiler's definition)."""
        h = hashlib.sha256()
        pos = 0
        view = memoryview(model)
        for s in sorted(self.slots, key=lambda s: s.offset):
            h.update(view[pos : s.offset])
            h.update(bytes(s.length))
            pos = s.offset + s.length
        h.update(view[pos:])
        return h.hexdigest()


def _int(raw: dict, key: str, lo: int, hi: int | None = None) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or (hi is not None and value > hi):
        raise SlotMapError(f"{key} must be an integer >= {lo}{'' if hi is None else f' and <= {hi}'}, got {value!r}")
    return value


def _slot(raw: Any, index: int, model_bytes: int) -> SlotInfo:
    if not isinstance(raw, dict):
        raise SlotMapError(f"slots[{index}] must be an object")
    slot, offset, length = _int(raw, "slot", index, index), _int(raw, "offset", 0), _int(raw, "length", 1)
    if offset + length > model_bytes:
        raise SlotMapError(f"slot {slot}: range [{offset}, {offset + length}) runs past the {model_bytes}-byte model")
    tensors_raw = raw.get("tensors")
    if not isinstance(tensors_raw, list) or not tensors_raw:
        raise SlotMapError(f"slot {slot}: tensors must be a non-empty list")
    tensors = []
    for j, t in enumerate(tensors_raw):
        where = f"slot {slot} tensor {j}"
        if not isinstance(t, dict):
            raise SlotMapError(f"{where} must be an object")
        dtype = t.get("dtype")
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise SlotMapError(f"{where}: dtype {dtype!r} is not int8 or int32")
        shape = t.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise SlotMapError(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
        scales = t.get("scales")
        if not isinstance(scales, list) or not scales or not all(isinstance(v, (int, float)) and v > 0 for v in scales):
            raise SlotMapError(f"{where}: scales must be a non-empty list of positive numbers")
        info = SlotTensorInfo(_int(t, "slot", slot, slot), str(t.get("layer")), str(t.get("kind")), str(t.get("role")),
                              _int(t, "tensor_index", 0), _int(t, "offset", 0), _int(t, "length", 0), tuple(shape),
                              dtype, tuple(float(v) for v in scales))
        if info.kind not in ("lora", "bottleneck"):
            raise SlotMapError(f"{where}: kind {info.kind!r} is not lora or bottleneck")
        if info.length != _DTYPES[dtype] * math.prod(shape):
            raise SlotMapError(f"{where}: {info.length} bytes do not hold {dtype} {tuple(shape)}")
        if info.offset < offset or info.offset + info.length > offset + length:
            raise SlotMapError(f"{where} ({info.layer}/{info.role}): bytes [{info.offset}, {info.offset + info.length}) "
                               f"lie outside the slot's range [{offset}, {offset + length})")
        tensors.append(info)
    spans = sorted((t.offset, t.offset + t.length) for t in tensors)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        if start < end:
            raise SlotMapError(f"slot {slot}: two tensors overlap at byte {start}")
    frame = None
    if "frame" in raw:
        frame_raw = raw["frame"]
        if not isinstance(frame_raw, list):
            raise SlotMapError(f"slot {slot}: frame must be a list of [offset, hex] runs")
        runs = []
        for k, run in enumerate(frame_raw):
            try:
                rel, data = int(run[0]), bytes.fromhex(run[1])
            except (TypeError, ValueError, IndexError, KeyError):
                raise SlotMapError(f"slot {slot}: frame[{k}] is not an [offset, hex] pair") from None
            if isinstance(run[0], bool) or rel < 0 or rel + len(data) > length:
                raise SlotMapError(f"slot {slot}: frame[{k}] lies outside the slot's {length}-byte range")
            if any(offset + rel < e and s < offset + rel + len(data) for s, e in spans):
                raise SlotMapError(f"slot {slot}: frame[{k}] overlaps a slot tensor")
            runs.append((rel, data))
        frame = tuple(runs)
    return SlotInfo(slot, offset, length, tuple(tensors), frame)


__all__ = ["GateInfo", "SlotInfo", "SlotMap", "SlotMapError", "SlotTensorInfo"]
