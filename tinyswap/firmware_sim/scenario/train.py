"""The `train` step kind: a user's adapter trained on the device from local samples, put on
trial and confirmed only if it beats what it replaces (`tinyswap.firmware_sim.personalise`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyswap.firmware_sim.errors import DeviceStateError, TrainingConfigError
from tinyswap.firmware_sim.personalise import DEFAULT_BUDGET, MAX_SAMPLES, MIN_SAMPLES, DeviceTrainer, \
    PersonaliseConfig
from tinyswap.firmware_sim.scenario.fields import ValueType, param
from tinyswap.firmware_sim.scenario.registry import Step, StepParams, step_kind
from tinyswap.firmware_sim.training import TrainingConfig

if TYPE_CHECKING:
    from tinyswap.firmware_sim.scenario.report import StepRecord
    from tinyswap.firmware_sim.scenario.runner import Run

_DEFAULTS = TrainingConfig()


@step_kind("train", target=("user",), example={
    "kind": "train", "user": "alice", "dataset": "rot90", "rows": 100, "start": 0, "epochs": 60, "rank": 4,
    "budget": 65536, "note": "alice's camera is mounted rotated: her own adapter, trained on the device"})
@dataclass(frozen=True, kw_only=True)
class Train(StepParams):
    """Train `user`'s adapter on the device from `rows` local samples of `dataset` (rows
    `start` ..), base frozen: a LoRA on the logits layer in float32 over the exact INT8 base,
    fitted into the slot's scales and signed with the device's own key (trusted for this
    user's packages only), installed into a slot on trial, and confirmed only if, on a held-out quarter of the
    samples, it beats what it replaces (the user's previous version, else the base) by 10
    points and beyond chance (a sign test); otherwise the device resets and the trial reverts. The samples
    never leave the step; the report gets `on_device_training` aggregates only."""

    user: str = param(ValueType.NAME, doc="the user (the package's tenant tag; its adapter is `personal-<user>`)")
    dataset: str = param(ValueType.DATASET, doc="where the local samples come from (labelled)")
    rows: int = param(ValueType.INT, minimum=MIN_SAMPLES, maximum=MAX_SAMPLES, default=100,
                      doc="how many local samples")
    start: int = param(ValueType.INT, minimum=0, default=0, doc="the first sample's row in the dataset")
    epochs: int = param(ValueType.INT, minimum=1, maximum=1000, default=_DEFAULTS.epochs,
                        doc="passes over the training samples")
    rank: int = param(ValueType.INT, minimum=1, maximum=64, default=_DEFAULTS.rank,
                      doc="the LoRA rank (at most the slot's)")
    batch: int = param(ValueType.INT, minimum=1, maximum=256, default=_DEFAULTS.batch, doc="samples per step")
    seed: int = param(ValueType.INT, minimum=0, default=0, doc="initial factors, sample order and held-out split")
    budget: int = param(ValueType.INT, minimum=1, default=DEFAULT_BUDGET,
                        doc="RAM bytes training may hold (refused with TrainingMemoryError above it)")
    mislabelled: bool = param(ValueType.BOOL, default=False,
                              doc="the user's labels are a seeded shuffle of the true ones (careless labelling): "
                                  "the confirm gate should revert the result")

    def run(self, run: Run, step: Step) -> dict[str, Any]:
        d = run.device
        if not d.booted:
            raise DeviceStateError("train: the device is not booted (a power cut needs a reboot step)")
        ds = run.inputs[self.dataset]
        if ds.y is None:
            raise TrainingConfigError(f"train: dataset {self.dataset!r} has no labels")
        if self.start + self.rows > len(ds.x):
            raise TrainingConfigError(f"train: rows {self.start}..{self.start + self.rows - 1} run past dataset "
                                      f"{self.dataset!r}'s {len(ds.x)} rows")
        x = ds.x[self.start:self.start + self.rows]
        y = np.asarray(ds.y[self.start:self.start + self.rows]).astype(np.int64)
        if self.mislabelled:
            y = np.random.default_rng(self.seed + 1).permutation(y)
        config = PersonaliseConfig(TrainingConfig(epochs=self.epochs, rank=self.rank, batch=self.batch,
                                                  seed=self.seed), budget=self.budget)
        trainer = run.trainers.get(self.user)
        if trainer is None:  # the device's training key for this user, made once per device
            trainer = run.trainers[self.user] = DeviceTrainer(d, Ed25519PrivateKey.generate(), self.user)
        outcome = trainer.personalise(x, y, config)
        entry = {"step": step.index, "user": self.user, "dataset": self.dataset, **outcome.to_json()}
        run.training.append(entry)
        return entry

    def describe(self, record: StepRecord) -> str:
        r = record.result
        if "samples" not in r:
            return ""
        verdict = "confirmed" if r["confirmed"] else "reverted by the confirm gate"
        return (f"{r['name']} v{r['sequence']} from {r['samples']} local samples of {r['dataset']}: held-out "
                f"{100 * r['accuracy_before']:.0f}% ({r['replaced']}) -> {100 * r['accuracy_after']:.0f}%, {verdict}; "
                f"RAM {r['peak_ram_bytes']:,} B, {r['simulated_seconds']:.2f} s")


__all__ = ["Train"]
