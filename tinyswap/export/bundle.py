"""Bundle writers: `model.tflite`, `slotmap.json`, `model_data.h/.cc` and `manifest.json`.

The slot map is derived from where the builder actually placed each slot tensor's bytes: this
module turns the compiler's bookkeeping into typed slot-tensor and gate records and hands them
to the slot map's writer (`tinyswap.slotmap.build_slotmap`), which owns the format, the ranges,
the base digest and the frames.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

import tinyswap
from tinyswap.arena import ArenaFigure, tflm_arena_figure
from tinyswap.export.compiler import Compiled
from tinyswap.export.errors import SectionError
from tinyswap.slotmap import AdapterKind, GateInfo, SlotMap, SlotTensorInfo, build_slotmap
from tinyswap.slotmap import slot_ranges as _ranges_of
from tinyswap.model_cost import slot_cost_report


def slot_tensor_records(compiled: Compiled) -> list[SlotTensorInfo]:
    """Every slot tensor as the builder placed it in the file, in the compiler's order."""
    built = compiled.built
    records = []
    for st in compiled.slot_tensors:
        t = st.tensor
        offset, length = built.buffer_ranges[t]
        q = t.quant
        records.append(SlotTensorInfo(
            st.slot, st.layer, AdapterKind(st.kind), st.role, built.tensor_indices[t], offset, length,
            tuple(int(d) for d in t.shape), np.dtype(t.dtype).name, tuple(float(v) for v in q.scale), t.name,
            tuple(int(v) for v in q.zero_point), int(q.quantized_dimension), built.tensor_subgraphs.get(t, 0)))
    return records


def gate_records(compiled: Compiled) -> list[GateInfo]:
    """One gate per slot: graph input D + s, after the model's D data inputs (D = 1 for
    compiled specs; a model with slots injected keeps all of its own inputs first)."""
    assert compiled.plan is not None
    data_inputs = 1 if compiled.model is None else len(compiled.model.inputs) - len(compiled.gates)
    return [GateInfo(s, g.name, data_inputs + s, float(g.quant.scale[0]), int(g.quant.zero_point[0]),
                     compiled.plan.gate_max,
                     compiled.built.tensor_indices[g], tuple(int(d) for d in g.shape))
            for s, g in enumerate(compiled.gates)]


def slot_ranges(compiled: Compiled) -> list[tuple[int, int]]:
    """(offset, length) of every slot's byte range (see `tinyswap.slotmap.slot_ranges`)."""
    assert compiled.plan is not None
    return _ranges_of(slot_tensor_records(compiled), compiled.plan.alignment)


def slot_map(compiled: Compiled) -> SlotMap:
    """The typed slot map of a compiled model (`.to_json()` is the `slotmap.json` object)."""
    plan = compiled.plan
    if plan is None:
        return build_slotmap(compiled.built.data, [], [])
    return build_slotmap(compiled.built.data, slot_tensor_records(compiled), gate_records(compiled),
                         alignment=plan.alignment, headroom=plan.headroom, plan=plan.to_json())


