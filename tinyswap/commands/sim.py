"""`tinyswap sim` helpers: resolving a scenario's `build` section (compile the bundle, pack the
adapters with a throwaway key) and printing the run's summary. Imported lazily by the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tinyswap.export.build import BuiltBundle


def build_scenario(scenario: dict[str, Any], base: Path, build_dir: Path,
                   built: BuiltBundle | None = None) -> dict[str, Any]:
    """Resolve a scenario's `build` section: compile the bundle and pack its adapters with a
    throwaway Ed25519 key (a second one for `untrusted` entries) into `build_dir`; return the
    scenario with `bundle`, `keyring` and `packages` naming those files. `built`: this build
    section's bundle, already written with its key pair (the demo compiles the CNN once)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tinyswap.export.adapter_source import load_adapter
    from tinyswap.export.build import build_bundle
    from tinyswap.export.pack import pack
    from tinyswap.export.slot_plan import SlotPlan
    from tinyswap.export.spec import load_spec
    from tinyswap.firmware_sim.scenario import ScenarioFileError, ScenarioFormatError

    build = scenario["build"]
    unknown = sorted(set(build) - {"spec", "plan", "calibration", "adapters"})
    if unknown:
        raise ScenarioFormatError(f"scenario: field build.{unknown[0]}: unknown (known: spec, plan, calibration, "
                                  "adapters)", field=f"build.{unknown[0]}")
    if "bundle" in scenario:
        raise ScenarioFormatError("scenario: give either 'bundle' or 'build', not both", field="build")
    if not isinstance(build.get("spec"), str) or not isinstance(build.get("adapters", {}), dict):
        raise ScenarioFormatError("scenario: field build.spec: the model spec JSON path is required "
                                  "(and build.adapters is {label: adapter dir})", field="build.spec")
    spec_path = base / build["spec"]
    spec = load_spec(spec_path)
    plan = SlotPlan.load(base / build["plan"]) if build.get("plan") else None
    cal_path = base / build["calibration"] if build.get("calibration") else spec_path.with_suffix(".calibration.npy")
    try:
        calibration = np.load(cal_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ScenarioFileError(f"scenario: build.calibration: cannot read {cal_path}: {exc}",
                                field="build.calibration") from exc
    if built is None:
        built = build_bundle(spec, plan, calibration, build_dir / "bundle", keys_dir=build_dir / "keys")
    assert built.bundle_dir is not None and built.keys is not None, "a bundle on disk with its key pair"
    bundle_dir, smap = built.bundle_dir, built.slotmap
    keys = {False: built.keys.private_key(), True: Ed25519PrivateKey.generate()}  # trusted, untrusted
    public = built.keys.public_key_path
    (build_dir / "packages").mkdir(parents=True, exist_ok=True)
    packages: dict[str, str] = {}
    for label, entry in build.get("adapters", {}).items():
        entry = {"dir": entry} if isinstance(entry, str) else entry
        where = f"build.adapters[{label!r}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("dir"), str) \
                or set(entry) - {"dir", "name", "version", "sequence", "untrusted"}:
            raise ScenarioFormatError(f"scenario: field {where}: an adapter directory or {{dir, name, version, "
                                      "sequence, untrusted}", field=where)
        if label in scenario.get("packages", {}):
            raise ScenarioFormatError(f"scenario: field {where}: label {label!r} is also in 'packages'", field=where)
        adapter = load_adapter(base / entry["dir"], name=entry.get("name"), version=entry.get("version"),
                               sequence=entry.get("sequence"))
        data, _ = pack(adapter, smap, keys[bool(entry.get("untrusted", False))])
        target = build_dir / "packages" / f"{label}.tsap"
        target.write_bytes(data)
        packages[label] = str(target.resolve())
    print(f"built     {bundle_dir} ({len(built.data)} bytes, {smap['num_slots']} slots) and {len(packages)} "
          f"packages signed with a throwaway key -> {build_dir / 'packages'}")
    keyring = scenario.get("keyring", [])
    keyring = [keyring] if isinstance(keyring, str) else list(keyring)
    resolved = {k: v for k, v in scenario.items() if k != "build"}
    resolved.update(bundle=str(bundle_dir.resolve()), keyring=[str(public.resolve()), *keyring],
                    packages={**scenario.get("packages", {}), **packages})
    return resolved


def print_summary(report: dict[str, Any], emit: Any = print) -> None:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    def clock(seconds: float) -> str:
        h, rest = divmod(seconds, 3600)
        return f"{int(h)}:{int(rest // 60):02d}:{rest % 60:06.3f}"

    t = report["time"]
    steps = report["steps"]
    emit(f"\nsummary   {len(steps)} steps on {report['profile']['name']}: {clock(t['simulated_s'])} simulated, "
          f"{t['simulated_s'] - t['idle_s']:.3f} s of it busy; {t['wall_seconds']:.2f} s wall")
    for a in report["accuracy"]:
        emit(f"accuracy  {a['adapter']:<24} on {a['dataset']:<10} {pct(a['accuracy']):>6} ({a['rows']} rows)")
    for name, arms in report["experiments"].items():
        text = ", ".join(f"{arm} {s['requests']} requests, accuracy {pct(s['mean'])}" for arm, s in arms.items())
        emit(f"experiment {name}: {text}")
    boots = report["boots"]
    emit(f"power     {len(report['power_cuts'])} power cuts, {len(boots)} boots "
          f"({sum(1 for b in boots if b['reverted'])} reverted a trial, "
          f"slots cleared: {sum(len(b['cleared_slots']) for b in boots)})")
    final = report["final"]
    if final.get("active") is not None:
        active = ", ".join(f"{n}@{a['version']} (slot {a['slot']})" for n, a in final["active"].items()) or "__base__"
        emit(f"final     active {active}; {'on trial' if final['trial'] else 'confirmed'}")
    ram, flash = report["budget"]["ram"], report["budget"]["flash"]
    store = flash["store"]
    emit(f"budget    RAM: arena {ram['arena_bytes']} / {ram['arena_budget']} B, package cache {ram['cache_used']} / "
          f"{ram['cache_budget']} B, {ram['free_bytes']} of {ram['ram_bytes']} B unplanned; flash: model "
          f"{flash['model']['model_bytes']} B ({flash['model']['slot_bytes']} B of slots), store "
          f"{store.get('used_bytes', '?')} / {store['size']} B; base-model sectors erased "
          f"{flash['model']['base_sector_erases_during_run']} times")
    streams = report.get("streams")
    if streams is not None:
        for st in streams["per_stream"]:
            frames = ", ".join(f"{n} on {v}" for v, n in st["frames_by_version"].items())
            emit(f"stream    {st['stream']} ({st['policy']}): {st['frames']} frames ({frames}); flushes {st['flushes']}, "
                 f"evictions {st['evictions']}, pinned {st['pinned_frames']}, lost at resets {st['frames_lost_at_reset']}")
        emit(f"streams   state {streams['peak_ram_bytes']} / {streams['ram_budget_bytes']} B RAM at peak; no frame "
             f"consumed state of another adapter set: {streams['no_frame_consumed_state_of_another_adapter_set']}")
    outputs = report.get("outputs", {})
    for key in ("report", "trace", "timeline", "flash_ops"):
        if key in outputs:
            note = " (open in ui.perfetto.dev or chrome://tracing)" if key == "trace" else ""
            emit(f"wrote     {outputs[key]}{note}")
