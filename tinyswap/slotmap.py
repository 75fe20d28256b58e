"""The slot map (`slotmap.json`): its format, the writer and the validating reader, in one place.

The compiler places every slot tensor and hands the writer typed records (`SlotTensorInfo`,
`GateInfo`); `build_slotmap` derives the slot ranges, the base digest and each slot's frame
from the model bytes. The device trusts neither the file nor the model blindly:
`SlotMap.from_json` checks every field the swap manager relies on and `check_model` checks the
map against the model file: the size, the base-model digest (SHA-256 of the model with every
slot range zeroed, `base_digest`, the one definition both sides use), then, with the file parsed
once by `tinyswap.reader`, every slot tensor (index, data offset and length, shape, dtype,
quantization), every range (only its own buffers, their length prefixes and padding), every
frame and every gate (a distinct int8 [batch, 1] graph input with the recorded scale and zero
point). The digest zeroes the ranges, so it alone cannot tell a map that points adapter bytes
at the wrong place. Every failure is a `SlotMapError` naming the slot, tensor or gate.

The frame of a slot is the base model's own bytes inside its range (flatbuffer length prefixes
of the slot's vectors, the spacer's). The base digest zeroes whole ranges, so the frame is the
only trusted record of those bytes: it is required, and it is the only source a writer may use
for them (the image may hold a half-written range).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import struct
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from tinyswap.errors import ModelError, TinySwapError
from tinyswap.reader import BufferDef, ModelDef, read_model
from tinyswap.schema import TensorType
from tinyswap.errors import InputFileError
from tinyswap.files import read_json

SLOTMAP_FORMAT = "tinyswap-slotmap"
SLOTMAP_VERSION = 1
MODEL_FILE = "model.tflite"
DEFAULT_ALIGNMENT = 16
_DTYPE_BYTES = {"int8": 1, "int32": 4}
_TENSOR_TYPES = {"int8": TensorType.INT8, "int32": TensorType.INT32}
_PREFIX = struct.Struct("<I")  # a flatbuffer vector's length prefix


class SlotMapError(TinySwapError):
    """`slotmap.json` is malformed or does not describe the model it is paired with."""


class AdapterKind(StrEnum):
    """The adapter method a slot layer was compiled for (member names equal their values, so a
    member and its string compare and hash alike)."""

    lora = "lora"
    bottleneck = "bottleneck"


class TensorRole(StrEnum):
    """What a slot tensor is within its layer's adapter (names equal values, as above)."""

    A = "A"
    B = "B"
    D = "D"
    U = "U"
    bias_A = "bias_A"
    bias_B = "bias_B"
    bias_D = "bias_D"
    bias_U = "bias_U"


@dataclass(frozen=True)
class SlotTensorInfo:
    """One slot tensor where the model file holds it (the writer's input, the reader's output)."""

    slot: int
    layer: str
    kind: AdapterKind
    role: str  # a TensorRole value
    tensor_index: int
    offset: int  # absolute, in model.tflite
    length: int
    shape: tuple[int, ...]
    dtype: str
    scales: tuple[float, ...]
    name: str = ""
    zero_points: tuple[int, ...] = ()
    quantized_dimension: int = 0
    # The subgraph holding the tensor: 0 (the primary one), or a conditional slot's IF branch.
    subgraph: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.layer, self.role)

    def to_json(self) -> dict[str, Any]:
        raw = {"slot": self.slot, "layer": self.layer, "kind": str(self.kind), "role": str(self.role),
               "tensor_index": self.tensor_index, "name": self.name, "offset": self.offset, "length": self.length,
               "shape": list(self.shape), "dtype": self.dtype, "scales": list(self.scales),
               "zero_points": list(self.zero_points), "quantized_dimension": self.quantized_dimension}
        if self.subgraph:  # written only when not the primary one: older slot maps stay as they were
            raw["subgraph"] = self.subgraph
        return raw


#: A frame as [relative offset, bytes] runs of the base model's non-zero bytes inside a range.
Frame = tuple[tuple[int, bytes], ...]


