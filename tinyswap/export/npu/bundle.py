"""An Ethos-U bundle: the base on the NPU (Vela, one operator per segment), the adapter branches
on the CPU, every slot a plain aligned buffer at an offset the (post-Vela) slot map records.

`build_npu_bundle` partitions the compiled graph (`segments`), compiles every segment with Vela
(`vela`), moves any operator Vela leaves on the CPU out of its segment and compiles again, and
stitches the result (`stitch`). `write_npu_bundle` writes the usual bundle files for the
stitched model (`tinyswap.export.bundle.write_bundle`: model.tflite, slotmap.json, C sources,
manifest, device install code) and beside them `twin.tflite` with its slot map, every segment
as Vela got it and as Vela returned it (`npu/`), and `npu.json`, which records where every
segment's Vela bytes lie in model.tflite with their digests and Vela's figures.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tinyswap.arena import ArenaFigure, tflm_arena_figure
from tinyswap.export.bundle import slot_map, write_bundle
from tinyswap.export.compiler import Compiled, compile_model
from tinyswap.export.npu.config import NpuConfig
from tinyswap.export.npu.errors import ConditionalBranchesError, StitchError
from tinyswap.export.npu.segments import Partition, Segment, partition
from tinyswap.export.npu.stitch import NpuOperator, Windows, npu_operator, stitch, twin
from tinyswap.export.npu.vela import ETHOS_U_CUSTOM_CODE, VelaRun, compile_with_vela, require_vela
from tinyswap.export.slot_plan import SlotBranches, SlotPlan
from tinyswap.export.spec import ModelSpec
from tinyswap.export.tflite_builder import build_model
from tinyswap.reader import read_model

NPU_MANIFEST = "npu.json"
TWIN_MODEL = "twin.tflite"
TWIN_SLOTMAP = "twin.slotmap.json"
SEGMENT_DIR = "npu"


@dataclass(frozen=True)
class NpuBundle:
    """A compiled model stitched for one Ethos-U configuration, with its reference twin."""

    config: NpuConfig
    source: Compiled  # what the compiler made (every operator a builtin)
    partition: Partition
    operators: tuple[NpuOperator, ...]  # one per segment, in order
    stitched: Compiled  # the NPU bundle's model
    twin: Compiled  # the same graph with each segment's original operators
    windows: Windows

    @property
    def data(self) -> bytes:
        return self.stitched.data

    def segment_models(self) -> list[bytes]:
        """Each segment's `.tflite` exactly as Vela got it."""
        return [build_model(n.segment.model()) for n in self.operators]

    def vela_spans(self) -> list[dict[str, Any]]:
        """Every Vela constant (command stream, read-only area) of every segment: where it lies in
        the stitched model, its length and SHA-256 (equal to Vela's own bytes)."""
        built = self.stitched.built
        spans = []
        for n in self.operators:
            for t in n.constants:
                offset, length = built.buffer_ranges[t]
                spans.append({"segment": n.segment.index, "tensor": t.name, "offset": offset, "length": length,
                              "sha256": hashlib.sha256(self.data[offset : offset + length]).hexdigest()})
        return spans


def _compile_segments(source: Compiled, config: NpuConfig) -> tuple[Partition, list[NpuOperator]]:
    cpu: set[int] = set()
    assert source.model is not None
    index_of = {id(op): i for i, op in enumerate(source.model.operators)}
    while True:
        part = partition(source, cpu)
        runs: list[tuple[Segment, VelaRun]] = []
        moved: set[int] = set()
        for seg in part.segments:
            run = compile_with_vela(build_model(seg.model()), config, f"segment{seg.index}")
            runs.append((seg, run))
            if run.npu_operators == 1 and run.cpu_operators == 0:
                continue
            if run.npu_operators == 0:  # nothing of it runs on the NPU
                moved |= {index_of[id(op)] for op in seg.operators}
                continue
            parsed = read_model(run.output)
            left = {parsed.main.tensors[i].name for op in parsed.main.operators
                    if op.op_name != f"CUSTOM:{ETHOS_U_CUSTOM_CODE}" for i in op.outputs}
            found = {index_of[id(op)] for op in seg.operators if any(t.name in left for t in op.outputs)}
            if not found:
                raise StitchError(f"segment {seg.index}: Vela left operators on the CPU that match none of the "
                                  f"segment's operators (outputs {sorted(left)})")
            moved |= found
        if not moved:
            return part, [npu_operator(seg, run) for seg, run in runs]
        cpu |= moved


def build_npu_bundle(source: Compiled, config: NpuConfig | str) -> NpuBundle:
    """Compile `source`'s base segments with Vela for `config` and stitch them with its branches."""
    _refuse_conditional(source.plan)
    config = NpuConfig.parse(str(config))
    part, ops = _compile_segments(source, config)
    stitched, windows = stitch(source, part, ops)
    return NpuBundle(config, source, part, tuple(ops), stitched, twin(source, part), windows)


def _refuse_conditional(plan: SlotPlan | None) -> None:
    if plan is not None and plan.branches == SlotBranches.CONDITIONAL:
        raise ConditionalBranchesError()


