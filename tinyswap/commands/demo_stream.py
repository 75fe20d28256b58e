"""The demo's streaming stretch: a keyword spotter of our own streams audio-like frames on a
second simulated device while its adapter is updated, rolled back and the device reboots.

The model is `models/streaming/kws_state_io` (converter-made: a ring buffer of the last 8
frames as state input and output, a 3x8 convolution, a dense layer; trained on digit rows, one
row per frame, as a keyword spotter hears one word). Two LoRA slots are injected on its
weighted layers (slots aligned to the QSPI NOR's 4 KB sectors); the user adapter's two versions
are seeded factors, not trained: they show the swap machinery, not an accuracy gain. The
stretch is `models/streaming/scenarios/kws_day.json`, which chooses the stream's policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from tinyswap.resources import models_dir

if TYPE_CHECKING:  # the compiler is imported inside functions only
    from tinyswap.export.build import BuiltBundle

STREAMING = models_dir() / "streaming"
KWS_MODEL = STREAMING / "kws_state_io.tflite"
SCENARIO = STREAMING / "scenarios" / "kws_day.json"
SECTOR = 4096  # the W25Q128JV's erase sector: a slot write must not erase base-model bytes
ADAPTER = "kws-user"


@dataclass(frozen=True)
class StreamingBundle:
    """The keyword spotter with slots, written as a bundle, and its signed adapter packages."""

    built: BuiltBundle
    packages: dict[str, bytes]  # scenario label -> package bytes


def lora_refs(model: bytes) -> list[str]:
    """The operators of `model` that can take a LoRA slot."""
    from tinyswap.export.inject import LORA_OPS
    from tinyswap.reader import operator_names, read_model

    return [n.ref for n in operator_names(read_model(model)) if n.op in LORA_OPS]


def seeded_lora(model: bytes, refs: list[str], name: str, version: int, *, rank: int = 2, scale: float = 0.1):
    """A float LoRA adapter on `refs` with seeded factors (version `version`, seed = version)."""
    from tinyswap.export.adapter_source import FloatAdapter
    from tinyswap.export.inject import base_weights

    rng = np.random.default_rng(version)
    targets = {}
    for ref in refs:
        kernel = base_weights(model, ref).kernel
        out, fan_in = kernel.shape[0], int(np.prod(kernel.shape[1:]))
        targets[ref] = (rng.standard_normal((rank, fan_in)) * scale, rng.standard_normal((out, rank)) * scale, 1.0)
    return FloatAdapter(name, f"{version}.0.0", version, {}, targets)


def build_kws(out_dir: Path) -> StreamingBundle:
    """The bundle (model, slot map, C sources, a fresh key pair) in `out_dir`, and packages
    "kws-user-v1" and "kws-user-v2" signed with that key."""
    from tinyswap.export.build import bundle_from_compiled
    from tinyswap.export.inject import inject_slots
    from tinyswap.export.pack import pack
    from tinyswap.export.slot_plan import SlotPlan, SlotTarget

    source = KWS_MODEL.read_bytes()
    refs = lora_refs(source)
    plan = SlotPlan(tuple(SlotTarget(r, "lora", 2, 0.5) for r in refs), num_slots=2, headroom=True,
                    alignment=SECTOR)
    built = bundle_from_compiled(inject_slots(source, plan, name="kws_state_io"), out_dir / "bundle",
                                 keys_dir=out_dir / "keys")
    assert built.keys is not None
    key = built.keys.private_key()
    packages = {f"{ADAPTER}-v{v}": pack(seeded_lora(source, refs, ADAPTER, v), built.slotmap, key)[0]
                for v in (1, 2)}
    return StreamingBundle(built, packages)


def run(out_dir: Path, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the keyword spotter and run its stretch of the day on an `mcu-qspi` device; the
    report (report.json, trace.json and plots) goes to `out_dir`."""
    from tinyswap.firmware_sim.scenario import load_scenario, run_scenario

    kws = build_kws(out_dir / "build")
    assert kws.built.bundle_dir is not None and kws.built.keys is not None
    scenario = load_scenario(SCENARIO)
    scenario.update(bundle=str(kws.built.bundle_dir.resolve()), keyring=[str(kws.built.keys.public_key_path.resolve())])
    return run_scenario(scenario, profile="mcu-qspi", out_dir=out_dir, base_dir=SCENARIO.parent,
                        packages=kws.packages, progress=progress, plots=False)


def summary(report: dict[str, Any]) -> list[str]:
    """The stretch's streams in a few lines (policy, frames per version, what the policy did)."""
    streams = report["streams"]
    lines = []
    for s in streams["per_stream"]:
        frames = ", ".join(f"{n} on {v}" for v, n in s["frames_by_version"].items())
        acc = ", ".join(f"{a['version']} {100 * a['accuracy']:.0f}% of {a['rows']}" for a in s["accuracy"])
        lines.append(f"  {s['stream']}: policy {s['policy']}" +
                     (f" (max age {s['max_age_frames']} frames)" if s["max_age_frames"] else "") +
                     f"; {s['frames']} frames: {frames}")
        lines.append(f"    pinned to an old version: {s['pinned_frames']} frames, {1e3 * s['pinned_seconds']:.1f} ms "
                     f"simulated; flushes: {s['flushes']} ({s['frames_lost']} frames of context lost); evictions: "
                     f"{s['evictions']}; state lost at reboot: {s['resets']} time(s) ({s['frames_lost_at_reset']} frames)")
        if acc:
            lines.append(f"    word accuracy after each word's last frame: {acc}")
    lines.append(f"  state: {streams['state_bytes']} B per stream state, peak {streams['peak_ram_bytes']} B of a "
                 f"{streams['ram_budget_bytes']} B RAM budget; every frame checked: no frame consumed state of "
                 f"another adapter set = {streams['no_frame_consumed_state_of_another_adapter_set']}")
    return lines


__all__ = ["ADAPTER", "KWS_MODEL", "SCENARIO", "StreamingBundle", "build_kws", "lora_refs", "run", "seeded_lora",
           "summary"]