@dataclass(frozen=True)
class SlotInfo:
    slot: int
    offset: int
    length: int
    tensors: tuple[SlotTensorInfo, ...]
    frame: Frame  # base bytes inside the range (see `template`); required

    def template(self) -> bytes:
        """The range as the base model has it with every slot tensor zero: the flatbuffer
        length prefixes (and spacer) that live between the slot's tensors. The only source of
        a slot's own base bytes."""
        out = bytearray(self.length)
        for rel, data in self.frame:
            out[rel : rel + len(data)] = data
        return bytes(out)

    def tensor_spans(self) -> tuple[tuple[int, int], ...]:
        """(start, length) of each slot tensor, relative to the range, in layout order."""
        return tuple((t.offset - self.offset, t.length) for t in self.tensors)

    def to_json(self) -> dict[str, Any]:
        return {"slot": self.slot, "offset": self.offset, "length": self.length,
                "tensors": [t.to_json() for t in self.tensors],
                "frame": [[rel, data.hex()] for rel, data in self.frame]}


@dataclass(frozen=True)
class GateInfo:
    slot: int
    name: str
    input_index: int  # position among the graph inputs
    scale: float
    zero_point: int
    gate_max: float
    tensor_index: int = -1  # -1: not recorded (only the writer needs it)
    shape: tuple[int, ...] = ()

    def quantize(self, weight: float) -> int:
        """The int8 gate value for a real weight in [0, gate_max] (0.0 is exactly the zero point)."""
        return int(np.clip(round(weight / self.scale) + self.zero_point, -128, 127))

    def to_json(self) -> dict[str, Any]:
        return {"slot": self.slot, "name": self.name, "tensor_index": self.tensor_index,
                "input_index": self.input_index, "shape": list(self.shape), "dtype": "int8", "scale": self.scale,
                "zero_point": self.zero_point, "range": [0.0, self.gate_max]}