# A linker section name: '.' and identifier characters, dot-separated parts (".tinyswap_model",
# ".model.flash"); bounded so that it fits every toolchain's section tables and a one-line message.
SECTION_NAME = re.compile(r"\.[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
MAX_SECTION_NAME = 64
MAX_SECTION_ALIGN = 1 << 20  # the largest slot-plan alignment (a flash sector of up to 1 MiB)


def check_section(section: str | None, section_align: int | None = None) -> None:
    """Refuse (`SectionError`) a section name or alignment that cannot be emitted: the name must
    be '.' plus identifier characters, at most MAX_SECTION_NAME long; the alignment a power of
    two in [16, MAX_SECTION_ALIGN], and only with a section. Runs before compiling (the CLI)."""
    if section is None:
        if section_align is not None:
            raise SectionError("--section-align needs --section NAME: without a section the model array is "
                               "aligned to the slot map's alignment")
        return
    if not isinstance(section, str) or len(section) > MAX_SECTION_NAME or not SECTION_NAME.fullmatch(section):
        shown = repr(section[:MAX_SECTION_NAME + 1]) if isinstance(section, str) else repr(section)
        raise SectionError(f"section name {shown} is not usable: expected '.' followed by letters, digits, '_' "
                           f"(parts joined by '.'), at most {MAX_SECTION_NAME} characters, e.g. .tinyswap_model")
    a = section_align
    if a is not None and (not isinstance(a, int) or isinstance(a, bool) or not 16 <= a <= MAX_SECTION_ALIGN
                          or a & (a - 1)):
        raise SectionError(f"section alignment is {a!r}; expected a power of two in [16, {MAX_SECTION_ALIGN}]")


def model_alignment(smap: SlotMap, section: str | None = None, section_align: int | None = None) -> int:
    """The model array's alignment: at least 16 (TFLite Micro) and the slot map's alignment (the
    flash sector size of a sector-aligned export); with a section, `section_align` (the
    partition's alignment) if given, which may not be smaller than that."""
    check_section(section, section_align)
    need = max(16, smap.alignment)
    if section_align is None:
        return need
    if section_align < need:
        raise SectionError(f"section alignment {section_align} is smaller than the slot map's alignment {need}: "
                           "slot ranges would not start on flash sector boundaries")
    return section_align


def c_sources(model: bytes, smap: SlotMap, name: str = "g_model", *, section: str | None = None,
              section_align: int | None = None, arena: ArenaFigure | None = None) -> tuple[str, str]:
    """`model_data.h` and `model_data.cc`: an alignas(16) array, as TFLite Micro expects, and
    a #define per slot range and gate input. With `section`, the array is placed in that linker
    section (the model's own flash partition) with `__attribute__((section, aligned))` instead,
    aligned to `model_alignment(...)`, and the header names the section. The header defines
    TINYSWAP_ARENA_BYTES, the TFLite Micro tensor arena (`kArenaSize`), with a comment saying how
    it was measured: `arena`, by default `tinyswap.arena.tflm_arena_figure(model)` (cached)."""
    alignment = model_alignment(smap, section, section_align)
    lines = [
        "// Generated by tinyswap export. Do not edit.",
        "#ifndef TINYSWAP_MODEL_DATA_H_",
        "#define TINYSWAP_MODEL_DATA_H_",
        "",
        "#include <cstddef>",
        "#include <cstdint>",
        "",
        f"#define TINYSWAP_MODEL_BYTES {len(model)}u",
        f"#define TINYSWAP_NUM_SLOTS {smap.num_slots}u",
        f"#define TINYSWAP_BASE_DIGEST \"{smap.base_digest}\"",
    ]
    arena = arena if arena is not None else tflm_arena_figure(model)
    lines += ["", "// TFLite Micro tensor arena for this model (kArenaSize), "
              f"{'measured' if arena.measured else 'ESTIMATED'}:", f"// {arena.method}.",
              f"// tinyswap's activation plan alone is {arena.plan_bytes} B: TFLM adds tensor structs, op data "
              "and its allocator.", f"#define TINYSWAP_ARENA_BYTES {arena.tflm_bytes}u", ""]
    if section is not None:
        lines += [f"#define TINYSWAP_MODEL_SECTION \"{section}\"", f"#define TINYSWAP_MODEL_ALIGNMENT {alignment}u"]
    for slot in smap.slots:
        s = slot.slot
        lines += [f"#define TINYSWAP_SLOT{s}_OFFSET {slot.offset}u", f"#define TINYSWAP_SLOT{s}_LENGTH {slot.length}u"]
    for gate in smap.gates:
        s = gate.slot
        lines += [f"#define TINYSWAP_GATE{s}_INPUT_INDEX {gate.input_index}u",
                  f"#define TINYSWAP_GATE{s}_ZERO_POINT ({gate.zero_point})"]
    lines += ["", f"extern const unsigned char {name}[];", f"extern const unsigned int {name}_len;", "",
              "#endif  // TINYSWAP_MODEL_DATA_H_", ""]
    body = [
        "// Generated by tinyswap export. Do not edit.",
        '#include "model_data.h"',
        "",
    ]
    if section is None:
        body += [f"// Aligned to {alignment} bytes so slot ranges keep their flash alignment when linked.",
                 f"alignas({alignment}) const unsigned char {name}[] = {{"]
    else:
        body += [
            f"// In the linker section \"{section}\": the model's own flash partition (place it with the linker",
            f"// script), aligned to {alignment} bytes, at least the slot map's alignment, so slot ranges start",
            "// on flash sector boundaries and a slot write never touches the application image.",
            "// GCC, Clang and the Arm Compilers (armclang 6, armcc 5) take the attribute below; IAR spells it",
            f"//   #pragma location = \"{section}\"",
            f"//   #pragma data_alignment = {alignment}",
            f"//   const unsigned char {name}[] = {{ ... }};",
            f"__attribute__((section(\"{section}\"), aligned({alignment}))) const unsigned char {name}[] = {{",
        ]
    for i in range(0, len(model), 16):
        body.append("  " + ", ".join(f"0x{b:02x}" for b in model[i : i + 16]) + ",")
    body += ["};", f"const unsigned int {name}_len = {len(model)};", ""]
    return "\n".join(lines), "\n".join(body)


def write_bundle(compiled: Compiled, out_dir: str | Path, arena: ArenaFigure | None = None,
                 notes: str = "", *, section: str | None = None, section_align: int | None = None) -> dict[str, Path]:
    """Write the bundle into `out_dir`; `section`/`section_align` place the model array in its own
    linker section (see `c_sources`), refused (`SectionError`) before anything is written. `arena`:
    the TFLite Micro arena (default: measured now, `tinyswap.arena.tflm_arena_figure`)."""
    smap = slot_map(compiled)
    arena = arena if arena is not None else tflm_arena_figure(compiled.data)
    header, source = c_sources(compiled.data, smap, section=section, section_align=section_align, arena=arena)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    slot_bytes = sum(s.length for s in smap.slots)
    payload = sum(t.length for s in smap.slots for t in s.tensors)
    manifest = {
        "tool": "tinyswap", "tool_version": tinyswap.__version__, "model": compiled.name,
        "model_bytes": len(compiled.data), "base_digest": smap.base_digest,
        # TFLite Micro's tensor arena (tflm_bytes = TINYSWAP_ARENA_BYTES) beside our activation plan.
        "arena": arena.to_json(),
        "flash": {"total": len(compiled.data), "slots": slot_bytes, "base": len(compiled.data) - slot_bytes,
                  "slot_payload": payload, "slot_overhead_ratio": (slot_bytes / payload) if payload else None},
        "num_slots": smap.num_slots, "alignment": smap.alignment,
        # Operators, MACs of the base and of each slot's branch, flash (tinyswap.model_cost).
        "cost": slot_cost_report(compiled.data, smap).to_json(),
        "target_notes": notes or "TFLite Micro reference kernels or CMSIS-NN on Cortex-M4/M7/M33; on M55/M85 "
        "CMSIS-NN builds re-create the MicroInterpreter after a swap (kernel sums are cached).",
    }
    paths = {
        "model": out / "model.tflite", "slotmap": out / "slotmap.json", "header": out / "model_data.h",
        "source": out / "model_data.cc", "manifest": out / "manifest.json",
    }
    paths["model"].write_bytes(compiled.data)
    smap.save(paths["slotmap"])
    paths["header"].write_text(header)
    paths["source"].write_text(source)
    paths["manifest"].write_text(json.dumps(manifest, indent=2))
    # The device's install code and this bundle's slot layout for it (tinyswap.export.firmware).
    from tinyswap.export.firmware import write_firmware

    fw = write_firmware(out, smap)
    paths.update({"fw_header": fw.header, "fw_source": fw.source})
    if fw.layout_header is not None and fw.layout_source is not None:
        paths.update({"layout_header": fw.layout_header, "layout_source": fw.layout_source})
    return paths
