"""The `tinyswap` command line: one entry point, one subcommand per job.

`export`, `firmware_sim` and the oracles are imported lazily inside the subcommands that need
them, so the runtime package never depends on them (docs/architecture.md, "Layers" dependency rules).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from tinyswap.errors import InputFileError, ModelError, TinySwapError
from tinyswap.files import read_bytes, read_json, read_npy

if TYPE_CHECKING:
    from tinyswap.interpreter import Interpreter


def _random_inputs(details: list[dict[str, Any]], batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    inputs = []
    for d in details:
        shape = (batch, *[int(s) for s in d["shape"][1:]]) if len(d["shape"]) else ()
        dtype = np.dtype(d["dtype"])
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            inputs.append(rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype))
        else:
            inputs.append(rng.standard_normal(shape).astype(dtype))
    return inputs


def _load_inputs(paths: Sequence[str]) -> list[np.ndarray]:
    return [read_npy(p, "input") for p in paths]


def _open_model(path: str, profile: str = "tflm") -> Interpreter:
    """An Interpreter over the file at `path`; a file that is no usable model is refused naming it.

    The interpreter's own errors give the offset or operator but not the file (it may have been
    handed bytes), so the command line adds the path here.
    """
    from tinyswap.interpreter import Interpreter

    data = read_bytes(path, "model")
    try:
        return Interpreter(model_content=data, profile=profile)
    except ModelError as exc:
        raise InputFileError(path, f"not a valid .tflite model: {exc}", "model") from exc


def cmd_run(args: argparse.Namespace) -> int:
    interp = _open_model(args.model, args.profile)
    try:
        interp.allocate_tensors()
    except ModelError as exc:  # an unsupported operator or quantization: the file's fault, not the user's call
        raise InputFileError(args.model, str(exc), "model") from exc
    details = interp.get_input_details()
    if args.input:
        inputs = _load_inputs(args.input)
        source = ", ".join(args.input)
    else:
        inputs = _random_inputs(details, args.random, np.random.default_rng(args.seed))
        source = f"{args.random} random rows (seed {args.seed})"
    if len(inputs) != len(details):
        raise TinySwapError(f"model has {len(details)} inputs, got {len(inputs)} --input files")
    for d, x in zip(details, inputs):
        if x.dtype != d["dtype"]:
            raise TinySwapError(f"input {d['name']!r} needs dtype {np.dtype(d['dtype'])}, file has {x.dtype}")
    outputs = interp.run(*inputs)
    interp_out = interp.get_output_details()
    print(f"model     {args.model}")
    print(f"profile   {interp.profile.value}")
    print(f"inputs    {source}: " + ", ".join(f"{x.shape} {x.dtype}" for x in inputs))
    print(f"arena     {interp.arena_bytes} bytes (tinyswap activation plan; TFLite Micro's arena: tinyswap inspect)")
    for d, y in zip(interp_out, outputs):
        preview = np.array2string(y.reshape(y.shape[0], -1)[:4] if y.ndim else y, threshold=24)
        print(f"output    {d['name']!r} {y.shape} {y.dtype}\n{preview}")
    if args.compare:
        _compare_with_tflm(args.model, inputs, outputs)
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, **{f"output_{i}": y for i, y in enumerate(outputs)})
        print(f"wrote     {out}")
    return 0


def _compare_with_tflm(model_path: str, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> None:
    """Run every row through the TFLite Micro wheel (which cannot batch) and count equal bytes."""
    from tinyswap.oracles import run_tflm, tflm_interpreter

    model = read_bytes(model_path, "model")
    golden = tflm_interpreter(model)
    rows = inputs[0].shape[0] if inputs and inputs[0].ndim else 1
    equal = 0
    for r in range(rows):
        expected = run_tflm(model, [x[r : r + 1] for x in inputs], interpreter=golden)
        if all(np.array_equal(e.reshape(-1), y[r].reshape(-1)) for e, y in zip(expected, outputs)):
            equal += 1
    print(f"tflm      {equal}/{rows} rows identical byte for byte to the tflite_micro interpreter")
    if equal != rows:
        raise TinySwapError(f"{rows - equal} rows differ from TFLite Micro")


def _quant_text(q: Any) -> str:
    if q is None:
        return "-"
    if q.scale.size == 1:
        return f"scale={float(q.scale[0]):.6g} zp={int(q.zero_point[0])}"
    return f"per-axis[{q.quantized_dimension}] x{q.scale.size} scale~{float(q.scale.mean()):.3g}"


def inspect_model(path: str) -> dict[str, Any]:
    """A JSON-able description: operators, tensors, constant bytes, the arena (our activation plan
    and the TFLite Micro arena, `tinyswap.arena`), and the slots when `path` is a bundle
    directory (or a model with a slotmap.json beside it)."""
    slotmap = None
    if Path(path).is_dir():
        if not (Path(path) / "model.tflite").exists():
            raise InputFileError(path, "is a directory without model.tflite (expected a .tflite file or a bundle "
                                       "directory)", "model")
        path = str(Path(path) / "model.tflite")
    beside = Path(path).with_name("slotmap.json")
    if beside.exists():
        slotmap = read_json(beside, "slot map")
    from tinyswap.reader import operator_names

    interp = _open_model(path)
    model = interp.model
    graph = model.main
    arena: dict[str, Any] | None
    try:
        interp.allocate_tensors()
        from tinyswap.arena import tflm_arena_figure

        arena = tflm_arena_figure(model.data).to_json()  # measured with the wheel (else estimated), cached
        arena_error = None
    except TinySwapError as exc:
        arena, arena_error = None, str(exc)
    tensors = []
    constant_bytes = 0
    for t in graph.tensors:
        nbytes = model.buffers[t.buffer].length
        constant_bytes += nbytes
        tensors.append(
            {
                "index": t.index,
                "name": t.name,
                "shape": list(t.shape),
                "dtype": t.type.name.lower(),
                "quantization": _quant_text(t.quantization),
                "constant_bytes": nbytes,
            }
        )
    from tinyswap.model_cost import slot_cost_report
    from tinyswap.slotmap import SlotMap

    cost = slot_cost_report(model.data, SlotMap.from_json(slotmap) if slotmap else None)
    return {
        "file": path,
        "file_bytes": len(model.data),
        "cost": cost.to_json(),
        "latency_ms": _latency_ms(cost, constant_bytes),
        "description": model.description,
        "inputs": list(graph.inputs),
        "outputs": list(graph.outputs),
        "operators": [
            {
                "index": op.index,
                "ref": name.ref,  # how a slot plan for `tinyswap export MODEL.tflite` names it
                "name": name.output,  # ... or by this, its output tensor's name
                "op": op.op_name,
                "version": op.version,
                "inputs": list(op.inputs),
                "outputs": list(op.outputs),
                "options": {k: (v.name if hasattr(v, "name") else v) for k, v in op.options.items()},
            }
            for op, name in zip(graph.operators, operator_names(model))
        ],
        "tensors": tensors,
        "constant_bytes": constant_bytes,
        "arena": arena,
        "arena_error": arena_error,
        "metadata": sorted(model.metadata),
        "slotmap": slotmap,
    }


def _latency_ms(cost: Any, weight_bytes: int) -> dict[str, dict[str, float]]:
    """Estimated milliseconds per inference on each simulated device profile (the simulator's
    cycle model: MACs x cycles per MAC / clock, plus weights streamed from slow memory): the
    base alone, and as compiled (every slot branch runs whatever the gates say)."""
    from tinyswap.firmware_sim.profiles import DEVICES, estimate_inference_seconds

    return {name: {"base": 1e3 * estimate_inference_seconds(cost.base_macs, profile, weight_bytes),
                   "compiled": 1e3 * estimate_inference_seconds(cost.total_macs, profile, weight_bytes)}
            for name, profile in sorted(DEVICES.items())}


def cmd_inspect(args: argparse.Namespace) -> int:
    info = inspect_model(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['file']}: {info['file_bytes']} bytes, {len(info['operators'])} operators, "
          f"{len(info['tensors'])} tensors")
    print(f"constant bytes {info['constant_bytes']}")
    arena = info["arena"]
    if arena is None:
        print(f"arena     n/a ({info['arena_error']})")
    else:
        smallest = arena["tflm_smallest_bytes"]
        print(f"arena     TFLite Micro {arena['tflm_bytes']} B (kArenaSize"
              f"{', smallest ' + str(smallest) + ' B' if smallest is not None else ''}; {arena['method']})")
        print(f"          tinyswap activation plan {arena['tinyswap_plan_bytes']} B (activations only)")
    cost = info["cost"]
    macs, flash = cost["macs"], cost["flash"]
    if macs.get("branches") == "conditional":  # IF-gated branches: an inactive slot runs nothing
        active = macs["with_active_slots"]
        worth = (f"with 1 slot active {active[1]:,} (+{100 * (active[1] - macs['base']) / max(macs['base'], 1):.1f}%), "
                 f"all {macs['total']:,}; conditional branches run only for slots whose gate is on")
    else:
        worth = (f"as compiled {macs['total']:,} (+{100 * (macs['total'] - macs['base']) / max(macs['base'], 1):.1f}%; "
                 "every branch runs whatever the gates)")
    print(f"cost      {cost['operators']} operators ({cost['slot_operators']} in slot branches); MACs per row: "
          f"base {macs['base']:,}, per slot {[f'{m:,}' for m in macs['per_slot']]}, {worth}")
    print(f"flash     {flash['total']:,} B: base {flash['base']:,}, slots {flash['slots']:,} "
          f"(payload {flash['slot_payload']:,}, alignment {flash['alignment']})")
    for name, ms in info["latency_ms"].items():
        print(f"latency   {name:<10} base {ms['base']:.3f} ms, as compiled {ms['compiled']:.3f} ms (cycle model)")
    smap = info.get("slotmap")
    if smap:
        print(f"\nslots     {smap['num_slots']} (alignment {smap.get('alignment')}, headroom {smap.get('headroom')}), "
              f"base digest {smap['base_digest'][:16]}...")
        for gate in smap["gates"]:
            print(f"  gate {gate['slot']}: input {gate['input_index']} {gate['name']!r} range {gate['range']}")
        for slot in smap["slots"]:
            print(f"  slot {slot['slot']}: bytes [{slot['offset']}, {slot['offset'] + slot['length']}) "
                  f"= {slot['length']} B, {len(slot['tensors'])} tensors")
            for t in slot["tensors"]:
                print(f"      {t['layer']:<12} {t['kind']:<10} {t['role']:<7} {str(t['shape']):<16} {t['dtype']:<6} "
                      f"@{t['offset']} +{t['length']}")
    print("\noperators (a slot plan names one by #index or by its output tensor name)")
    for op in info["operators"]:
        opts = " ".join(f"{k}={v}" for k, v in op["options"].items() if v not in (None, 0, False))
        print(f"  {op['ref']:>4} {op['op']:<20} in={op['inputs']} out={op['outputs']} {opts}")
        print(f"       name {op['name']}")
    print("\ntensors")
    for t in info["tensors"]:
        const = f" const {t['constant_bytes']} B" if t["constant_bytes"] else ""
        print(f"  {t['index']:>3} {t['dtype']:<7} {str(t['shape']):<20} {t['quantization']:<32} {t['name']}{const}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    # Lazy imports: the runtime package never depends on the compiler (docs/architecture.md, "Layers").
    from tinyswap.export.bundle import check_section
    from tinyswap.export.front_door import export_model
    from tinyswap.export.slot_plan import SlotPlan

    check_section(args.section, args.section_align)  # before reading or compiling anything
    alignment = None
    if args.target:
        from tinyswap.firmware_sim.profiles import DEVICES

        if args.target not in DEVICES:
            raise TinySwapError(f"unknown device profile {args.target!r}; known: {', '.join(sorted(DEVICES))}")
        alignment = DEVICES[args.target].model_storage.sector_size  # slots erase as whole sectors there
    plan = SlotPlan.load(args.plan) if args.plan else None
    model = Path(args.model)
    if getattr(args, "npu", None):  # Vela compiles the base segments; the slots stay plain buffers
        return _export_npu(args, model, plan, alignment)
    print(f"compiling {model.name}: {plan.num_slots if plan else 0} slots on "
          f"{[t.layer for t in plan.targets] if plan else []}"
          + (f", slot alignment {max(alignment, plan.alignment) if plan else alignment} B ({args.target} sectors)"
             if alignment else ""))
    built = export_model(model, plan, calibration=args.calibration, out=args.out, weights=args.weights,
                         slot_alignment=alignment, lora_out=args.lora_out, section=args.section,
                         section_align=args.section_align)
    assert built.files is not None  # a bundle directory was given
    for path in built.files.all():
        print(f"wrote     {path} ({path.stat().st_size} bytes)")
    if args.lora_out and (Path(args.lora_out) / "adapter.json").exists():
        print(f"wrote     {args.lora_out} (the model's LoRA as an adapter: tinyswap pack it for this bundle)")
    return 0


def _export_npu(args: argparse.Namespace, model: Path, plan: Any, alignment: int | None) -> int:
    """`export --npu`: a JSON spec compiled, its base segments compiled by Vela and stitched."""
    from tinyswap.export.npu.bundle import export_npu_bundle
    from tinyswap.export.spec import load_spec

    if model.suffix.lower() != ".json":
        raise TinySwapError(f"--npu takes a model spec (.json); {model} is not one (export the Keras or PyTorch "
                            "model's spec first, or drop --npu)")
    if alignment is not None:
        raise TinySwapError("--npu keeps the plan's slot alignment; give it in the plan instead of --target")
    spec = load_spec(model, args.weights)
    cal_path = Path(args.calibration) if args.calibration else model.with_suffix(".calibration.npy")
    if not cal_path.exists():
        raise TinySwapError(f"no calibration data: pass --calibration FILE.npy (float32, batch first); "
                            f"{cal_path} does not exist")
    calibration = read_npy(cal_path, "calibration data")
    print(f"compiling {spec.name}: {len(spec.layers)} layers, "
          f"{plan.num_slots if plan else 0} slots on {[t.layer for t in plan.targets] if plan else []}")
    return export_npu_bundle(spec, plan, calibration, args.out, args.npu, section=args.section,
                             section_align=args.section_align, echo=print)


def cmd_keygen(args: argparse.Namespace) -> int:
    if args.device:
        from tinyswap.envelope import write_device_key_pair

        private, public = write_device_key_pair(args.out)
        print(f"wrote     {private} (stays on the device) and {public} (pack --encrypt-for it)")
        return 0
    from tinyswap.export.pack import keygen

    private, public = keygen(args.out)
    print(f"wrote     {private} (keep secret) and {public} (goes into device keyrings)")
    return 0


def _layer_pair(text: str) -> tuple[str, str]:
    """`--layer-map MODULE=LAYER`: one PEFT module path and the slot plan layer it fills."""
    module, sep, layer = text.partition("=")
    if not sep or not module or not layer:
        raise argparse.ArgumentTypeError(f"{text!r} is not MODULE=LAYER (e.g. layers.op2=#2)")
    return module, layer


def cmd_pack(args: argparse.Namespace) -> int:
    from tinyswap.envelope import device_key_id, load_device_public_key, seal_package
    from tinyswap.export.pack import load_adapter, load_private_key, pack

    bundle = Path(args.bundle)
    smap = read_json(bundle / "slotmap.json", "slot map")
    tags = {k: v for k, v in (("task", args.task), ("user", args.user), ("tenant", args.tenant)) if v}
    recipients = [load_device_public_key(path) for path in args.encrypt_for or ()]  # refused before packing
    slot_layers = {t["layer"] for slot in smap.get("slots", ())[:1] for t in slot.get("tensors", ())}
    adapter = load_adapter(args.adapter, name=args.name, version=args.version, sequence=args.sequence,
                           tags=tags or None, layer_map=dict(args.layer_map) if args.layer_map else None,
                           layer_names=slot_layers)
    signing_key = load_private_key(args.key)
    data, report = pack(adapter, smap, signing_key)
    if recipients:
        data = seal_package(data, signing_key, recipients)
    too_large = {layer: r["delta_relative_error"] for layer, r in report.layers.items()
                 if args.max_error is not None and r["delta_relative_error"] > args.max_error}
    out = Path(args.output)
    if not too_large:  # nothing is written for a package the threshold refuses
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        print(f"packed    {report.name} {adapter.version} (sequence {adapter.sequence}, {adapter.kind}, from "
              f"{adapter.source}): {len(data)} bytes, slot payload {report.payload_bytes} bytes -> {out}")
    if recipients and not too_large:
        print(f"encrypted AES-256-GCM for {len(recipients)} recipient(s): "
              + ", ".join(device_key_id(k).hex()[:16] for k in recipients))
    _print_pack_report(report.layers)
    if too_large:
        print(f"tinyswap: error: delta error above --max-error {args.max_error:.2%} on "
              + ", ".join(f"{layer} ({e:.2%})" for layer, e in sorted(too_large.items()))
              + f"; nothing written to {out}. Use slots of a higher max_rank, a smaller adapter rank, or a "
              "larger --max-error", file=sys.stderr)
        return 1
    return 0


def _print_pack_report(layers: dict[str, dict[str, Any]]) -> None:
    """One line per packed layer, and a warning line for every layer whose rank was reduced."""
    for layer, r in layers.items():
        if "clipped_a" in r:
            print(f"  {layer:<12} rank {r['rank_in']} -> slot rank {r['rank_slot']}: delta error "
                  f"{r['delta_relative_error']:.2%} (SVD {r['svd_relative_error']:.2%}, {r['factorisation']} factors), "
                  f"clipped A {r['clipped_a']:.2%} B {r['clipped_b']:.2%}")
        else:
            print(f"  {layer:<12} width {r['rank_in']} -> slot width {r['rank_slot']}: U D error "
                  f"{r['delta_relative_error']:.2%}, bias_D {r['bias_d_relative_error']:.2%}, "
                  f"bias_U {r['bias_u_relative_error']:.2%}, clipped D {r['clipped_d']:.2%} U {r['clipped_u']:.2%}")
        if r["rank_in"] > r["rank_slot"]:
            print(f"warning   {layer}: rank {r['rank_in']} reduced to the slot's {r['rank_slot']}, delta error "
                  f"{r['delta_relative_error']:.2%} (pack --max-error E refuses errors above E)")


def cmd_verify(args: argparse.Namespace) -> int:
    from tinyswap.commands.verify import run as run_verify

    return run_verify(args)


def cmd_bench(args: argparse.Namespace) -> int:
    # Lazy imports: the benchmarks pull in the compiler and the simulated device, which the
    # runtime (and every other subcommand) must not load.
    from tinyswap.resources import models_dir

    models = Path(args.models) if args.models else models_dir() / "tflm"
    out = Path(args.out)
    if args.swap:
        from tinyswap.benchmarks import swap

        print(swap.run(out, repeats=max(20, args.repeats * 10)).text)
        print(f"\nwrote {out / 'bench_swap.json'} and bench_swap.md")
        return 0
    if args.compiler:
        from tinyswap.benchmarks import compiler

        print(compiler.run(out, repeats=max(1, args.repeats // 10)).text)
        print(f"\nwrote {out / 'bench_compiler.json'} and bench_compiler.md")
        return 0
    if args.slots:
        from tinyswap.benchmarks import slot_overhead

        print(slot_overhead.run(out, args.repeats).text)
        print(f"\nwrote {out / 'bench_slots.json'} and bench_slots.md")
        return 0
    if args.interpreter:
        from tinyswap.benchmarks import interpreter

        # No --models: the standard set under the shipped models folder (see standard_models).
        chosen = Path(args.models) if args.models else models_dir()
        report = interpreter.run(chosen, out, args.repeats, busy=True) if args.busy else interpreter.run(
            chosen, out, args.repeats)
        print(report.text)
        print(f"\nwrote {out / 'bench_interpreter.json'} and bench_interpreter.md")
        return 0
    from tinyswap.benchmarks import suite

    print(suite.run(out, models, args.repeats).text)
    print(f"\nwrote {out / 'bench.md'} and bench.json (and each part's own files)")
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    # Lazy imports: firmware_sim (and, for a scenario's "build" section, export) are never
    # imported by the runtime package (docs/architecture.md, "Layers").
    from tinyswap.firmware_sim.scenario import load_scenario, run_scenario, validate_scenario

    path = Path(args.scenario)
    scenario = load_scenario(path)
    validate_scenario(scenario)  # every format error before anything is compiled or run
    profile = args.profile or scenario.get("profile") or "mcu-qspi"
    out = Path(args.out)
    from tinyswap.commands.sim import build_scenario, print_summary

    if "build" in scenario:
        scenario = build_scenario(scenario, path.parent, out / "build")
    identity, nonce = _sim_attestation(args)
    report = run_scenario(scenario, profile=profile, out_dir=out, base_dir=path.parent, progress=print,
                          identity_key=identity, attest_nonce=nonce)
    print_summary(report)
    return 0


def _sim_attestation(args: argparse.Namespace) -> tuple[Any, bytes | None]:
    """--identity-key / --attest-nonce of `sim`: the device's identity key and the nonce to answer."""
    if args.attest_nonce is not None and args.identity_key is None:
        raise TinySwapError("--attest-nonce needs --identity-key (the device's Ed25519 private key PEM)")
    if args.identity_key is None:
        return None, None
    from tinyswap.attestation import parse_nonce_hex
    from tinyswap.export.pack import load_private_key

    nonce = None if args.attest_nonce is None else parse_nonce_hex(args.attest_nonce)
    return load_private_key(args.identity_key), nonce


