"""On-device personalisation: a user's adapter trained on the device, into a slot, behind trial
and confirm.

One `DeviceTrainer.personalise` call, in this order (validate completely, then write):

1. check the samples, the configuration, the bundle's trainable slot (`training.py`) and the
   RAM plan against the budget; refuse (a `TrainingError`) before anything is allocated;
2. split the local samples into a training part and a held-out part (a seeded permutation;
   the held-out part is never trained on);
3. measure what the new adapter replaces (the user's previous version, else the base) on the
   held-out part;
4. run the INT8 base once per training sample with every gate off and save the int8 input of
   the logits layer and the base logits (the exact arithmetic the device runs), then train;
5. fit the factors into the slot's fixed scales (`tinyswap.slot_quant`, the packer's core),
   and sign the package with the device's own training key (its keyring trusts that key for
   packages tagged with this device's user only, `Keyring.add(tenant=)`);
6. install it (store) and swap it into a slot on trial; measure it on the held-out part;
7. confirm it only if it beats the replaced one on the held-out part by `margin` and beyond
   chance (`gate`: a sign test on the samples where the two disagree); otherwise revert by a
   reset (the boot returns to the confirmed state, as MCUboot reverts a test image): the
   previous adapter stays active, nothing lost.

Power cuts: training keeps its state in RAM only and writes no checkpoint. A cut anywhere
leaves the last confirmed state (boot reverts an unconfirmed trial), and the adaptation
restarts from the beginning; with the same samples and seed it produces the same package
byte for byte (Ed25519 signatures are deterministic), so a restart converges on what the
uninterrupted run would have confirmed.

Privacy: the samples, their features and per-sample values stay in this call's RAM. What
leaves it is the package (adapter tensors and metadata) and `TrainingOutcome`'s aggregates
(counts, accuracies, bytes, seconds, the digest); the trace gets the same aggregates only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyswap.firmware_sim.device import Device
from tinyswap.firmware_sim.errors import DeviceStateError, TrainingConfigError, TrainingMemoryError
from tinyswap.firmware_sim.profiles import estimate_inference_seconds
from tinyswap.firmware_sim.training import (
    LogitsSlot,
    RamPlan,
    TrainerBuffers,
    TrainingConfig,
    check_fits,
    find_logits_slot,
    plan_ram,
    train,
)
from tinyswap.interpreter import Interpreter
from tinyswap.package import build_package, parse_package
from tinyswap.slot_quant import quantize_lora
from tinyswap.swap import gates as gate_math

KIB = 1024
#: The training budget unless the caller gives one: what a Cortex-M7 with 512 KB of SRAM has
#: left beside the mcu-qspi profile's arena and package cache (512 - 320 - 128 KB).
DEFAULT_BUDGET = 64 * KIB
MIN_SAMPLES, MAX_SAMPLES = 10, 1000
#: The confirm gate's sign-test level (`gate`).
SIGNIFICANCE = 0.05
BASE = "__base__"


@dataclass(frozen=True)
class PersonaliseConfig:
    """One adaptation: the training run, the held-out share of the local samples, the accuracy
    margin (a fraction) the new adapter must win by, and the RAM budget in bytes."""

    training: TrainingConfig = field(default_factory=TrainingConfig)
    holdout: float = 0.25
    margin: float = 0.10
    budget: int = DEFAULT_BUDGET

    def __post_init__(self) -> None:
        if not isinstance(self.training, TrainingConfig):
            raise TrainingConfigError("training must be a TrainingConfig")
        for name, value, lo, hi in (("holdout", self.holdout, 0.05, 0.5), ("margin", self.margin, 0.0, 1.0)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
                raise TrainingConfigError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
        if not isinstance(self.budget, int) or isinstance(self.budget, bool) or self.budget <= 0:
            raise TrainingConfigError(f"budget must be a positive number of bytes, got {self.budget!r}")


@dataclass(frozen=True)
class TrainingOutcome:
    """What one adaptation reports: aggregates only, never a sample or a per-sample value."""

    samples: int
    train_samples: int
    holdout_samples: int
    replaced: str  # what the new adapter was measured against: the user's previous version or "__base__"
    accuracy_before: float  # held-out accuracy of the replaced adapter
    accuracy_after: float  # held-out accuracy of the trained adapter, in INT8 from its slot
    confirmed: bool
    peak_ram_bytes: int
    ram: RamPlan
    simulated_seconds: float  # the whole adaptation on the device's clock
    training_seconds: float  # the cycle model's forward, backward and optimizer time
    package_digest: str
    name: str
    sequence: int
    final_loss: float

    def to_json(self) -> dict[str, Any]:
        """report.json's `on_device_training` entry."""
        return {"samples": self.samples, "accuracy_before": self.accuracy_before,
                "accuracy_after": self.accuracy_after, "confirmed": self.confirmed,
                "peak_ram_bytes": self.peak_ram_bytes, "simulated_seconds": self.simulated_seconds,
                "package_digest": self.package_digest, "name": self.name, "sequence": self.sequence,
                "train_samples": self.train_samples, "holdout_samples": self.holdout_samples,
                "replaced": self.replaced, "training_seconds": self.training_seconds, "ram": self.ram.to_json()}


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided exact sign test: the probability of at least `wins` wins among the
    `wins + losses` samples on which two classifiers disagree, were neither better."""
    n = wins + losses
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n if n else 1.0


def gate(right_before: np.ndarray, right_after: np.ndarray, margin: float) -> bool:
    """Confirm only a clear win on the held-out samples: accuracy up by at least `margin`, and
    the samples only the new adapter gets right outnumber those only the old one gets right
    beyond chance (sign test, p <= SIGNIFICANCE). With a few dozen held-out samples a margin
    alone passes noise: careless labels can move accuracy by a few samples either way."""
    gain = float(right_after.mean()) - float(right_before.mean())
    wins = int(np.sum(right_after & ~right_before))
    losses = int(np.sum(right_before & ~right_after))
    return gain >= margin and sign_test_p(wins, losses) <= SIGNIFICANCE


def split_samples(count: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows) of `count` local samples: a seeded permutation, the first
    round(count x holdout) (at least 1) held out."""
    order = np.random.default_rng(seed).permutation(count)
    held = max(1, int(round(count * holdout)))
    return np.sort(order[held:]), np.sort(order[:held])


