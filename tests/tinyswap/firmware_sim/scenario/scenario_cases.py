"""Shared cases of the scenario tests: a working folder (bundle, key, packages, a labelled
dataset) and a scenario that uses every step kind on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives import serialization

from tinyswap.export.bundle import write_bundle
from tinyswap.swap import SwapManager

from tests.adapter_cases import KEY
from tests.conftest import REPO
from tests.tinyswap.firmware_sim.device_cases import KEYRING, bundle_for, inputs, packages_for

DAY = REPO / "models" / "digits" / "scenarios" / "day.json"
DEMO = REPO / "models" / "digits" / "scenarios" / "demo.json"


def make_work(d: Path) -> Path:
    """A folder with a bundle, the public key, packages A1 / A2 / B1 / a corrupted one, and a
    dataset whose labels are the base model's own predictions (so the base scores 100%)."""
    b, p = bundle_for(4096), packages_for(4096)
    write_bundle(b.compiled, d / "bundle")
    (d / "keys").mkdir()
    (d / "keys" / "key.pub.pem").write_bytes(KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (d / "pkgs").mkdir()
    for label in ("A1", "A2", "B1"):
        (d / "pkgs" / f"{label}.tsap").write_bytes(p[label])
    bad = bytearray(p["C1"])
    bad[-1] ^= 0x01  # the last signature byte
    (d / "pkgs" / "bad.tsap").write_bytes(bytes(bad))
    x = inputs(48, seed=3)
    y = SwapManager(bytearray(b.data), b.smap, KEYRING).infer(x, adapters="__base__")[0].argmax(axis=1)
    np.savez(d / "rows.npz", x=x, y=y)
    return d


def scenario(**changes) -> dict:
    base = {
        "name": "every-step",
        "bundle": "bundle",
        "keyring": ["keys/key.pub.pem"],
        "packages": {"A1": "pkgs/A1.tsap", "A2": "pkgs/A2.tsap", "B1": "pkgs/B1.tsap", "bad": "pkgs/bad.tsap"},
        "datasets": {"rows": "rows.npz"},
        "router": {"rules": [{"match": {"user": "bob"}, "adapter": "B"}],
                   "experiments": [{"name": "ab", "arms": {"A": 50, "__base__": 50}, "match": {"task": "ab"}}]},
        "steps": [
            {"kind": "install", "package": "A1"},                                        # 0
            {"kind": "swap", "package": "A1", "permanent": True},                        # 1
            {"kind": "activate", "adapters": "A", "permanent": True},                    # 2
            {"kind": "infer", "dataset": "rows", "rows": 16},                            # 3 active set
            {"kind": "infer", "dataset": "rows", "rows": 24, "adapters": "__base__"},    # 4
            {"kind": "update", "package": "B1", "permanent": True},                      # 5
            {"kind": "infer", "dataset": "rows", "rows": 12, "per_row": ["A", "B", "__base__"]},  # 6
            {"kind": "infer", "dataset": "rows", "rows": 40, "batch": 16,                # 7
             "requests": [{"user": "bob"}, {"user": "u-{row}", "task": "ab"}]},
            {"kind": "power_cut", "when": "before", "op": 3},                            # 8
            {"kind": "update", "package": "A2", "permanent": True},                      # 9 cut before the commit
            {"kind": "reboot"},                                                          # 10
            {"kind": "infer", "dataset": "rows", "rows": 8},                             # 11
            {"kind": "update", "package": "A2", "at": "10min"},                          # 12 on trial
            {"kind": "confirm"},                                                         # 13
            {"kind": "rollback", "name": "A", "permanent": True},                        # 14
            {"kind": "prefetch", "name": "B"},                                           # 15
            {"kind": "delete", "name": "B", "permanent": True},                          # 16
            {"kind": "wait", "seconds": "1h"},                                           # 17
            {"kind": "install", "package": "bad", "expect_error": "SignatureError"},    # 18
            {"kind": "power_cut"},                                                       # 19 now
            {"kind": "reboot"},                                                          # 20
            # the example CNN has no LoRA slot on its logits layer: on-device training is refused
            {"kind": "train", "user": "bea", "dataset": "rows", "rows": 40,              # 21
             "expect_error": "TrainingPlanError"},
        ],
    }
    base.update(changes)
    return base


def with_step(step: dict, **changes) -> dict:
    """The scenario with two steps: an install, then `step` (index 1)."""
    sc = scenario(**changes)
    sc["steps"] = [{"kind": "install", "package": "A1"}, step]
    return sc