def cmd_demo(args: argparse.Namespace) -> int:
    from tinyswap.commands.demo import run as run_demo

    run_demo(Path(args.out))
    return 0


def cmd_attest_verify(args: argparse.Namespace) -> int:
    from tinyswap.commands.attest import verify

    verify(args.token, args.device_key, args.nonce, args.expect_slot or (), as_json=args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinyswap", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tinyswap {version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run inference on a .tflite model with the reference interpreter")
    run.add_argument("model")
    run.add_argument("--input", action="append", metavar="FILE.npy", help="one per model input, in order")
    run.add_argument("--random", type=int, default=1, metavar="N", help="without --input: N random rows")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--profile", choices=["tflm", "litert"], default="tflm")
    run.add_argument("--compare", action="store_true", help="check every row against the tflite_micro wheel")
    run.add_argument("--output", metavar="OUT.npz")
    run.set_defaults(func=cmd_run)

    insp = sub.add_parser("inspect", help="operators, tensors, quantization, constant and arena bytes")
    insp.add_argument("model")
    insp.add_argument("--json", action="store_true")
    insp.set_defaults(func=cmd_inspect)

    exp = sub.add_parser("export", help="compile a model (spec JSON, Keras file or int8 .tflite) and a slot plan "
                         "into a bundle")
    exp.add_argument("model", metavar="MODEL", help="model spec JSON (weights: the .npz of the same stem, or "
                     "--weights), Keras .keras/.h5 file (needs Keras), or int8 .tflite")
    exp.add_argument("-o", "--out", required=True, metavar="DIR")
    exp.add_argument("--plan", metavar="PLAN.json", help="slot plan; without it the base model has no slots")
    exp.add_argument("--weights", metavar="W.npz")
    exp.add_argument("--calibration", metavar="CAL.npy", help="float32 input rows, batch first (default for a spec: "
                     "<spec>.calibration.npy; optional for a .tflite)")
    exp.add_argument("--target", metavar="PROFILE", help="simulated device profile (mcu-qspi, mcu-ram, gateway): "
                     "align slots to its model flash's sectors")
    exp.add_argument("--lora-out", metavar="DIR", help="a Keras model with LoRA enabled: write its LoRA here as an "
                     "adapter directory for `tinyswap pack`")
    exp.add_argument("--section", metavar="NAME", help="place the C model array in this linker section (e.g. "
                     ".tinyswap_model, the model's own flash partition) instead of the application's .rodata")
    exp.add_argument("--section-align", type=int, metavar="N", help="alignment of that section in bytes (a power "
                     "of two, at least the slot plan's alignment, which is the default)")
    exp.add_argument("--npu", metavar="CONFIG", help="an Arm Ethos-U bundle (needs the npu extra, Arm's Vela): "
                     "ethos-u55-128, ethos-u55-256, ethos-u65-256 or ethos-u85-256; the base runs on the NPU, the "
                     "adapter branches on the CPU, slots stay plain buffers")
    exp.set_defaults(func=cmd_export)

    kg = sub.add_parser("keygen", help="create an Ed25519 signing key pair for adapter packages "
                        "(--device: an X25519 device key pair for encrypted packages)")
    kg.add_argument("-o", "--out", required=True, metavar="DIR")
    kg.add_argument("--device", action="store_true",
                    help="write a device (or device-group) X25519 key pair: device.key.pem and device.pub.pem")
    kg.set_defaults(func=cmd_keygen)

    pk = sub.add_parser("pack", help="quantize a float adapter to a bundle's slots and sign it")
    pk.add_argument("adapter", help="adapter directory: tinyswap (adapter.json + adapter.npz) or PEFT "
                    "(adapter_config.json + adapter_model.safetensors)")
    pk.add_argument("--name", help="adapter name (PEFT directories; default: tinyswap.json or the folder name)")
    pk.add_argument("--version", help="version string (PEFT directories)")
    pk.add_argument("--sequence", type=int, help="anti-rollback sequence number (PEFT directories)")
    pk.add_argument("--task")
    pk.add_argument("--user")
    pk.add_argument("--tenant")
    pk.add_argument("--bundle", required=True, metavar="DIR")
    pk.add_argument("--key", required=True, metavar="KEY.pem")
    pk.add_argument("-o", "--output", required=True, metavar="FILE")
    pk.add_argument("--max-error", type=float, metavar="E", help="refuse (exit 1, nothing written) when any layer's "
                    "delta error after rank reduction and quantization exceeds E (a fraction: 0.05 is 5%%)")
    pk.add_argument("--encrypt-for", action="append", metavar="PUB.pem",
                    help="encrypt the payload for this device public key (repeat for more recipients)")
    pk.add_argument("--layer-map", action="append", type=_layer_pair, metavar="MODULE=LAYER",
                    help="PEFT module path -> slot plan layer, e.g. layers.op2=#2 for a model with injected slots "
                    "(repeat per module)")
    pk.set_defaults(func=cmd_pack)

    vf = sub.add_parser("verify", help="check an adapter package offline: signature, with --bundle the base "
                        "binding and slot layout, with --device-key that it decrypts; print what it is")
    vf.add_argument("package", metavar="PACKAGE")
    vf.add_argument("--key", required=True, metavar="SIGNER.pub.pem", help="the signer's Ed25519 public key")
    vf.add_argument("--device-key", metavar="PRIV.pem", help="a device's X25519 private key: check it decrypts")
    vf.add_argument("--bundle", metavar="BUNDLE_DIR", help="check the base binding and slot layout against it")
    vf.set_defaults(func=cmd_verify)

    bench = sub.add_parser("bench", help="side-by-side benchmarks (interpreter vs TFLM and LiteRT, swaps vs PEFT, "
                           "simulated swaps vs storage floor, arena vs TFLM); one table")
    bench.add_argument("--models", default=None, metavar="DIR",
                       help="--interpreter: benchmark every .tflite in DIR (default: the standard set, the TFLite "
                       "Micro examples and the converter-made models that ship with tinyswap); the full table "
                       "takes its TFLite Micro example models from DIR")
    bench.add_argument("--busy", action="store_true",
                       help="--interpreter: every measurement again while another process spins on one core")
    bench.add_argument("--repeats", type=int, default=20)
    bench.add_argument("--interpreter", action="store_true", help="only the interpreter benchmark")
    bench.add_argument("--out", default="out/bench")
    bench.add_argument("--compiler", action="store_true", help="compile time and bundle size by model size and S")
    bench.add_argument("--slots", action="store_true",
                       help="only the slot overhead: MACs and invoke time of always-run vs conditional slot branches")
    bench.add_argument("--swap", action="store_true",
                       help="adapter switch / hot swap / cold swap beside PEFT's hotswap_adapter (repeats x 10)")
    bench.set_defaults(func=cmd_bench)

    sim = sub.add_parser("sim", help="run a scenario (OTA updates, requests, power cuts) on the simulated device")
    sim.add_argument("scenario", help="scenario JSON (format: docs/scenario-format.md; example: "
                     "models/digits/scenarios/day.json)")
    sim.add_argument("--profile", metavar="NAME", help="device profile: mcu-qspi, mcu-ram or gateway "
                     "(default: the scenario's 'profile', else mcu-qspi)")
    sim.add_argument("--out", default="out/sim", metavar="DIR",
                     help="report.json, trace.json, timeline.png, flash_ops.png (default: out/sim)")
    sim.add_argument("--identity-key", metavar="PRIV.pem", help="the device's attestation identity key "
                     "(Ed25519 private key PEM, e.g. from `tinyswap keygen`)")
    sim.add_argument("--attest-nonce", metavar="HEX", help="after the last step, write the device's attestation "
                     "token answering this nonce (32, 48 or 64 bytes in hex) to token.bin in --out")
    sim.set_defaults(func=cmd_sim)

    demo = sub.add_parser("demo", help="the end-to-end main job: export, pack, a scripted day on a simulated "
                          "device with power cuts, accuracy per adapter, switch latency per storage profile")
    demo.add_argument("--out", default="out/demo", metavar="DIR",
                      help="report.json, trace.json, timeline.png, flash_ops.png, latency.png (default: out/demo)")
    demo.set_defaults(func=cmd_demo)

    attest = sub.add_parser("attest", help="device attestation tokens (format: tinyswap/attestation.py)")
    attest_sub = attest.add_subparsers(dest="attest_command", required=True)
    av = attest_sub.add_parser("verify", help="check a device's attestation token against its identity key and "
                               "your nonce; print its claims")
    av.add_argument("token", metavar="TOKEN", help="the token file the device returned")
    av.add_argument("--device-key", required=True, metavar="DEVICE.pub.pem",
                    help="the device's Ed25519 identity public key (recorded at manufacture)")
    av.add_argument("--nonce", required=True, metavar="HEX", help="the nonce you sent: 32, 48 or 64 bytes in hex")
    av.add_argument("--expect-slot", action="append", metavar="N=DIGEST",
                    help="slot N must hold this package or content digest (N=empty: nothing); repeatable")
    av.add_argument("--json", action="store_true", help="print the claims as JSON")
    av.set_defaults(func=cmd_attest_verify)

    # `fleet`: the parser and the command live in tinyswap/fleet/command.py (imported lazily below).
    from tinyswap.fleet.command import add_parser as add_fleet_parser

    add_fleet_parser(sub)

    # `repo init|add|publish|rotate|status`: the parsers and the functions live in
    # tinyswap/commands/repo.py, which imports the publisher (and python-tuf) only when one runs.
    from tinyswap.commands.repo import add_parsers as add_repo_parsers

    add_repo_parsers(sub)
    # `firmware` and `fw apply`: the device install code (tinyswap/commands/fw.py, lazy imports).
    from tinyswap.commands.fw import add_parsers as add_fw_parsers

    add_fw_parsers(sub)
    return parser


