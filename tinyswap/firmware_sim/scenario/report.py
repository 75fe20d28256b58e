"""The run's report: per-step records, the final state, RAM and flash budgets, and the outputs
written beside report.json (trace.json and the plots)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from tinyswap.errors import TinySwapError
from tinyswap.firmware_sim.device import BootReport, Device
from tinyswap.firmware_sim.errors import DeviceStateError
from tinyswap.firmware_sim.flash import FlashCounters
from tinyswap.firmware_sim.metadata import encode_record
from tinyswap.firmware_sim.model_image import FlashModelImage
from tinyswap.firmware_sim.report_log import LOG_NAME
from tinyswap.firmware_sim.scenario.stream import streams_report

if TYPE_CHECKING:
    from tinyswap.firmware_sim.scenario.runner import Run
    from tinyswap.firmware_sim.scenario.validate import Scenario

REPORT_FORMAT = "tinyswap-sim-report"
REPORT_VERSION = 1


class Outcome(enum.Enum):
    """How a step ended (the report's `outcome` strings)."""

    OK = "ok"
    EXPECTED_ERROR = "expected error"
    POWER_LOST = "power lost"
    ERROR = "error"


@dataclass
class StepRecord:
    """What one step did; `to_json` gives the report's per-step object."""

    index: int
    kind: str
    target: Any
    note: str | None
    at_s: float | None
    start_s: float
    outcome: Outcome = Outcome.OK
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    cut: dict[str, Any] | None = None  # the power cut armed for this step, when one was
    duration_s: float = 0.0
    time_by_category: dict[str, float] = field(default_factory=dict)
    flash: dict[str, dict[str, int]] = field(default_factory=dict)
    mutating_ops: int = 0
    active_after: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "kind": self.kind, "target": self.target, "note": self.note,
                               "at_s": self.at_s, "start_s": self.start_s, "outcome": self.outcome.value,
                               "error": self.error, "result": self.result}
        if self.cut is not None:
            out["cut"] = self.cut
        out.update(duration_s=self.duration_s, time_by_category=self.time_by_category, flash=self.flash,
                   mutating_ops=self.mutating_ops, active_after=self.active_after)
        return out


def ops(c: FlashCounters) -> dict[str, int]:
    return {"read_ops": c.read_ops, "read_bytes": c.read_bytes, "program_ops": c.program_ops,
            "program_bytes": c.program_bytes, "erase_ops": c.erase_ops, "erase_bytes": c.erase_bytes}


def active(d: Device) -> dict[str, Any] | None:
    """The default active set with versions and slots, or None while the device is down."""
    if not d.booted:
        return None
    return {n: {"version": a.version, "weight": a.weight, "slot": a.slot} for n, a in d.active_adapters().items()}


def boot_dict(report: BootReport) -> dict[str, Any]:
    return {"record_sequence": report.record_sequence, "reverted": report.reverted, "restored": report.restored,
            "cleared_slots": report.cleared_slots, "active": report.active, "errors": report.errors}


def build_report(run: Run, scenario: Scenario, baseline: Mapping[str, FlashCounters],
                 failure: tuple[int, str] | None) -> dict[str, Any]:
    d = run.device
    p = d.profile
    experiments = {e.name: {arm: {"requests": s.requests, "outcomes": s.outcomes, "mean": s.mean}
                            for arm, s in e.stats.items()} for e in d.experiments}
    sim_time = {"simulated_s": d.timeline.now, "idle_s": d.timeline.totals.get("idle", 0.0),
                "by_category": dict(d.timeline.totals)}  # before the budget's store probe reads flash
    budget = _budget(d, baseline)
    if run.streams is not None:  # stream state is RAM set aside too (device_streams.py)
        ram = budget["ram"]
        ram["stream_state_budget"] = run.streams.budget
        ram["planned_bytes"] += run.streams.budget
        ram["free_bytes"] -= run.streams.budget
    return {
        "format": REPORT_FORMAT, "version": REPORT_VERSION,
        "scenario": {k: v for k, v in (("name", scenario.name), ("description", scenario.description))
                     if v is not None},
        "profile": {"name": p.name, "description": p.description, "model_placement": p.model_placement,
                    "model_storage": d.model_storage.name, "store_storage": d.store_storage.name,
                    "worst_case_timings": d.timeline.worst},
        "completed": failure is None,
        "failed": None if failure is None else {"step": failure[0], "error": failure[1]},
        "steps": [r.to_json() for r in run.records],
        "accuracy": [{"adapter": a, "dataset": ds, "rows": c, "correct": k, "accuracy": k / c}
                     for (a, ds), (c, k) in run.accuracy.items()],
        "experiments": experiments,
        "boots": run.boots,
        "power_cuts": run.cuts,
        "final": _final(d),
        "budget": budget,
        "time": sim_time,
        "device_log": d.report_log_json(),
        "on_device_training": run.training,
        "streams": streams_report(run),
    }


def _final(d: Device) -> dict[str, Any]:
    status = d.status()
    if not d.booted:
        return {"status": status}
    state = d.manager.export_state()
    return {"status": status, "active": active(d),
            "adapters": {n: {"current": a["current"], "versions": a["versions"],
                             "version": d.manager.adapter_info(n).version} for n, a in state["adapters"].items()},
            "slots": [{"slot": s["slot"], "adapter": d.manager.resident().get(s["slot"])} for s in state["slots"]],
            "trial": d.trial}


