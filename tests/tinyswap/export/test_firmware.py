"""The device install code every bundle carries: package data, the per-bundle layout, a clean C99
compile, the status enum mirrored in Python, and the code's stack and memory needs."""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from tinyswap.export.firmware import STATIC_FILES, layout_sources, static_source, write_firmware
from tinyswap.export.fw_host import FwStatus, compiler, header_statuses, load_library
from tinyswap.slotmap import SlotMap

from tests.conftest import REPO
from tests.tinyswap.firmware_sim.device_cases import bundle_for

CC = compiler()
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (gcc or cc) on this host: the C99 compile "
                              "checks cannot run")
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SMAP = SlotMap.from_json(bundle_for(4096).smap)


def test_the_static_sources_are_package_data_found_by_importlib_resources():
    folder = resources.files("tinyswap.export.firmware")
    for name in STATIC_FILES:
        assert folder.joinpath(name).is_file(), name
        assert static_source(name).startswith("/*")
    # ... and the wheel ships them: pyproject.toml declares them as the package's data.
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11 (tomllib)")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["tinyswap.export.firmware"]
    assert all(any(Path(n).match(g) for g in globs) for n in STATIC_FILES)
    # cffi runs the sources on the host (`tinyswap fw apply`, the tests): a core dependency.
    assert any(d.startswith("cffi") for d in config["project"]["dependencies"])


def test_the_python_status_enum_mirrors_the_header():
    assert header_statuses(static_source("tinyswap_fw.h")) == {s.name: s.value for s in FwStatus}


@needs_cc
def test_every_status_has_its_name_in_c():
    ffi, lib = load_library(SMAP)
    for s in FwStatus:
        assert ffi.string(lib.tinyswap_fw_status_name(s.value)).decode() == s.name


def test_the_layout_describes_the_slot_map():
    header, source = layout_sources(SMAP)
    assert f"#define TINYSWAP_LAYOUT_NUM_SLOTS {SMAP.num_slots}u" in header
    assert f'"{SMAP.base_digest}"' in source
    for s in SMAP.slots:
        assert f"    {{{s.offset}u, {s.length}u, tensors{s.slot}, {len(s.tensors)}u, frame{s.slot}, {len(s.frame)}u," \
            in source
        for t in s.tensors:
            assert f'{{"{t.layer}", "{t.role}", {t.offset}u, {t.length}u,' in source
    for g in SMAP.gates:
        assert f"{g.input_index}u, {float(g.scale)!r}, {g.zero_point}}}" in source
    with pytest.raises(ValueError, match="no slots"):
        layout_sources(SlotMap(SMAP.model_bytes, SMAP.base_digest, 1.0, (), ()))


def test_firmware_files_without_a_slot_map_are_the_static_ones(tmp_path):
    files = write_firmware(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(STATIC_FILES)
    assert files.layout_header is None and files.c_sources == (files.source,)


@needs_cc
@pytest.mark.parametrize("alignment", [16, 4096])
def test_the_sources_and_the_layout_compile_cleanly_as_c99(tmp_path, alignment):
    files = write_firmware(tmp_path, SlotMap.from_json(bundle_for(alignment).smap))
    for src in files.c_sources:
        proc = subprocess.run([CC, *STRICT, "-c", str(src), "-o", str(tmp_path / (src.stem + ".o"))],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler (g++): the headers' C++ use is not checked")
def test_the_headers_are_usable_from_cpp(tmp_path):
    """main.cc of a TFLite Micro application includes both headers."""
    write_firmware(tmp_path, SMAP)
    (tmp_path / "main.cc").write_text('#include "tinyswap_fw.h"\n#include "tinyswap_layout.h"\n'
                                      "int main() { int8_t g; return (int)tinyswap_fw_gate_value(&tinyswap_layout, 0, "
                                      "65536u, &g); }\n")
    proc = subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only",
                           "-I", str(tmp_path), str(tmp_path / "main.cc")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _worst_stack(ci_text: str) -> dict[str, int]:
    """Deepest static stack of each public function over gcc's call graph (-fcallgraph-info=su).
    Calls through the port (indirect) are the port's own stack and are not counted."""
    nodes = {m.group(1): int(m.group(2)) for m in
             re.finditer(r'node: \{ title: "(?:[^"]*:)?(\w+)" label: "[^"]*\\n(\d+) bytes', ci_text)}
    edges: dict[str, set[str]] = {}
    for m in re.finditer(r'edge: \{ sourcename: "(?:[^"]*:)?(\w+)" targetname: "(?:[^"]*:)?(\w+)"', ci_text):
        edges.setdefault(m.group(1), set()).add(m.group(2))
    memo: dict[str, int] = {}

    def depth(f: str, seen: frozenset[str] = frozenset()) -> int:
        assert f not in seen, f"recursion through {f}"
        if f not in memo:
            memo[f] = nodes[f] + max((depth(g, seen | {f}) for g in edges.get(f, ()) if g in nodes), default=0)
        return memo[f]

    return {f: depth(f) for f in nodes if f.startswith("tinyswap_fw_")}


@needs_cc
def test_stack_and_memory_needs(tmp_path):
    """The numbers tinyswap_fw.h states: no recursion, < 1 KB of stack on the deepest path, the
    context and the workspace as the code reports them."""
    src = write_firmware(tmp_path).source
    proc = subprocess.run([CC, "-std=c99", "-O2", "-fstack-usage", "-fcallgraph-info=su", "-c", str(src), "-o",
                           str(tmp_path / "fw.o")], capture_output=True, text=True, cwd=tmp_path)
    if proc.returncode != 0 and "callgraph-info" in proc.stderr:
        pytest.skip(f"{CC} has no -fcallgraph-info (gcc >= 10 has it): the stack depth cannot be measured")
    assert proc.returncode == 0, proc.stderr
    worst = _worst_stack((tmp_path / "fw.ci").read_text())
    assert worst["tinyswap_fw_install"] == max(worst.values())
    assert worst["tinyswap_fw_install"] < 1024, worst
    ffi, lib = load_library(SMAP)
    layout = lib.tsfw_host_layout()
    assert lib.tinyswap_fw_workspace_bytes(layout) == max(3 * 256, lib.tinyswap_fw_record_bytes(layout) + 2 * 256)
    assert lib.tinyswap_fw_record_bytes(layout) == 20 + 2 * (144 * SMAP.num_slots + 40 * 8) + 32
    assert lib.tinyswap_fw_context_bytes() < 10 * 1024  # 9,168 B on x86-64 with the default bounds
