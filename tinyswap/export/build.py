"""One way to make a bundle: compile, probe the arena, write the files, optionally a key pair.

`tinyswap export`, the digits example behind `tinyswap demo` and `tinyswap bench`, scenario
`build` sections, models/digits/evaluate.py and the swap benchmark all need the same steps in
the same order; doing them here keeps the manifest's arena figure and the slot map every
packer reads identical whichever path made the bundle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyswap.arena import ArenaFigure, tflm_arena_figure
from tinyswap.export.bundle import check_section, slot_map, write_bundle
from tinyswap.export.compiler import Compiled, compile_model
from tinyswap.export.pack import keygen, load_private_key
from tinyswap.export.slot_plan import SlotPlan
from tinyswap.export.spec import ModelSpec
from tinyswap.interpreter import Interpreter


@dataclass(frozen=True)
class BundleFiles:
    """The files `write_bundle` wrote, in the order the command line lists them."""

    model: Path
    slotmap: Path
    header: Path
    source: Path
    manifest: Path

    def all(self) -> tuple[Path, ...]:
        return (self.model, self.slotmap, self.header, self.source, self.manifest)


@dataclass(frozen=True)
class SigningKeys:
    """An Ed25519 key pair written by `tinyswap.export.pack.keygen` (PEM files)."""

    private_key_path: Path
    public_key_path: Path

    def private_key(self) -> Ed25519PrivateKey:
        return load_private_key(self.private_key_path)


@dataclass(frozen=True)
class BuiltBundle:
    """A compiled model with its planned arena, slot map and, when asked for, its files and keys.

    `arena_bytes` is our interpreter's activation plan (TFLM's arena head); the arena a firmware
    must reserve for TFLite Micro is `tflm_arena.tflm_bytes` (measured with the wheel, once per
    model, when first asked for: `tinyswap.arena`)."""

    compiled: Compiled
    arena_bytes: int  # tinyswap's activation plan, not TFLM's arena: see `tflm_arena`
    slotmap: dict[str, Any]
    input_scale: float  # quantization of the data input (graph input 0; gates follow it), from the probe
    input_zero_point: int
    bundle_dir: Path | None = None
    files: BundleFiles | None = None
    keys: SigningKeys | None = None

    @property
    def data(self) -> bytes:
        return self.compiled.data

    @property
    def tflm_arena(self) -> ArenaFigure:
        """The TFLite Micro tensor arena (`TINYSWAP_ARENA_BYTES`), cached per model digest."""
        return tflm_arena_figure(self.compiled.data)


def build_bundle(spec: ModelSpec, plan: SlotPlan | None, calibration: np.ndarray, bundle_dir: str | Path | None = None,
                 *, keys_dir: str | Path | None = None, section: str | None = None,
                 section_align: int | None = None) -> BuiltBundle:
    """Compile `spec` with `plan` (None: no slots) on `calibration`, then `bundle_from_compiled`:
    plan its arena with the reference Interpreter and write the bundle into `bundle_dir` (None:
    nothing is written). With `keys_dir`, also make a fresh signing key pair there (`keygen`).
    `section` and `section_align` place the C model array in its own linker section
    (`bundle.c_sources`)."""
    check_section(section, section_align)  # a bad name is refused before the compile, not after
    compiled = compile_model(spec, plan, calibration)
    return bundle_from_compiled(compiled, bundle_dir, keys_dir=keys_dir, section=section, section_align=section_align)


def bundle_from_compiled(compiled: Compiled, out_dir: str | Path | None = None, *, keys_dir: str | Path | None = None,
                         section: str | None = None, section_align: int | None = None) -> BuiltBundle:
    """The bundle of an already compiled model (`compile_model`, or `tinyswap.export.inject.inject_slots`
    for an existing `.tflite`): its arena planned with the reference Interpreter, the files written
    into `out_dir` (None: nothing is written), a fresh key pair in `keys_dir` if given. `section`
    and `section_align` as in `build_bundle`, refused before anything is written."""
    check_section(section, section_align)
    # Our own interpreter's plan for these bytes; the manifest's TFLM arena is measured on them
    # by `write_bundle` (`tinyswap.arena`).
    probe = Interpreter(model_content=compiled.data)
    probe.allocate_tensors()
    scale, zero_point = probe.get_input_details()[0]["quantization"]
    files = None
    if out_dir is not None:
        paths = write_bundle(compiled, out_dir, tflm_arena_figure(compiled.data), section=section,
                             section_align=section_align)
        files = BundleFiles(paths["model"], paths["slotmap"], paths["header"], paths["source"], paths["manifest"])
        smap = json.loads(files.slotmap.read_text())  # exactly what a packer reading the bundle sees
    else:
        smap = slot_map(compiled).to_json()
    keys = None
    if keys_dir is not None:
        private, public = keygen(keys_dir)
        keys = SigningKeys(private, public)
    return BuiltBundle(compiled, probe.arena_bytes, smap, float(scale), int(zero_point),
                       None if out_dir is None else Path(out_dir), files, keys)


__all__ = ["BuiltBundle", "BundleFiles", "SigningKeys", "build_bundle", "bundle_from_compiled"]
