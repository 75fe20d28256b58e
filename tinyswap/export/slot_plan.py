"""`SlotPlan`: how many adapter slots to compile, where, of which kind and with what room.

Validated on construction (PEFT-style `__post_init__`): every error names the field and the
value. The plan is written into `slotmap.json` so the device knows what it was built with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from tinyswap.export.errors import SlotPlanError
from tinyswap.files import read_json

SLOT_KINDS = ("lora", "bottleneck")
SCALE_POLICIES = ("weight_relative",)
MIN_ALIGNMENT = 16
MAX_ALIGNMENT = 1 << 20
# A conditional slot's IF reads `gate > off` through TFLite's int8 comparison, which rescales
# each gate by 2**8 * scale before comparing: below this gate_max the smallest nonzero gate
# (one step, gate_max / 255) would compare equal to off and its branch would not run.
MIN_CONDITIONAL_GATE_MAX = 0.5


class SlotBranches(StrEnum):
    """How a slot's branch runs. ALWAYS: every branch runs on every invoke (a static graph, its
    gate multiplies it). CONDITIONAL: each slot's branch on each layer sits behind a TFLite IF on
    the slot's gate and runs only when some gate of the request is above zero, so inactive
    slots cost no MACs (batch-1 models only: an IF reads a one-element condition)."""

    ALWAYS = "always"
    CONDITIONAL = "conditional"


@dataclass(frozen=True)
class SlotTarget:
    """One targeted layer.

    kind: "lora" on a dense/conv2d layer (`y = act(W x + b + g B A x)`), or "bottleneck" on a
        layer's output activation (`h + g U relu(D h)`).
    max_rank: r_max, the slot's rank; smaller adapters are zero-padded, larger ones reduced.
    delta_ratio: the slot's fixed scales leave room for an adapter whose effect on this layer
        is up to `delta_ratio` times the layer's own calibrated range (scale policy
        "weight_relative"). Larger effects saturate; smaller ones lose resolution.
    """

    layer: str
    kind: str = "lora"
    max_rank: int = 4
    delta_ratio: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.layer, str) or not self.layer:
            raise SlotPlanError(f"targets.layer must be a layer name, got {self.layer!r}")
        if self.kind not in SLOT_KINDS:
            raise SlotPlanError(f"targets[{self.layer}].kind is {self.kind!r}; expected one of {SLOT_KINDS}")
        if not isinstance(self.max_rank, int) or isinstance(self.max_rank, bool) or not 1 <= self.max_rank <= 256:
            raise SlotPlanError(f"targets[{self.layer}].max_rank is {self.max_rank!r}; expected an int in [1, 256]")
        if not isinstance(self.delta_ratio, (int, float)) or not 0.0 < float(self.delta_ratio) <= 16.0:
            raise SlotPlanError(f"targets[{self.layer}].delta_ratio is {self.delta_ratio!r}; expected (0, 16]")


@dataclass(frozen=True)
class SlotPlan:
    """num_slots: S >= 2 physical slots per target (one can be written while another is live).
    alignment: byte alignment of every slot range in the file: 16, or the flash sector size
        (a power of two up to 1 MiB) so that writing a slot never touches a base sector.
    headroom: give the pre-activation sum a calibrated range of its own, wider than the base
        output's (active adapters are then not clipped at the base's post-ReLU range); with
        headroom off, all-zero gates reproduce the slot-free model bit for bit.
    gate_max: the largest gate value a request may use (gates run from 0 to gate_max).
    branches: "always" (default) or "conditional" (`SlotBranches`): whether inactive slots'
        branches still run.
    """

    targets: tuple[SlotTarget, ...]
    num_slots: int = 2
    alignment: int = MIN_ALIGNMENT
    headroom: bool = False
    scale_policy: str = "weight_relative"
    gate_max: float = 1.0
    notes: dict[str, Any] = field(default_factory=dict)
    branches: SlotBranches = SlotBranches.ALWAYS

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "branches", SlotBranches(self.branches))
        except ValueError:
            raise SlotPlanError(f"branches is {self.branches!r}; expected one of "
                                f"{[b.value for b in SlotBranches]}") from None
        if self.branches == SlotBranches.CONDITIONAL and isinstance(self.gate_max, (int, float)) \
                and float(self.gate_max) < MIN_CONDITIONAL_GATE_MAX:
            raise SlotPlanError(f"gate_max is {self.gate_max!r}; conditional branches need gate_max >= "
                                f"{MIN_CONDITIONAL_GATE_MAX} (the IF's int8 comparison would not see the smallest gates)")
        if not isinstance(self.num_slots, int) or isinstance(self.num_slots, bool) or not 2 <= self.num_slots <= 64:
            raise SlotPlanError(f"num_slots is {self.num_slots!r}; expected an int in [2, 64] (S >= 2 for safe swaps)")
        a = self.alignment
        if not isinstance(a, int) or isinstance(a, bool) or a < MIN_ALIGNMENT or a > MAX_ALIGNMENT or a & (a - 1):
            raise SlotPlanError(f"alignment is {a!r}; expected a power of two in [{MIN_ALIGNMENT}, {MAX_ALIGNMENT}]")
        if not isinstance(self.headroom, bool):
            raise SlotPlanError(f"headroom is {self.headroom!r}; expected true or false")
        if self.scale_policy not in SCALE_POLICIES:
            raise SlotPlanError(f"scale_policy is {self.scale_policy!r}; expected one of {SCALE_POLICIES}")
        if not isinstance(self.gate_max, (int, float)) or not 0.0 < float(self.gate_max) <= 8.0:
            raise SlotPlanError(f"gate_max is {self.gate_max!r}; expected a number in (0, 8]")
        if not self.targets:
            raise SlotPlanError("targets is empty: name at least one layer to adapt")
        names = [t.layer for t in self.targets]
        if len(set(names)) != len(names):
            raise SlotPlanError(f"targets name a layer twice: {names}")

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["targets"] = [asdict(t) for t in self.targets]  # JSON lists, not tuples
        if self.branches == SlotBranches.ALWAYS:
            del raw["branches"]  # the default: plans written before the option stay byte-identical
        else:
            raw["branches"] = self.branches.value
        return raw

    @classmethod
    def from_json(cls, raw: Any) -> "SlotPlan":
        if not isinstance(raw, dict):
            raise SlotPlanError("a slot plan must be a JSON object")
        known = {"targets", "num_slots", "alignment", "headroom", "scale_policy", "gate_max", "notes", "branches"}
        unknown = set(raw) - known
        if unknown:
            raise SlotPlanError(f"unknown slot plan fields {sorted(unknown)}; known: {sorted(known)}")
        targets_raw = raw.get("targets")
        if not isinstance(targets_raw, list):
            raise SlotPlanError(f"targets must be a list, got {targets_raw!r}")
        targets = []
        for i, t in enumerate(targets_raw):
            if not isinstance(t, dict):
                raise SlotPlanError(f"targets[{i}] must be an object, got {t!r}")
            extra = set(t) - {"layer", "kind", "max_rank", "delta_ratio"}
            if extra:
                raise SlotPlanError(f"targets[{i}] has unknown fields {sorted(extra)}")
            targets.append(SlotTarget(**t))
        return cls(targets=tuple(targets), **{k: v for k, v in raw.items() if k != "targets"})

    @classmethod
    def load(cls, path: str | Path) -> "SlotPlan":
        raw = read_json(path, "slot plan")
        return cls.from_json(raw)