@dataclass(frozen=True)
class SlotMap:
    model_bytes: int
    base_digest: str
    gate_max: float
    slots: tuple[SlotInfo, ...]
    gates: tuple[GateInfo, ...]
    alignment: int = DEFAULT_ALIGNMENT
    headroom: bool = False
    plan: Mapping[str, Any] | None = None  # the slot plan as the compiler's JSON (opaque here)
    model: str = MODEL_FILE

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

    # -- the JSON boundary ---------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The `slotmap.json` object (a model without slots keeps the short slot-free form)."""
        if not self.slots:
            return {"format": SLOTMAP_FORMAT, "version": SLOTMAP_VERSION, "model": self.model,
                    "model_bytes": self.model_bytes, "num_slots": 0, "slots": [], "gates": [],
                    "base_digest": self.base_digest}
        return {
            "format": SLOTMAP_FORMAT, "version": SLOTMAP_VERSION, "model": self.model,
            "model_bytes": self.model_bytes, "base_digest": self.base_digest, "num_slots": self.num_slots,
            "alignment": self.alignment, "headroom": self.headroom, "gate_max": self.gate_max,
            "plan": None if self.plan is None else dict(self.plan),
            "gates": [g.to_json() for g in self.gates], "slots": [s.to_json() for s in self.slots],
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "SlotMap":
        try:
            raw = read_json(path, "slot map")
        except InputFileError as exc:
            raise SlotMapError(f"cannot read slot map {path}: {exc}") from None
        return cls.from_json(raw)

    @classmethod
    def from_json(cls, raw: Any) -> "SlotMap":
        if not isinstance(raw, dict):
            raise SlotMapError("a slot map must be a JSON object")
        if raw.get("format") != SLOTMAP_FORMAT or raw.get("version") != SLOTMAP_VERSION:
            raise SlotMapError(f"format {raw.get('format')!r} version {raw.get('version')!r}: "
                               f"expected {SLOTMAP_FORMAT!r} version {SLOTMAP_VERSION}")
        if raw.get("slots") == [] and raw.get("num_slots") == 0:
            raise SlotMapError("slots: the bundle was compiled without slots (at least 2 are needed to swap adapters)")
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
        gates = tuple(_gate(g, i, float(gate_max)) for i, g in enumerate(gates_raw))
        if [g.slot for g in gates] != list(range(len(slots))):
            raise SlotMapError("gates must be listed in slot order 0..S-1")
        alignment = raw.get("alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment < 1:
            raise SlotMapError(f"alignment must be a positive integer, got {alignment!r}")
        plan = raw.get("plan")
        if plan is not None and not isinstance(plan, dict):
            raise SlotMapError(f"plan must be an object, got {plan!r:.80}")
        model = raw.get("model", MODEL_FILE)
        return cls(model_bytes, digest, float(gate_max), slots, gates, alignment, bool(raw.get("headroom", False)),
                   plan, model if isinstance(model, str) else MODEL_FILE)

    # -- checks against a model ----------------------------------------------------------------
    def check_model(self, model: bytes | bytearray | memoryview) -> None:
        """The model is the one this map describes, and the map describes the model: size, base
        digest with slots zeroed, then every slot tensor, range, frame and gate against the
        model file itself (`_check_structure`). Any mismatch is a `SlotMapError`."""
        if len(model) != self.model_bytes:
            raise SlotMapError(f"model has {len(model)} bytes, the slot map describes {self.model_bytes}")
        if self.digest_of(model) != self.base_digest:
            raise SlotMapError(f"base-model digest mismatch: the model is not the one this slot map was made for "
                               f"(expected {self.base_digest[:16]}...)")
        if self.slots:
            _check_structure(self, model)

    def damaged_frames(self, model: bytes | bytearray | memoryview) -> list[int]:
        """Slots whose base bytes inside the range (length prefixes, spacer) differ from the
        recorded frame, e.g. after an interrupted slot write. The interpreter cannot read such
        a model until the slot is rewritten."""
        damaged = []
        view = memoryview(model)
        for s in self.slots:
            data = bytearray(view[s.offset : s.offset + s.length])
            for t in s.tensors:
                data[t.offset - s.offset : t.offset - s.offset + t.length] = bytes(t.length)
            if data != s.template():
                damaged.append(s.slot)
        return damaged

    def digest_of(self, model: bytes | bytearray | memoryview) -> str:
        """SHA-256 of the model with every slot range zeroed (`base_digest`)."""
        return base_digest(model, [(s.offset, s.length) for s in self.slots])


# -- the map against the model file ------------------------------------------------------------
def _check_structure(smap: SlotMap, model: bytes | bytearray | memoryview) -> None:
    """Check the slot map against the model file, parsed once with `tinyswap.reader`.

    Called by `check_model` after the size and the base digest matched, so every byte outside
    the slot ranges is the base's. Inside a range only the frame is trusted: the model is parsed
    as it is when every range's base bytes equal its frame (zero copy), otherwise (a range an
    interrupted write damaged; `damaged_frames` reports it and boot rewrites it from the frame)
    with the frames written over a copy. Checked, each failure naming the slot, tensor or gate:

    - the map itself: slots 0..S-1 in order, every slot the same layers/roles, no (layer, role)
      twice in a slot, ranges disjoint;
    - every slot tensor entry names a tensor of its subgraph (the main one unless recorded), used by no other tensor or
      metadata entry, whose buffer's data lies exactly at the entry's offset and length, with
      the entry's shape, dtype, scales, zero points and quantized dimension (and name);
    - every range starts at its first tensor's data and ends at its last tensor's end rounded
      up to the alignment; it covers no byte before the first buffer's data (header, tables),
      no byte of another buffer and no other buffer's length prefix, but for the spacer's (an
      unreferenced 4-byte buffer whose data starts at the range's end);
    - the frame is exactly the base bytes the file's structure puts inside the range: the
      length prefixes of the slot's buffers (and the spacer's), zero padding elsewhere; on an
      intact range these are the file's own bytes;
    - every gate is a distinct graph input of the main subgraph, int8, shape [batch, 1] (batch
      1, or dynamic -1 in the shape signature), with exactly the recorded scale and zero point.
    """
    _check_map_itself(smap)
    base: bytes | bytearray | memoryview = model
    damaged = smap.damaged_frames(model)
    if damaged:  # parse the base the frames describe, not the damaged bytes
        base = bytearray(model)
        for s in (smap.slots[i] for i in damaged):
            base[s.offset : s.offset + s.length] = s.template()
    try:
        parsed = read_model(base)
    except ModelError as exc:
        raise SlotMapError(f"the model{' with the frames of slots ' + str(damaged) if damaged else ''} "
                           f"does not parse: {exc}") from None
    users = _buffer_users(parsed)
    _check_tensors(smap, parsed, users)
    _check_ranges(smap, parsed, users)
    _check_gates(smap, parsed)


def _label(t: SlotTensorInfo) -> str:
    where = f"subgraph {t.subgraph} " if t.subgraph else ""
    return f"slot {t.slot} tensor {t.layer}/{t.role} ({where}tensor_index {t.tensor_index})"


def _check_map_itself(smap: SlotMap) -> None:
    """What `from_json` checks, again: a `SlotMap` may be built in code."""
    if [s.slot for s in smap.slots] != list(range(len(smap.slots))):
        raise SlotMapError(f"slots are numbered {[s.slot for s in smap.slots]}; expected 0..{len(smap.slots) - 1}")
    if [g.slot for g in smap.gates] != list(range(len(smap.slots))):
        raise SlotMapError(f"gates name slots {[g.slot for g in smap.gates]}; expected one per slot in order")
    layout = [(t.layer, t.kind, t.role) for t in smap.slots[0].tensors]
    if len(set(layout)) != len(layout):
        raise SlotMapError(f"slot 0 lists a layer/role twice: {sorted(t for t in layout if layout.count(t) > 1)[0]}")
    for s in smap.slots:
        here = [(t.layer, t.kind, t.role) for t in s.tensors]
        if here != layout:
            raise SlotMapError(f"slot {s.slot} lists layers/roles {[f'{l}/{r}' for l, _, r in here]}; "
                               f"slot 0 lists {[f'{l}/{r}' for l, _, r in layout]}")
        for t in s.tensors:
            if t.slot != s.slot:
                raise SlotMapError(f"{_label(t)} is listed under slot {s.slot}")
    ranges = sorted((s.offset, s.offset + s.length, s.slot) for s in smap.slots)
    for (_, end, a), (start, _, b) in zip(ranges, ranges[1:]):
        if start < end:
            raise SlotMapError(f"the ranges of slots {a} and {b} overlap at byte {start}")


def _buffer_users(parsed: ModelDef) -> dict[int, list[str]]:
    """buffer index -> what refers to it (tensors of every subgraph, metadata entries)."""
    users: dict[int, list[str]] = {}
    for g, sub in enumerate(parsed.subgraphs):
        for t in sub.tensors:
            if t.buffer:
                users.setdefault(t.buffer, []).append(f"subgraph {g} tensor {t.index} ({t.name!r})")
    for name, index in parsed.metadata.items():
        users.setdefault(index, []).append(f"metadata {name!r}")
    return users


def _check_tensors(smap: SlotMap, parsed: ModelDef, users: dict[int, list[str]]) -> None:
    buffers = parsed.buffers
    claimed: dict[tuple[int, int], str] = {}
    for s in smap.slots:
        for t in s.tensors:
            where = _label(t)
            if t.subgraph >= len(parsed.subgraphs):
                raise SlotMapError(f"{where}: the model has {len(parsed.subgraphs)} subgraphs")
            tensors = parsed.subgraphs[t.subgraph].tensors
            if t.tensor_index >= len(tensors):
                which = f"subgraph {t.subgraph}" if t.subgraph else "main subgraph"
                raise SlotMapError(f"{where}: the model's {which} has {len(tensors)} tensors")
            if (t.subgraph, t.tensor_index) in claimed:
                raise SlotMapError(f"{where}: tensor {t.tensor_index} is already {claimed[t.subgraph, t.tensor_index]}")
            claimed[t.subgraph, t.tensor_index] = where
            td = tensors[t.tensor_index]
            buf = buffers[td.buffer]
            if td.buffer == 0 or buf.length == 0:
                raise SlotMapError(f"{where}: tensor {td.name!r} has no constant data in the model")
            if (buf.offset, buf.length) != (t.offset, t.length):
                raise SlotMapError(f"{where}: the model holds tensor {td.name!r}'s data (buffer {td.buffer}) at "
                                   f"bytes [{buf.offset}, {buf.offset + buf.length}); the slot map records "
                                   f"[{t.offset}, {t.offset + t.length})")
            if len(users.get(td.buffer, ())) != 1:
                raise SlotMapError(f"{where}: buffer {td.buffer} is shared by {', '.join(users[td.buffer])}")
            if t.name and t.name != td.name:
                raise SlotMapError(f"{where}: the model names tensor {t.tensor_index} {td.name!r}, the slot map "
                                   f"{t.name!r}")
            if td.type != _TENSOR_TYPES[t.dtype]:
                raise SlotMapError(f"{where}: dtype {t.dtype} in the slot map, {td.type.name.lower()} in the model")
            if td.shape != t.shape:
                raise SlotMapError(f"{where}: shape {t.shape} in the slot map, {td.shape} in the model")
            q = td.quantization
            found = ((), (), 0) if q is None else (tuple(float(v) for v in q.scale),
                                                     tuple(int(v) for v in q.zero_point), q.quantized_dimension)
            for what, recorded, actual in zip(("scales", "zero points", "quantized dimension"),
                                              (t.scales, t.zero_points, t.quantized_dimension), found):
                if recorded != actual:
                    raise SlotMapError(f"{where}: {what} {recorded!r:.120} in the slot map, {actual!r:.120} in "
                                       "the model")


def _check_ranges(smap: SlotMap, parsed: ModelDef, users: dict[int, list[str]]) -> None:
    data = sorted((b for b in parsed.buffers if b.length), key=lambda b: b.offset)
    starts = [b.offset for b in data]
    tables_end = starts[0] - 4 if data else smap.model_bytes  # header and tables lie before
    for s in smap.slots:
        start, end = s.offset, s.offset + s.length
        if start < tables_end:
            raise SlotMapError(f"slot {s.slot}: range [{start}, {end}) covers the flatbuffer header or tables "
                               f"(bytes before {tables_end}, where the first buffer's length prefix lies)")
        expected = bytearray(s.length)
        own = {t.offset for t in s.tensors}
        # Every buffer whose data or length prefix could meet the range.
        for b in data[max(bisect.bisect_left(starts, start) - 1, 0) : bisect.bisect_right(starts, end + 4)]:
            prefix = b.offset - 4
            if b.offset + b.length <= start or prefix >= end:
                continue
            if b.offset in own:  # the slot's own buffer (its data is checked by `_check_tensors`)
                if prefix >= start:
                    expected[prefix - start : b.offset - start] = _PREFIX.pack(b.length)
                continue
            what = _describe(b, users)
            if b.offset < end:
                raise SlotMapError(f"slot {s.slot}: range [{start}, {end}) covers bytes [{max(b.offset, start)}, "
                                   f"{min(b.offset + b.length, end)}) of {what}")
            if b.offset != end or b.index in users:
                raise SlotMapError(f"slot {s.slot}: range [{start}, {end}) covers the length prefix at {prefix} of "
                                   f"{what} (only the spacer's, an unreferenced buffer starting at the range's "
                                   "end, may lie inside)")
            if b.length != 4:
                raise SlotMapError(f"slot {s.slot}: the spacer after the range ({what}) is {b.length} bytes long "
                                   f"with the frame's length prefix at {prefix}; expected 4")
            expected[prefix - start :] = _PREFIX.pack(b.length)
        first = min(t.offset for t in s.tensors)
        last = round_up(max(t.offset + t.length for t in s.tensors), smap.alignment)
        if (start, end) != (first, last):
            raise SlotMapError(f"slot {s.slot}: range [{start}, {end}); its tensors need [{first}, {last}) (from the "
                               f"first tensor's data to the last one's end rounded up to {smap.alignment})")
        frame = s.template()
        if frame != expected:
            rel = next(i for i in range(s.length) if frame[i] != expected[i])
            raise SlotMapError(f"slot {s.slot}: the frame has 0x{frame[rel]:02x} at byte {start + rel} (range offset "
                               f"{rel}), the model's base has 0x{expected[rel]:02x} there ("
                               f"{'a length prefix' if expected[rel] else 'padding'})")


def _describe(b: BufferDef, users: dict[int, list[str]]) -> str:
    return f"buffer {b.index} ({', '.join(users[b.index]) if b.index in users else 'unreferenced'})"


def _check_gates(smap: SlotMap, parsed: ModelDef) -> None:
    sub = parsed.main
    taken: dict[int, int] = {}
    for g in smap.gates:
        where = f"gate {g.slot} ({g.name!r}, graph input {g.input_index})"
        if g.input_index >= len(sub.inputs):
            raise SlotMapError(f"{where}: the main subgraph has {len(sub.inputs)} inputs")
        index = sub.inputs[g.input_index]
        if index in taken:
            raise SlotMapError(f"{where}: tensor {index} is already the input of gate {taken[index]}")
        taken[index] = g.slot
        if g.tensor_index >= 0 and g.tensor_index != index:
            raise SlotMapError(f"{where}: the slot map records tensor {g.tensor_index}, the input is tensor {index}")
        td = sub.tensors[index]
        if parsed.buffers[td.buffer].length:
            raise SlotMapError(f"{where}: tensor {index} ({td.name!r}) is a constant, not a gate")
        if td.type != TensorType.INT8:
            raise SlotMapError(f"{where}: tensor {index} ({td.name!r}) is {td.type.name.lower()}, expected int8")
        signature = td.shape_signature if td.shape_signature is not None else td.shape
        if td.shape != (1, 1) or len(signature) != 2 or signature[0] not in (1, -1) or signature[1] != 1:
            raise SlotMapError(f"{where}: tensor {index} ({td.name!r}) has shape {td.shape} (signature "
                               f"{signature}), expected [batch, 1] with batch 1 or -1")
        if g.shape and g.shape not in (td.shape, signature):
            raise SlotMapError(f"{where}: shape {g.shape} in the slot map, {signature} in the model")
        q = td.quantization
        if q is None or q.scale.size != 1:
            raise SlotMapError(f"{where}: tensor {index} ({td.name!r}) is not quantized per tensor")
        if (float(q.scale[0]), int(q.zero_point[0])) != (g.scale, g.zero_point):
            raise SlotMapError(f"{where}: scale {g.scale!r} and zero point {g.zero_point} in the slot map, "
                               f"{float(q.scale[0])!r} and {int(q.zero_point[0])} in the model")


# -- the writer -------------------------------------------------------------------------------
def base_digest(model: bytes | bytearray | memoryview, ranges: Iterable[tuple[int, int]]) -> str:
    """SHA-256 of the model with every (offset, length) range zeroed: identifies the base,
    whatever the slots hold. Streams the file (no copy of the model); ranges must not overlap."""
    h = hashlib.sha256()
    pos = 0
    view = memoryview(model)
    for offset, length in sorted(ranges):
        h.update(view[pos:offset])
        h.update(bytes(length))
        pos = offset + length
    h.update(view[pos:])
    return h.hexdigest()


def round_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def slot_ranges(tensors: Sequence[SlotTensorInfo], alignment: int) -> list[tuple[int, int]]:
    """(offset, length) of every slot's byte range, in slot order: from its first tensor's data
    to the end of its last, rounded up to the plan's alignment."""
    spans: dict[int, list[SlotTensorInfo]] = {}
    for t in tensors:
        spans.setdefault(t.slot, []).append(t)
    if sorted(spans) != list(range(len(spans))):
        raise SlotMapError(f"slot tensors name slots {sorted(spans)}; expected 0..{len(spans) - 1}")
    ranges = []
    for s in range(len(spans)):
        start = min(t.offset for t in spans[s])
        end = round_up(max(t.offset + t.length for t in spans[s]), alignment)
        ranges.append((start, end - start))
    return ranges


def frame_runs(model: bytes | bytearray | memoryview, offset: int, length: int,
               tensors: Iterable[SlotTensorInfo]) -> Frame:
    """The base model's own bytes inside a slot range as (relative offset, bytes) runs of
    non-zero bytes, slot tensors zeroed. A device restores these exactly when a write into the
    range was interrupted."""
    frame = bytearray(memoryview(model)[offset : offset + length])
    for t in tensors:
        frame[t.offset - offset : t.offset - offset + t.length] = bytes(t.length)
    runs, i = [], 0
    while i < length:
        if frame[i]:
            j = i
            while j < length and frame[j]:
                j += 1
            runs.append((i, bytes(frame[i:j])))
            i = j
        else:
            i += 1
    return tuple(runs)


def build_slotmap(model: bytes, tensors: Sequence[SlotTensorInfo], gates: Sequence[GateInfo], *,
                  alignment: int = DEFAULT_ALIGNMENT, headroom: bool = False,
                  plan: Mapping[str, Any] | None = None) -> SlotMap:
    """The slot map of `model` from where the compiler placed each slot tensor and gate. With
    no tensors the model has no slots (a slot-free bundle; the swap manager refuses it)."""
    if not tensors:
        return SlotMap(len(model), base_digest(model, []), 0.0, (), ())
    ranges = slot_ranges(tensors, alignment)
    slots = []
    for s, (offset, length) in enumerate(ranges):
        own = tuple(t for t in tensors if t.slot == s)
        slots.append(SlotInfo(s, offset, length, own, frame_runs(model, offset, length, own)))
    if [g.slot for g in gates] != list(range(len(slots))):
        raise SlotMapError(f"gates name slots {[g.slot for g in gates]}; expected one per slot in order")
    gate_max = gates[0].gate_max
    return SlotMap(len(model), base_digest(model, ranges), gate_max, tuple(slots), tuple(gates), alignment,
                   headroom, plan)


# -- reader helpers ---------------------------------------------------------------------------
def _int(raw: dict, key: str, lo: int, hi: int | None = None) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or (hi is not None and value > hi):
        raise SlotMapError(f"{key} must be an integer >= {lo}{'' if hi is None else f' and <= {hi}'}, got {value!r}")
    return value


def _gate(raw: Any, index: int, gate_max: float) -> GateInfo:
    if not isinstance(raw, dict):
        raise SlotMapError(f"gates[{index}] must be an object")
    scale = raw.get("scale")
    if not isinstance(scale, (int, float)) or not scale > 0:
        raise SlotMapError(f"gates[{index}].scale must be positive, got {scale!r}")
    tensor_index = raw.get("tensor_index", -1)
    shape = raw.get("shape", [])
    return GateInfo(_int(raw, "slot", 0), str(raw.get("name")), _int(raw, "input_index", 1), float(scale),
                    _int(raw, "zero_point", -128, 127), gate_max,
                    tensor_index if isinstance(tensor_index, int) and not isinstance(tensor_index, bool) else -1,
                    tuple(d for d in shape if isinstance(d, int)) if isinstance(shape, list) else ())


def _tensor(t: Any, where: str, slot: int) -> SlotTensorInfo:
    if not isinstance(t, dict):
        raise SlotMapError(f"{where} must be an object")
    dtype = t.get("dtype")
    if not isinstance(dtype, str) or dtype not in _DTYPE_BYTES:
        raise SlotMapError(f"{where}: dtype {dtype!r} is not int8 or int32")
    shape = t.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise SlotMapError(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    scales = t.get("scales")
    if not isinstance(scales, list) or not scales or not all(isinstance(v, (int, float)) and v > 0 for v in scales):
        raise SlotMapError(f"{where}: scales must be a non-empty list of positive numbers")
    kind = t.get("kind")
    if kind not in AdapterKind.__members__.values():
        raise SlotMapError(f"{where}: kind {kind!r} is not lora or bottleneck")
    zero_points = t.get("zero_points", [])
    if not isinstance(zero_points, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in zero_points):
        raise SlotMapError(f"{where}: zero_points must be a list of integers")
    qdim = t.get("quantized_dimension", 0)
    if not isinstance(qdim, int) or isinstance(qdim, bool):
        raise SlotMapError(f"{where}: quantized_dimension must be an integer")
    info = SlotTensorInfo(_int(t, "slot", slot, slot), str(t.get("layer")), AdapterKind(kind), str(t.get("role")),
                          _int(t, "tensor_index", 0), _int(t, "offset", 0), _int(t, "length", 0), tuple(shape),
                          dtype, tuple(float(v) for v in scales), str(t.get("name", "")), tuple(zero_points), qdim,
                          _int(t, "subgraph", 0) if "subgraph" in t else 0)
    if info.length != _DTYPE_BYTES[dtype] * math.prod(shape):
        raise SlotMapError(f"{where}: {info.length} bytes do not hold {dtype} {tuple(shape)}")
    return info


def _frame(raw: dict, slot: int, offset: int, length: int, spans: list[tuple[int, int]]) -> Frame:
    if "frame" not in raw:
        raise SlotMapError(f"slot {slot}: the required field 'frame' is missing (the base bytes inside the slot "
                           "range; slot maps written before frames were recorded must be exported again)")
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
    return tuple(runs)


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
        info = _tensor(t, f"slot {slot} tensor {j}", slot)
        if info.offset < offset or info.offset + info.length > offset + length:
            raise SlotMapError(f"slot {slot} tensor {j} ({info.layer}/{info.role}): bytes [{info.offset}, "
                               f"{info.offset + info.length}) lie outside the slot's range [{offset}, {offset + length})")
        tensors.append(info)
    spans = sorted((t.offset, t.offset + t.length) for t in tensors)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        if start < end:
            raise SlotMapError(f"slot {slot}: two tensors overlap at byte {start}")
    return SlotInfo(slot, offset, length, tuple(tensors), _frame(raw, slot, offset, length, spans))


__all__ = [
    "AdapterKind", "Frame", "GateInfo", "SLOTMAP_FORMAT", "SLOTMAP_VERSION", "SlotInfo", "SlotMap", "SlotMapError",
    "SlotTensorInfo", "TensorRole", "base_digest", "build_slotmap", "frame_runs", "slot_ranges",
]
