"""Running a validated scenario: read what it names, build the device, dispatch each step to
its kind's handler, record what happened, write the outputs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyswap.attestation import check_nonce
from tinyswap.errors import TinySwapError
from tinyswap.firmware_sim.device import Device
from tinyswap.firmware_sim.device_streams import DeviceStreams
from tinyswap.firmware_sim.errors import PowerLoss
from tinyswap.firmware_sim.flash import PowerCut
from tinyswap.firmware_sim.profiles import DEVICES
from tinyswap.firmware_sim.scenario.errors import ScenarioFileError, ScenarioFormatError, ScenarioStepFailed
from tinyswap.firmware_sim.scenario.files import (
    Dataset,
    Inputs,
    coerce_dataset,
    first_use,
    load_dataset,
    load_keyring,
    load_package,
    prepare,
)
from tinyswap.firmware_sim.scenario.registry import Step
from tinyswap.firmware_sim.scenario.report import (
    Outcome,
    StepRecord,
    active,
    boot_dict,
    build_report,
    clock,
    jsonable,
    ops,
    secs,
    write_outputs,
)
from tinyswap.firmware_sim.scenario.stream import prepare_frames, stream_datasets
from tinyswap.firmware_sim.scenario.validate import DeviceOptions, parse_scenario
from tinyswap.router import Experiment, RouterError
from tinyswap.slotmap import SlotMap

@dataclass
class Run:
    """The runner's state while the steps run (what handlers read and add to)."""

    device: Device
    packages: dict[str, bytes]
    inputs: dict[str, Inputs]
    progress: Callable[[str], None]
    records: list[StepRecord] = field(default_factory=list)
    boots: list[dict[str, Any]] = field(default_factory=list)
    cuts: list[dict[str, Any]] = field(default_factory=list)
    accuracy: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    pending_cut: tuple[int, PowerCut] | None = None  # (the arming step, the cut) for the next step
    trainers: dict[str, Any] = field(default_factory=dict)  # user -> the device's `DeviceTrainer`
    training: list[dict[str, Any]] = field(default_factory=list)  # each `train` step's aggregates
    device_options: DeviceOptions = DeviceOptions()
    stream_frames: dict[str, Inputs] = field(default_factory=dict)  # `stream` steps' datasets, as frames
    streams: DeviceStreams | None = None  # set up by the first `stream` step
    stream_accuracy: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # stream -> version -> [rows, right]


