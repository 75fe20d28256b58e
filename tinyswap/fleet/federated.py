"""Federated adapters: rounds in which sampled devices train the logits LoRA on their own
samples with the device's trainer (`tinyswap/firmware_sim/training.py`, unchanged: the int8
base forward once per sample, fake-quantised LoRA branch, Adam, within the 64 KB budget), send
only their factors (`ClientUpdate`, serialised: the one thing that crosses the device
boundary), and the server aggregates, packages and signs.

Each round's clients train a fresh LoRA from the base (B = 0, A from the round's seed, which
the server broadcasts so every client of a round starts from the same A); the server keeps
the running sample-weighted mean over every update received so far, so a round adds
participants and data. Two aggregations are computed every round and both are measured on
held-out rows that no device holds (bit-exact INT8 through the shadow evaluator):

* `deltas`: the mean of the effective deltas B_i A_i ([classes, K]), refactored to the slot's
  rank by truncated SVD (B = U_r S_r^1/2, A = S_r^1/2 V_r^T): exactly the mean delta when its
  rank fits the slot, else its best rank-r approximation;
* `factors`: the mean of the A_i and the mean of the B_i, whose product is not the mean of
  the products (cross terms B_i A_j).

Optional clipping: each client's delta scaled down to `clip_norm` (Frobenius) before the mean
(no noise is added: this is not differential privacy, and no secure aggregation is simulated).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from tinyswap.firmware_sim.training import (
    LogitsSlot,
    TrainerBuffers,
    TrainingConfig,
    check_fits,
    find_logits_slot,
    plan_ram,
    train,
)
from tinyswap.fleet.errors import FleetPrivacyError
from tinyswap.fleet.scenario import Aggregation, FleetScenario
from tinyswap.interpreter import Interpreter
from tinyswap.swap import gates as gate_math

TRAINING_BUDGET = 64 * 1024  # the personalisation step's default RAM budget
POOL_FRACTION = 0.5  # of a domain's test rows: the devices' local data; the rest is held out
_HEADER = struct.Struct("<4sIIIII")  # magic, round, client, samples, rank, features
MAGIC = b"TSFU"


@dataclass(frozen=True)
class ClientUpdate:
    """What a client sends: its LoRA factors and how many samples trained them. Nothing else."""

    round: int
    client: int
    samples: int
    a: np.ndarray  # float32 [rank, K]
    b: np.ndarray  # float32 [classes, rank]

    def to_bytes(self, slot: LogitsSlot) -> bytes:
        """The uplink payload. Refuses anything but the slot's two float32 LoRA factors
        (A [rank <= the slot's, K], B [classes, rank]): a sample-shaped array fails here."""
        a, b = np.asarray(self.a), np.asarray(self.b)
        rank = a.shape[0] if a.ndim == 2 else -1
        if a.dtype != np.float32 or b.dtype != np.float32 or not 1 <= rank <= slot.r_max \
                or a.shape != (rank, slot.features) or b.shape != (slot.classes, rank):
            raise FleetPrivacyError(f"a client update carries the slot's LoRA factors only ([r <= {slot.r_max}, "
                                    f"{slot.features}] and [{slot.classes}, r]), got {a.dtype}{a.shape} and "
                                    f"{b.dtype}{b.shape}")
        return _HEADER.pack(MAGIC, self.round, self.client, self.samples, a.shape[0], a.shape[1]) \
            + a.astype("<f4").tobytes() + b.astype("<f4").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> ClientUpdate:
        magic, rnd, client, samples, rank, features = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise FleetPrivacyError("not a client update")
        body = np.frombuffer(data, "<f4", offset=_HEADER.size)
        a = body[: rank * features].reshape(rank, features).astype(np.float32)
        b = body[rank * features:].reshape(-1, rank).astype(np.float32)
        return cls(rnd, client, samples, a, b)


def pool_and_holdout(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(np.random.SeedSequence([seed, 0xFED])).permutation(rows)
    cut = int(rows * POOL_FRACTION)
    return np.sort(order[:cut]), np.sort(order[cut:])


class LocalTrainer:
    """A client's training step, as the device runs it (one per worker; data stays in the call)."""

    def __init__(self, model: bytes, slotmap: dict[str, Any]) -> None:
        from tinyswap.slotmap import SlotMap

        self.model, self.gates = model, SlotMap.from_json(slotmap).gates
        self.slot: LogitsSlot = find_logits_slot(model, slotmap)
        self.interpreter = Interpreter(model_content=model, experimental_preserve_all_tensors=True)

    def train(self, images: np.ndarray, labels: np.ndarray, config: TrainingConfig, rnd: int, client: int) -> bytes:
        n = len(images)
        plan = plan_ram(self.slot, n, int(np.prod(images.shape[1:])), n, config)
        check_fits(plan, TRAINING_BUDGET)
        buffers = TrainerBuffers(self.slot, n, int(np.prod(images.shape[1:])), n, config)
        buffers["samples"][...] = images.reshape(n, -1)
        buffers["labels"][...] = labels
        off = gate_math.gate_rows(self.gates, [{}] * n, {})  # the base: every gate off
        self.interpreter.run(*gate_math.graph_inputs([images], self.gates, off))
        buffers["x"][...] = self.interpreter.get_tensor(self.slot.x_tensor).reshape(n, -1)
        buffers["pre"][...] = self.interpreter.get_tensor(self.slot.pre_tensor).reshape(n, -1)
        trained = train(buffers, self.slot, config)
        return ClientUpdate(rnd, client, n, trained.a.copy(), trained.b.copy()).to_bytes(self.slot)


def aggregate(updates: list[ClientUpdate], method: Aggregation, rank: int, clip_norm: float | None
              ) -> tuple[np.ndarray, np.ndarray]:
    """The shared factors (A [rank, K], B [classes, rank]) from every update so far."""
    weights = np.array([u.samples for u in updates], np.float64)
    weights /= weights.sum()

    def clipped(u: ClientUpdate) -> float:
        if clip_norm is None:
            return 1.0
        norm = float(np.linalg.norm(u.b.astype(np.float64) @ u.a.astype(np.float64)))
        return min(1.0, clip_norm / norm) if norm > 0 else 1.0

    if method is Aggregation.FACTORS:
        a = sum(w * u.a.astype(np.float64) for w, u in zip(weights, updates))
        b = sum(w * clipped(u) * u.b.astype(np.float64) for w, u in zip(weights, updates))
        pad = rank - a.shape[0]
        return np.pad(a, ((0, pad), (0, 0))), np.pad(b, ((0, 0), (0, pad)))
    delta = sum(w * clipped(u) * (u.b.astype(np.float64) @ u.a.astype(np.float64)) for w, u in zip(weights, updates))
    u_, s, vt = np.linalg.svd(delta, full_matrices=False)
    r = min(rank, len(s))
    root = np.sqrt(s[:r])
    b, a = u_[:, :r] * root, root[:, None] * vt[:r]
    return np.pad(a, ((0, rank - r), (0, 0))), np.pad(b, ((0, 0), (0, rank - r)))


def run_federated(scenario: FleetScenario, server: Any, engine: Any, say: Callable[[str], None]
                  ) -> tuple[dict[str, Any], Any]:
    """The rounds; returns the report section and the chosen aggregation's float adapter."""
    from tinyswap.export.adapter_source import FloatAdapter, Lora
    from tinyswap.fleet.assets import sign

    fed = scenario.federated
    assert fed is not None
    d = server.devices
    _, held = pool_and_holdout(len(d.labels), scenario.seed)
    slot = find_logits_slot(d.model, d.slotmap)
    base = float(server.base_correct[fed.domain][held].mean())
    updates: list[ClientUpdate] = []
    accuracy: dict[str, list[float]] = {m.value: [] for m in Aggregation}
    rounds_out = []
    chosen = None
    shadow = server.shadow
    for rnd in range(fed.rounds):
        payloads = [p for part in engine.call("federated_round", rnd) for p in part]
        received = [ClientUpdate.from_bytes(p) for p in payloads]
        updates.extend(received)
        row: dict[str, Any] = {"round": rnd + 1, "clients": len(received),
                               "uplink_bytes": int(sum(len(p) for p in payloads)), "accuracy": {}}
        for method in Aggregation:
            a, b = aggregate(updates, method, slot.r_max, fed.clip_norm)
            adapter = FloatAdapter(d.adapter_names[fed.domain], "0", 0, {"domain": fed.domain, "origin": "federated"},
                                   {slot.layer: Lora(a.astype(np.float32), b.astype(np.float32), 1.0)})
            package = sign(server, adapter, rnd + 1, server.keys[0])
            # a first install lands in slot 0
            acc = float(shadow.correct_in_slot0({fed.domain: package})[fed.domain][held].mean())
            accuracy[method.value].append(round(acc, 6))
            row["accuracy"][method.value] = round(acc, 6)
            if method is fed.aggregation:
                chosen = adapter
        rounds_out.append(row)
        say(f"  federated round {rnd + 1}: {len(received)} clients, {row['uplink_bytes']} bytes up, held-out "
            f"{fed.domain} accuracy " + ", ".join(f"{m} {a:.1%}" for m, a in row["accuracy"].items())
            + f" (base {base:.1%})")
    return {"domain": fed.domain, "aggregation": fed.aggregation.value, "base_accuracy": round(base, 6),
            "held_out_rows": int(len(held)), "rounds": rounds_out, "accuracy_by_method": accuracy,
            "clip_norm": fed.clip_norm,
            "uplink_bytes": int(sum(r["uplink_bytes"] for r in rounds_out))}, chosen


__all__ = ["ClientUpdate", "LocalTrainer", "aggregate", "pool_and_holdout", "run_federated"]