def npu_arena(bundle: NpuBundle) -> ArenaFigure:
    """TFLite Micro's arena for the NPU model, estimated: the twin's measured arena plus every
    segment's window (no host runtime has the `ethos-u` kernel to measure it with)."""
    base = tflm_arena_figure(bundle.twin.data)
    total = base.tflm_bytes + bundle.windows.total
    return ArenaFigure(total, None, base.plan_bytes, False,
                       f"estimated: the reference twin's TFLite Micro arena ({base.tflm_bytes} B, "
                       f"{'measured' if base.measured else 'estimated'}) plus the Ethos-U segments' arena windows "
                       f"({bundle.windows.total} B)", None)


def npu_manifest(bundle: NpuBundle) -> dict[str, Any]:
    """`npu.json`: the configuration, Vela's version and figures per segment, the Vela byte spans
    in model.tflite, the twin, and the CPU side's shape."""
    first = bundle.operators[0].run if bundle.operators else None
    return {
        "config": str(bundle.config), "vela_version": first.version if first else None,
        "system_config": first.summary.system_config if first else None,
        "model_sha256": hashlib.sha256(bundle.data).hexdigest(), "twin": TWIN_MODEL,
        "twin_sha256": hashlib.sha256(bundle.twin.data).hexdigest(),
        "transitions": bundle.partition.transitions, "cpu_operators": len(bundle.partition.cpu_operators),
        "arena_windows_bytes": bundle.windows.total,
        "segments": [{
            "index": n.segment.index, "first_operator": n.segment.first,
            "operators": [op.op for op in n.segment.operators],
            "inputs": [t.name for t in n.segment.inputs], "outputs": [t.name for t in n.segment.outputs],
            "segment_sha256": hashlib.sha256(model).hexdigest(), "vela_sha256": hashlib.sha256(n.run.output).hexdigest(),
            "window_offset": start, "window_bytes": n.window,
            "macs": n.run.summary.macs, "cycles_npu": n.run.summary.cycles_npu,
            "cycles_total": n.run.summary.cycles_total, "memory_kib": dict(n.run.summary.memory_kib),
        } for n, model, start in zip(bundle.operators, bundle.segment_models(), bundle.windows.starts)],
        "vela_spans": bundle.vela_spans(),
    }


def write_npu_bundle(bundle: NpuBundle, out_dir: str | Path, *, section: str | None = None,
                     section_align: int | None = None) -> dict[str, Path]:
    """Write the bundle files for the stitched model, then the twin, the segments and npu.json."""
    out = Path(out_dir)
    paths = write_bundle(bundle.stitched, out, npu_arena(bundle),
                         notes=f"Arm Ethos-U ({bundle.config}, Vela): TFLite Micro with the ethos-u kernel and the "
                               "reference kernels for the adapter branches", section=section,
                         section_align=section_align)
    paths["twin"] = out / TWIN_MODEL
    paths["twin"].write_bytes(bundle.twin.data)
    paths["twin_slotmap"] = out / TWIN_SLOTMAP
    slot_map(bundle.twin).save(paths["twin_slotmap"])
    (out / SEGMENT_DIR).mkdir(exist_ok=True)
    for n, model in zip(bundle.operators, bundle.segment_models()):
        (out / SEGMENT_DIR / f"segment{n.segment.index}.tflite").write_bytes(model)
        (out / SEGMENT_DIR / f"segment{n.segment.index}_vela.tflite").write_bytes(n.run.output)
    paths["npu"] = out / NPU_MANIFEST
    paths["npu"].write_text(json.dumps(npu_manifest(bundle), indent=2))
    return paths


def export_npu_bundle(spec: ModelSpec, plan: SlotPlan | None, calibration: np.ndarray, out_dir: str | Path,
                      config: str, *, section: str | None = None, section_align: int | None = None,
                      echo: Callable[[str], None] = lambda line: None) -> int:
    """`tinyswap export --npu CONFIG`: refuse a missing Vela or an unknown configuration before
    compiling, then compile, stitch and write the bundle into `out_dir`; `echo` gets one line per
    file and a summary. Returns the command's exit status (0)."""
    _refuse_conditional(plan)
    version = require_vela()
    npu = NpuConfig.parse(config)
    bundle = build_npu_bundle(compile_model(spec, plan, calibration), npu)
    paths = write_npu_bundle(bundle, out_dir, section=section, section_align=section_align)
    for path in paths.values():
        echo(f"wrote     {path} ({path.stat().st_size} bytes)")
    macs = sum(n.run.summary.macs for n in bundle.operators)
    echo(f"npu       {npu} (Vela {version}): {len(bundle.operators)} ethos-u operators ({macs} MACs), "
         f"{len(bundle.partition.cpu_operators)} CPU operators for the adapter branches, "
         f"{bundle.partition.transitions} NPU/CPU transitions per inference")
    return 0


__all__ = ["NPU_MANIFEST", "NpuBundle", "TWIN_MODEL", "TWIN_SLOTMAP", "build_npu_bundle", "export_npu_bundle", "npu_arena",
           "npu_manifest", "write_npu_bundle"]