def _budget(d: Device, baseline: Mapping[str, FlashCounters]) -> dict[str, Any]:
    p = d.profile
    model_copy = 0 if d.xip else len(d.model)
    arena = d.arena_bytes or 0
    cache_used = d.manager.cache.used if d.booted else None
    ram = {"ram_bytes": p.ram_bytes, "sram_bytes": p.sram_bytes, "ext_ram_bytes": p.ext_ram_bytes,
           "arena_bytes": d.arena_bytes, "arena_budget": d.arena_budget,
           # arena_bytes is TFLite Micro's arena (tinyswap.arena): how it was obtained
           "arena_method": d.factory_arena().method if d.arena_bytes is not None else None,
           "cache_budget": d.cache_budget, "cache_used": cache_used, "model_copy_bytes": model_copy,
           "model_budget": p.model_budget, "planned_bytes": arena + d.cache_budget + model_copy,
           "free_bytes": p.ram_bytes - (arena + d.cache_budget + model_copy)}
    if d.booted:
        c = d.manager.cache
        ram["cache_stats"] = {"hits": c.hits, "misses": c.misses, "evictions": c.evictions}
    L = d.layout
    model_flash = d.flashes["model"]
    g = model_flash.geometry
    slots = [{"slot": s.slot, "offset": s.offset, "length": s.length} for s in d.slotmap.slots]
    slot_sectors = {sec for s in d.slotmap.slots for sec in g.sectors_in(L.model.offset + s.offset, s.length)}
    model_sectors = set(g.sectors_in(L.model.offset, L.model.size))
    base_sectors = sorted(model_sectors - slot_sectors)
    now = model_flash.snapshot() - baseline["model"]
    record_bytes = None
    if d.metadata.current is not None:
        record_bytes = len(encode_record(d.metadata.current.sequence, d.metadata.current.payload))
    store: dict[str, Any] = {"part": "model" if L.store_shared else "store", "offset": L.store.offset,
                             "size": L.store.size}
    mounted = _store_or_none(d) if d.booted else None
    if mounted is not None:
        try:
            free = mounted.free_bytes()
            names = mounted.list()
            store.update(used_bytes=L.store.size - free, free_bytes=free,
                         packages=sum(1 for n in names if n != LOG_NAME),  # the report log is no package
                         report_log_bytes=_log_bytes(mounted) if LOG_NAME in names else None)
        except TinySwapError as exc:
            store["error"] = str(exc)
    parts = {}
    for n, f in d.flashes.items():
        fg = f.geometry
        wear = [f.wear(s) for s in range(fg.sector_count)]
        total = f.snapshot() - baseline[n]
        parts[n] = {"name": fg.name, "size": fg.size, "sectors": fg.sector_count,
                    "sector_size": fg.uniform_sector_size, "erase_value": fg.erase_value,
                    "write_align": fg.write_align,
                    "storage": (d.model_storage if n == "model" else d.store_storage).name,
                    "max_sector_wear": max(wear) if wear else 0, "run": ops(total)}
    flash = {
        "parts": parts,
        "model": {"part": "model", "offset": L.model.offset, "size": L.model.size, "model_bytes": len(d.model),
                  "slot_bytes": sum(s["length"] for s in slots), "slots": slots,
                  "base_sector_erases_during_run": sum(now.sector_erases[s] for s in base_sectors),
                  "base_sector_programs_during_run": sum(now.sector_programs[s] for s in base_sectors)},
        "metadata": {"part": "model", "offset": L.metadata.offset, "size": L.metadata.size,
                     "areas": L.metadata_areas, "area_capacity": d.metadata.capacity, "record_bytes": record_bytes},
        "store": store,
    }
    image = _image_or_none(d)
    if isinstance(image, FlashModelImage):
        flash["model"]["slot_sector_erase_counts"] = {str(k): v for k, v in sorted(image.erase_counts.items())}
    return {"ram": ram, "flash": flash}


def _log_bytes(store: Any) -> int | None:
    try:
        return len(store.read(LOG_NAME))
    except TinySwapError:
        return None


def _store_or_none(d: Device) -> Any:
    """The mounted adapter store, or None (the public probe raises when it is not mounted)."""
    try:
        return d.store
    except DeviceStateError:
        return None


def _image_or_none(d: Device) -> Any:
    """The model image, or None while the device is down (the public probe raises then)."""
    try:
        return d.image
    except DeviceStateError:
        return None


def write_outputs(report: Mapping[str, Any], device: Device, out_dir: Path, *, plots: bool = True) -> dict[str, Path]:
    """trace.json and the plots (report.json is written by the caller, with these paths in it)."""
    from tinyswap.firmware_sim.scenario_plots import plot_flash_ops, plot_timeline

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"report": out_dir / "report.json", "trace": device.write_trace(out_dir / "trace.json")}
    if not plots:
        return paths
    title = str(report.get("scenario", {}).get("name", "scenario"))
    paths["timeline"] = plot_timeline(device.timeline.events, out_dir / "timeline.png",
                                      title=f"{title} on {device.profile.name}: device timeline (simulated time)")
    paths["flash_ops"] = plot_flash_ops(report["steps"], out_dir / "flash_ops.png",
                                        title=f"{title} on {device.profile.name}: flash operations per step")
    return paths


def clock(seconds: float) -> str:
    """Simulated time as the progress lines print it (hours:minutes:seconds)."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h):3d}:{int(m):02d}:{s:06.3f}"


def secs(seconds: float) -> str:
    """A duration in the unit that reads best."""
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


__all__ = ["Outcome", "REPORT_FORMAT", "StepRecord", "active", "boot_dict", "build_report", "clock", "jsonable",
           "ops", "secs", "write_outputs"]