def version() -> str:
    """The installed distribution's version; the package's own when running from a bare checkout."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("tinyswap")
    except PackageNotFoundError:
        from tinyswap import __version__

        return __version__


def _one_line(text: str) -> str:
    # A refusal is one line on stderr, so scripts and log scrapers see one record per failure.
    return " ".join(text.split())


def _os_error_text(exc: OSError) -> str:
    if exc.filename is None:
        return _one_line(str(exc))
    target = f" -> {exc.filename2}" if exc.filename2 is not None else ""
    problem = exc.strerror or str(exc)
    # The usual way to meet these is an output folder (-o, --out) that names a file.
    if isinstance(exc, FileExistsError) and not os.path.isdir(exc.filename):
        problem = "exists and is not a directory (expected a directory for the output)"
    elif isinstance(exc, NotADirectoryError):
        problem = "a part of this path is a file, not a directory"
    return _one_line(f"{exc.filename}{target}: {problem}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)  # inside: `--version | true` may meet a closed pipe too
        status = int(args.func(args))
        # Flush inside the try: a reader that went away (`| head`) must surface here, not at exit.
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader closed the pipe; stop quietly as `cat` does. Point stdout at /dev/null so
        # that Python's final flush at exit does not raise a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe
    except KeyboardInterrupt:
        print("tinyswap: interrupted", file=sys.stderr)
        return 130
    except TinySwapError as exc:
        # Every refusal tinyswap makes on purpose: the message names the file, tensor or slot.
        print(f"tinyswap: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:
        # The environment refused (an output path that is a file, a full disk, no permission):
        # not a bug, so no traceback. Other exceptions are bugs and keep their traceback.
        print(f"tinyswap: error: {_os_error_text(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