def run_scenario(scenario: Mapping[str, Any], *, profile: str, out_dir: str | Path, base_dir: str | Path,
                 packages: Mapping[str, bytes] | None = None, datasets: Mapping[str, Any] | None = None,
                 progress: Callable[[str], None] | None = None, identity_key: Ed25519PrivateKey | None = None,
                 attest_nonce: bytes | None = None, plots: bool = True) -> dict[str, Any]:
    """Run a scenario on a new device of `profile`; write report.json, trace.json, timeline.png
    and flash_ops.png into `out_dir`; return the report.

    base_dir: where relative paths in the scenario start (the scenario file's folder).
    packages / datasets: labels given in memory (added to, and overriding, the scenario's).
    progress: called with one line per step (default: nothing is printed).
    identity_key / attest_nonce: the device's attestation identity; with a nonce, the device's
        token answering it after the last step is written to token.bin (`tinyswap attest verify`).
    plots: False writes report.json and trace.json only (no PNG plots: a second run inside the
        demo, kept fast).

    Everything is checked (the format, then every file it names, the datasets against the
    model input, the router) before the device is built: a bad scenario touches no flash.
    """
    wall0 = time.perf_counter()
    if "build" in scenario:
        raise ScenarioFormatError("scenario: field 'build' is resolved by the `tinyswap sim` command (it compiles "
                                  "and packs with the export package); give 'bundle', 'keyring' and 'packages'",
                                  field="build")
    if profile not in DEVICES:
        raise ScenarioFormatError(f"unknown device profile {profile!r} (profiles: {sorted(DEVICES)})", field="profile")
    packages = dict(packages or {})
    datasets = dict(datasets or {})
    spec = parse_scenario(scenario, packages=packages, datasets=datasets)
    if attest_nonce is not None:
        check_nonce(attest_nonce)  # refused before anything runs
        if identity_key is None:
            raise ScenarioFormatError("an attestation nonce needs the device's identity key", field="attest")
    steps = spec.steps
    base = Path(base_dir)
    out = Path(out_dir)
    say = progress or (lambda line: None)

    # ---- files
    if spec.bundle is None:
        raise ScenarioFormatError("scenario: field 'bundle' is missing (a bundle directory)", field="bundle")
    bundle = base / spec.bundle
    for name in ("model.tflite", "slotmap.json"):
        if not (bundle / name).is_file():
            raise ScenarioFileError(f"scenario: bundle: {bundle / name} does not exist (a bundle directory from "
                                    f"`tinyswap export`)", field="bundle")
    if not spec.keyring:
        raise ScenarioFormatError("scenario: field 'keyring' is missing (public-key PEM files)", field="keyring")
    keyring = load_keyring(spec.keyring, base)
    pkg_bytes = {label: load_package(base / p, label, first_use(steps, "package", label))
                 for label, p in spec.packages.items() if label not in packages}
    pkg_bytes.update({k: bytes(v) for k, v in packages.items()})
    raw_ds: dict[str, Dataset] = {
        label: load_dataset(ds, base, label, first_use(steps, "dataset", label))
        for label, ds in spec.datasets.items() if label not in datasets}
    raw_ds.update({k: coerce_dataset(v, k) for k, v in datasets.items()})
    try:
        model = (bundle / "model.tflite").read_bytes()
    except OSError as exc:
        raise ScenarioFileError(f"scenario: bundle: cannot read {bundle / 'model.tflite'}: {exc.strerror or exc}",
                                field="bundle") from exc
    from tinyswap.interpreter import Interpreter

    detail = Interpreter(model_content=model).get_input_details()[0]
    streamed, other = stream_datasets(steps)  # a dataset only streamed is frames, not model inputs
    inputs = {label: prepare(ds, label, detail) for label, ds in raw_ds.items() if label in other or label not in streamed}
    frames = prepare_frames(steps, raw_ds, model, _slotmap(bundle), spec.device) if streamed else {}
    try:
        experiments = [Experiment(e.name, dict(e.arms), e.key, dict(e.match)) for e in spec.experiments]
    except RouterError as exc:
        raise ScenarioFormatError(f"scenario: router.experiments: {exc}", field="router.experiments") from exc

    # ---- the device
    device = Device(profile, bundle, None, keyring, store_bytes=spec.device.store_bytes, worst=spec.device.worst)
    if spec.device.report_log:  # the report's `device_log`: what the device itself says it did
        device.enable_report_log(spec.device.report_log)
    run = Run(device, pkg_bytes, inputs, say, device_options=spec.device, stream_frames=frames)
    for rule in spec.rules:
        device.add_rule(rule.match, rule.adapter)
    for experiment in experiments:
        device.add_experiment(experiment)

    name = spec.name if spec.name is not None else "scenario"
    say(f"{name}: {len(steps)} steps on {profile} ({device.profile.description})")
    if identity_key is not None:
        device.provision_identity(identity_key)
    device.provision()
    first = device.boot()
    run.boots.append({"step": None, "time_s": device.timeline.now, **boot_dict(first)})
    baseline = {n: f.snapshot() for n, f in device.flashes.items()}
    say(f"{clock(device.timeline.now)}  provisioned and booted ({secs(device.timeline.now)})")

    failure: tuple[int, str] | None = None
    for step in steps:
        failure = run_step(run, step)
        if failure is not None:
            break

    report = build_report(run, spec, baseline, failure)
    report["time"]["wall_seconds"] = round(time.perf_counter() - wall0, 3)
    paths = write_outputs(report, device, out, plots=plots)
    if attest_nonce is not None:
        token = _attest(device, attest_nonce, out / "token.bin")
        if token is not None:
            paths["token"] = token
        say(f"attestation token: {token if token is not None else 'none (the device is not booted at the end)'}")
    report["outputs"] = {k: str(v) for k, v in paths.items()}
    (out / "report.json").write_text(json.dumps(jsonable(report), indent=2) + "\n")
    if failure is not None:
        index, message = failure
        raise ScenarioStepFailed(f"{message} (outputs written to {out})", step=index, report=report,
                                 kind=steps[index].kind)
    return report


def _slotmap(bundle: Path) -> SlotMap:
    """The bundle's slot map (which graph inputs are gates), read as the device will read it."""
    try:
        return SlotMap.from_json(json.loads((bundle / "slotmap.json").read_text()))
    except (OSError, ValueError, TinySwapError) as exc:
        raise ScenarioFileError(f"scenario: bundle: cannot read {bundle / 'slotmap.json'}: {exc}",
                                field="bundle") from exc