class DeviceTrainer:
    """A device's personalisation capability: its training key and its user.

    `key` is the device's own Ed25519 training key (made at manufacture, like the identity
    key; on hardware it stays in the secure element). The device's keyring trusts it for
    packages tagged with `user` as their tenant only, so a package this key signs cannot
    reach another user's adapters."""

    def __init__(self, device: Device, key: Ed25519PrivateKey, user: str) -> None:
        if not isinstance(key, Ed25519PrivateKey):
            raise DeviceStateError(f"a device training key is an Ed25519 private key, got {type(key).__name__}")
        if not isinstance(user, str) or not user:
            raise TrainingConfigError(f"user must be a non-empty string, got {user!r}")
        self.device = device
        self.user = user
        self._key = key
        device.keyring.add(key.public_key(), tenant=user)
        self._slot: LogitsSlot | None = None
        self._input: tuple[int, ...] | None = None

    def _model_facts(self) -> tuple[LogitsSlot, tuple[int, ...]]:
        """The trainable slot and the per-row input shape, read from the factory model once
        (its graph never changes; swaps write slot bytes only)."""
        if self._slot is None or self._input is None:
            d = self.device
            self._slot = find_logits_slot(d.model, d.slotmap.to_json())
            first = Interpreter(model_content=d.model).get_input_details()[0]
            self._input = tuple(int(s) for s in first["shape"][1:])
        return self._slot, self._input

    @property
    def adapter_name(self) -> str:
        return f"personal-{self.user}"

    def personalise(self, images: np.ndarray, labels: np.ndarray, config: PersonaliseConfig | None = None
                    ) -> TrainingOutcome:
        config = config or PersonaliseConfig()
        d = self.device
        start = d.timeline.now
        slot, input_shape = self._model_facts()
        x, y = self._checked(images, labels, input_shape)
        if config.training.rank > slot.r_max:
            raise TrainingConfigError(f"rank {config.training.rank} exceeds the slot's rank {slot.r_max}")
        if int(y.max()) >= slot.classes:
            raise TrainingConfigError(f"label {int(y.max())} is outside the model's {slot.classes} classes")
        train_rows, held_rows = split_samples(len(x), config.holdout, config.training.seed)
        plan = plan_ram(slot, len(x), int(np.prod(x.shape[1:])), len(train_rows), config.training)
        budget = min(config.budget, d.arena_budget - d.factory_arena_bytes())
        try:
            check_fits(plan, budget)
        except TrainingMemoryError:
            d.timeline.instant("train refused", cat="train", needed=plan.total, budget=budget)
            raise
        with d.timeline.span("personalise", cat="train", user=self.user, samples=len(x),
                             ram_bytes=plan.total) as details:
            replaced = self._replaced()
            right_before = self._correct(x[held_rows], y[held_rows], replaced)
            buffers = TrainerBuffers(slot, len(x), int(np.prod(x.shape[1:])), len(train_rows), config.training)
            buffers["samples"][...] = x.reshape(len(x), -1)
            buffers["labels"][...] = y[train_rows]
            self._save_activations(slot, buffers, train_rows, x.shape[1:])
            trained = train(buffers, slot, config.training)
            training_seconds = trained.work.seconds(d.profile)
            d.timeline.advance(training_seconds, "train", cat="train", steps=trained.work.steps,
                               macs=trained.work.forward_macs + trained.work.backward_macs,
                               updates=trained.work.parameter_updates)
            package = self._package(slot, trained.a, trained.b)
            final_loss = trained.final_loss
            del buffers, trained  # RAM is given back before the flash work
            digest = parse_package(package).content_digest
            d.update(package)  # store, then a slot on trial
            right_after = self._correct(x[held_rows], y[held_rows], self.adapter_name)
            before, after = float(right_before.mean()), float(right_after.mean())
            confirmed = gate(right_before, right_after, config.margin)
            if confirmed:
                d.confirm()  # the default active set stays: the user's requests name the adapter
            else:
                d.boot()  # a reset: the boot reverts the trial to the confirmed state
            details.update(confirmed=confirmed, accuracy_before=before, accuracy_after=after, digest=digest)
        sequence = int(parse_package(package).sequence)
        return TrainingOutcome(
            samples=len(x), train_samples=len(train_rows), holdout_samples=len(held_rows), replaced=replaced,
            accuracy_before=before, accuracy_after=after, confirmed=confirmed, peak_ram_bytes=plan.total, ram=plan,
            simulated_seconds=d.timeline.now - start, training_seconds=training_seconds, package_digest=digest,
            name=self.adapter_name, sequence=sequence, final_loss=final_loss)

    # ------------------------------------------------------------------ steps
    def _checked(self, images: np.ndarray, labels: np.ndarray, expected: tuple[int, ...]
                 ) -> tuple[np.ndarray, np.ndarray]:
        self.device.manager  # noqa: B018 - raises unless booted
        x, y = np.asarray(images), np.asarray(labels)
        if x.dtype != np.int8:
            raise TrainingConfigError(f"samples must be the model's int8 inputs, got {x.dtype}")
        if not MIN_SAMPLES <= len(x) <= MAX_SAMPLES:
            raise TrainingConfigError(f"on-device training takes {MIN_SAMPLES} to {MAX_SAMPLES} samples, got {len(x)}")
        if tuple(x.shape[1:]) != expected:
            raise TrainingConfigError(f"samples have shape {tuple(x.shape[1:])} per row, the model takes {expected}")
        if y.shape != (len(x),) or y.dtype.kind not in "iu" or (len(y) and (y.min() < 0)):
            raise TrainingConfigError(f"labels must be {len(x)} non-negative integers, got {y.dtype} {y.shape}")
        return x, y.astype(np.int64)

    def _replaced(self) -> str:
        """What the new adapter replaces for this user: their previous version, else the base."""
        return self.adapter_name if self.adapter_name in self.device.manager.adapters else BASE

    def _correct(self, x: np.ndarray, y: np.ndarray, adapters: str) -> np.ndarray:
        """Per held-out sample, whether `adapters` classifies it right (stays in this call)."""
        out = self.device.infer(x, adapters=adapters, tenant=self.user)[0]
        return np.asarray(out.argmax(axis=1) == y)

    def _save_activations(self, slot: LogitsSlot, buffers: TrainerBuffers, rows: np.ndarray,
                          input_shape: tuple[int, ...]) -> None:
        """The INT8 base (every gate off) on each training sample: the logits layer's int8
        input and the base logits, into the trainer's buffers. The device runs the samples one
        by one in its tensor arena and is charged one inference each; the simulation runs them
        as one batch, which gives every row the same bytes (the kernels are row-independent)."""
        d = self.device
        interp = Interpreter(model_content=d.image.buffer, experimental_preserve_all_tensors=True)
        off = gate_math.gate_rows(d.slotmap.gates, [{}] * len(rows), {})
        images = buffers["samples"][rows].reshape((len(rows), *input_shape))
        interp.run(*gate_math.graph_inputs([images], d.slotmap.gates, off))
        buffers["x"][...] = interp.get_tensor(slot.x_tensor).reshape(len(rows), -1)
        buffers["pre"][...] = interp.get_tensor(slot.pre_tensor).reshape(len(rows), -1)
        one = estimate_inference_seconds(d.cost.macs_per_row, d.profile, d.cost.weight_bytes)
        d.timeline.advance(one * len(rows), "train forward (base)", cat="train", rows=len(rows))

    def _package(self, slot: LogitsSlot, a: np.ndarray, b: np.ndarray) -> bytes:
        """The trained factors at the slot's scales, every other slot tensor zero, signed."""
        d = self.device
        a_q, b_q, _ = quantize_lora(a, b, 1.0, slot.a_scale, slot.b_scale, slot.r_max)
        layout = d.slotmap.to_json()["slots"][0]["tensors"]
        tensors = []
        for t in layout:
            value = np.zeros(t["shape"], np.dtype(t["dtype"]))
            if t["layer"] == slot.layer and t["role"] in ("A", "B"):
                value = (a_q if t["role"] == "A" else b_q).reshape(t["shape"])
            tensors.append((t["layer"], t["role"], value))
        previous = d.manager.last_sequence(self.adapter_name)
        sequence = 1 if previous is None else previous + 1
        metadata = {"name": self.adapter_name, "version": f"{sequence}.0.0", "sequence": sequence, "kind": "lora",
                    "tags": {"tenant": self.user, "user": self.user, "origin": "on-device"},
                    "base_digest": d.slotmap.base_digest,
                    "slot_plan": {"num_slots": d.slotmap.num_slots, "layers": sorted({t["layer"] for t in layout})},
                    "source": {"format": "on-device", "layer": slot.layer}}
        return build_package(metadata, tensors, self._key)


__all__ = ["DEFAULT_BUDGET", "DeviceTrainer", "PersonaliseConfig", "TrainingOutcome", "split_samples"]