def _attest(device: Device, nonce: bytes, path: Path) -> Path | None:
    """The device's answer to `nonce` after the last step (None while it is down)."""
    if not device.booted:
        return None
    path.write_bytes(device.attest(nonce))
    return path


def run_step(run: Run, step: Step) -> tuple[int, str] | None:
    """Run one step through its kind's handler and record it; returns (index, message) when
    the scenario must stop."""
    d = run.device
    tl = d.timeline
    if step.at is not None and step.at > tl.now:
        tl.advance(step.at - tl.now, "idle", cat="idle", track="device", until=step.at)
    start = tl.now
    snaps = {n: f.snapshot() for n, f in d.flashes.items()}
    totals = dict(tl.totals)
    cut = None
    cut_step = -1
    if run.pending_cut is not None:
        cut_step, cut = run.pending_cut
        run.pending_cut = None
        d.arm_power_cuts([cut])
    record = StepRecord(step.index, step.kind, step.target(), step.note, step.at, start)
    expected = step.expect_error
    failure = None
    where = f"step {step.index} ({step.kind})"
    try:
        record.result = step.params.run(run, step) or {}
        if expected:
            record.outcome = Outcome.ERROR
            record.error = f"expected {expected}, but the step succeeded"
            failure = (step.index, f"{where}: expected {expected}, but the step succeeded")
    except PowerLoss as exc:
        fired = cut is not None and not d.power.powered
        record.error = f"{type(exc).__name__}: {exc}"
        if fired:
            assert cut is not None
            record.outcome = Outcome.POWER_LOST
            info = {"step": step.index, "armed_by": cut_step, "when": cut.when.value, "op": cut.op, "fired": True,
                    "time_s": tl.now, "message": str(exc)}
            run.cuts.append(info)
            record.cut = info
            run.records[cut_step].result.update(fired=True, time_s=tl.now)
            tl.instant("power cut", cat="power", when=cut.when.value, op=cut.op, step=step.index)
            if expected and not _matches(exc, expected):
                record.outcome = Outcome.ERROR
                failure = (step.index, f"{where}: expected {expected}, but power was cut")
        elif expected and _matches(exc, expected):
            record.outcome = Outcome.EXPECTED_ERROR
        else:
            record.outcome = Outcome.ERROR
            failure = (step.index, f"{where}: {type(exc).__name__}: {exc}")
    except TinySwapError as exc:
        record.error = f"{type(exc).__name__}: {exc}"
        if expected and _matches(exc, expected):
            record.outcome = Outcome.EXPECTED_ERROR
        else:
            record.outcome = Outcome.ERROR
            failure = (step.index, f"{where}: {type(exc).__name__}: {exc}")
    finally:
        if cut is not None:
            if d.power.powered:
                note = f"not reached: step {step.index} made only {d.mutations} mutating flash operations"
                run.records[cut_step].result.update(fired=False, note=note)
                record.cut = {"armed_by": cut_step, "when": cut.when.value, "op": cut.op, "fired": False,
                              "note": note}
            d.arm_power_cuts([])
    record.duration_s = tl.now - start
    record.time_by_category = {k: v - totals.get(k, 0.0) for k, v in tl.totals.items() if v - totals.get(k, 0.0) > 0}
    record.flash = {n: ops(f.snapshot() - snaps[n]) for n, f in d.flashes.items()}
    record.mutating_ops = sum(v["program_ops"] + v["erase_ops"] for v in record.flash.values())
    record.active_after = active(d)
    run.records.append(record)
    run.progress(progress_line(step, record))
    return failure


def _matches(exc: BaseException, name: str) -> bool:
    return any(cls.__name__ == name for cls in type(exc).__mro__)


def progress_line(step: Step, record: StepRecord) -> str:
    """One line per step: simulated time, index, kind, what happened (the kind's own words)."""
    what = step.params.describe(record)
    if record.outcome is Outcome.POWER_LOST:
        assert record.cut is not None
        what = f"POWER LOST ({record.cut['when']} flash write {record.cut['op']} of this step)"
    elif record.outcome is not Outcome.OK:
        what = f"{record.outcome.value.upper()}: {record.error}" + (f" | {what}" if what else "")
    if record.cut is not None and record.cut.get("fired") is False:
        what += f" (armed power cut at flash write {record.cut['op']} not reached)"
    return (f"{clock(record.start_s)}  step {step.index:>2} {step.kind:<9} {what}  "
            f"[{secs(record.duration_s)}, {record.mutating_ops} flash writes]")


__all__ = ["Run", "progress_line", "run_scenario", "run_step"]
