"""`tinyswap export --section NAME` puts the C model array in its own linker section (the model's
flash partition), aligned at least to the slot map's alignment; without it the sources are as before.

The placement is checked on a real object file: the generated `model_data.cc` is compiled with
the host C++ compiler (and the Arm one where installed), and the section table and symbol table
of the object say where `g_model` went, with which alignment, holding exactly the model's bytes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tinyswap.cli import main
from tinyswap.errors import TinySwapError
from tinyswap.export import bundle
from tinyswap.export.bundle import MAX_SECTION_NAME, c_sources
from tinyswap.export.errors import ExportError, SectionError
from tinyswap.slotmap import SlotMap

from tests.conftest import REPO

EXAMPLES = REPO / "models" / "examples"
CXXFLAGS = ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-c"]
# (compiler, binutils prefix, extra flags): the host toolchain, and a Cortex-M one where installed.
TOOLCHAINS = {"host": ("g++", "", []), "cortex-m4": ("arm-none-eabi-g++", "arm-none-eabi-", ["-mcpu=cortex-m4", "-mthumb"])}


@pytest.fixture(scope="module")
def cnn_bundle(tmp_path_factory) -> Path:
    """The cnn example exported without a section: its plan aligns slots to 4096-byte sectors."""
    out = tmp_path_factory.mktemp("bundle") / "cnn"
    assert main(["export", str(EXAMPLES / "cnn.json"), "--plan", str(EXAMPLES / "cnn.plan.json"), "-o", str(out)]) == 0
    return out


def _smap(bundle_dir: Path) -> SlotMap:
    return SlotMap.from_json(json.loads((bundle_dir / "slotmap.json").read_text()))


def _compile(toolchain: str, header: str, source: str, work: Path) -> Path:
    cxx, _, flags = TOOLCHAINS[toolchain]
    if shutil.which(cxx) is None:
        pytest.skip(f"{cxx} is not installed")
    work.mkdir(parents=True, exist_ok=True)
    (work / "model_data.h").write_text(header)
    (work / "model_data.cc").write_text(source)
    obj = work / "model_data.o"
    done = subprocess.run([cxx, *flags, *CXXFLAGS, "model_data.cc", "-o", obj.name], cwd=work, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return obj


def _placement(toolchain: str, obj: Path, symbol: str = "g_model") -> tuple[str, int]:
    """(section, section alignment) of `symbol` in an object file, from `objdump -t` and `readelf -S`."""
    prefix = TOOLCHAINS[toolchain][1]
    symbols = subprocess.run([f"{prefix}objdump", "-t", str(obj)], capture_output=True, text=True, check=True).stdout
    # "00000000 g     O .tinyswap_model	00007000 g_model"
    found = [line.split()[-3] for line in symbols.splitlines() if line.split()[-1:] == [symbol]]
    assert len(found) == 1, symbols
    sections = subprocess.run([f"{prefix}readelf", "-SW", str(obj)], capture_output=True, text=True, check=True).stdout
    # "[ 4] .tinyswap_model PROGBITS 00000000 001000 007000 00 A 0 0 4096": the last field is Al.
    rows = [line for line in sections.splitlines() if re.search(rf"\]\s+{re.escape(found[0])}\s", line)]
    assert len(rows) == 1, sections
    return found[0], int(rows[0].split()[-1])


@pytest.mark.parametrize("toolchain", sorted(TOOLCHAINS))
@pytest.mark.parametrize("section,align", [(".tinyswap_model", None), (".model.flash", 8192)])
def test_the_model_lands_in_its_section_with_the_partition_alignment(cnn_bundle: Path, tmp_path: Path,
                                                                      toolchain: str, section: str,
                                                                      align: int | None) -> None:
    model = (cnn_bundle / "model.tflite").read_bytes()
    smap = _smap(cnn_bundle)
    assert smap.alignment == 4096  # exported sector-aligned: the default partition alignment
    header, source = c_sources(model, smap, section=section, section_align=align)
    expected = align or smap.alignment
    assert f'#define TINYSWAP_MODEL_SECTION "{section}"' in header
    assert f"#define TINYSWAP_MODEL_ALIGNMENT {expected}u" in header
    assert f'__attribute__((section("{section}"), aligned({expected}))) const unsigned char g_model[]' in source
    assert "alignas(" not in source and "#pragma location" in source  # IAR's spelling, as a comment

    obj = _compile(toolchain, header, source, tmp_path / toolchain)
    assert _placement(toolchain, obj) == (section, expected)
    assert _placement(toolchain, obj, "g_model_len")[0] != section  # only the model moves
    # The section holds exactly the model's bytes.
    prefix = TOOLCHAINS[toolchain][1]
    raw = tmp_path / "section.bin"
    subprocess.run([f"{prefix}objcopy", "-O", "binary", f"--only-section={section}", str(obj), str(raw)], check=True)
    assert raw.read_bytes() == model


# The GNU ld script of the README's "model partition" section: the application in FLASH (the
# image MCUboot signs), the model in a partition of its own.
LINKER_SCRIPT = """\
MEMORY
{
  FLASH (rx)  : ORIGIN = 0x08000000, LENGTH = 1024K
  MODEL (r)   : ORIGIN = 0x08100000, LENGTH = 512K
  RAM   (rwx) : ORIGIN = 0x20000000, LENGTH = 128K
}

SECTIONS
{
  .text : { *(.text*) *(.rodata*) } > FLASH

  .tinyswap_model :
  {
    __tinyswap_model_start = .;
    KEEP(*(.tinyswap_model))
    __tinyswap_model_end = .;
  } > MODEL
}
"""


@pytest.mark.parametrize("toolchain", sorted(TOOLCHAINS))
def test_a_linker_script_puts_the_model_at_the_partition_start(cnn_bundle: Path, tmp_path: Path,
                                                               toolchain: str) -> None:
    model = (cnn_bundle / "model.tflite").read_bytes()
    header, source = c_sources(model, _smap(cnn_bundle), section=".tinyswap_model")
    obj = _compile(toolchain, header, source, tmp_path)
    prefix = TOOLCHAINS[toolchain][1]
    (tmp_path / "model.ld").write_text(LINKER_SCRIPT)
    # --gc-sections: nothing references g_model here, KEEP holds it (as an application that reads
    # the model only through a pointer would need).
    subprocess.run([f"{prefix}ld", "-T", "model.ld", "--gc-sections", "-e", "0", obj.name, "-o", "app.elf"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=120)
    symbols = subprocess.run([f"{prefix}nm", "app.elf"], cwd=tmp_path, capture_output=True, text=True,
                             check=True).stdout
    address = {line.split()[-1]: int(line.split()[0], 16) for line in symbols.splitlines()}
    assert address["g_model"] == address["__tinyswap_model_start"] == 0x08100000
    assert address["__tinyswap_model_end"] - address["g_model"] == len(model)
    # The partition image is the model file, byte for byte (what a programmer writes at 0x08100000).
    subprocess.run([f"{prefix}objcopy", "-O", "binary", "-j", ".tinyswap_model", "app.elf", "model.bin"],
                   cwd=tmp_path, check=True)
    assert (tmp_path / "model.bin").read_bytes() == model


def test_without_a_section_the_sources_are_as_before(cnn_bundle: Path, tmp_path: Path) -> None:
    model = (cnn_bundle / "model.tflite").read_bytes()
    smap = _smap(cnn_bundle)
    header, source = c_sources(model, smap)
    assert (header, source) == c_sources(model, smap, section=None, section_align=None)
    assert (cnn_bundle / "model_data.cc").read_text() == source
    for text in (header, (cnn_bundle / "model_data.h").read_text()):
        assert "TINYSWAP_MODEL_SECTION" not in text and "TINYSWAP_MODEL_ALIGNMENT" not in text
    # The model_data.cc the exporter has always written, line for line.
    rows = ["  " + ", ".join(f"0x{b:02x}" for b in model[i : i + 16]) + "," for i in range(0, len(model), 16)]
    assert source == "\n".join([
        "// Generated by tinyswap export. Do not edit.", '#include "model_data.h"', "",
        "// Aligned to 4096 bytes so slot ranges keep their flash alignment when linked.",
        "alignas(4096) const unsigned char g_model[] = {", *rows, "};",
        f"const unsigned int g_model_len = {len(model)};", ""])
    assert _placement("host", _compile("host", header, source, tmp_path)) == (".rodata", 4096)


@pytest.mark.parametrize("name", [
    "tinyswap_model", ".", "", ".9model", ".a b", '.a"b', ".a\nb", ".a..b", ".a.", ".a-b", ".a;b", "..a",
    "." + "m" * MAX_SECTION_NAME,
])
def test_an_unusable_section_name_is_refused(cnn_bundle: Path, name: str) -> None:
    with pytest.raises(SectionError, match="section name"):
        c_sources((cnn_bundle / "model.tflite").read_bytes(), _smap(cnn_bundle), section=name)


def test_a_section_name_at_the_length_bound_is_accepted(cnn_bundle: Path) -> None:
    name = "." + "m" * (MAX_SECTION_NAME - 1)
    header, _ = c_sources((cnn_bundle / "model.tflite").read_bytes(), _smap(cnn_bundle), section=name)
    assert f'"{name}"' in header


@pytest.mark.parametrize("align", [0, 3, 8, 12288, 1 << 21, True, 4096.0])
def test_an_unusable_section_alignment_is_refused(cnn_bundle: Path, align) -> None:
    with pytest.raises(SectionError, match="alignment"):
        c_sources((cnn_bundle / "model.tflite").read_bytes(), _smap(cnn_bundle), section=".m", section_align=align)


def test_an_alignment_below_the_slot_maps_or_without_a_section_is_refused(cnn_bundle: Path) -> None:
    model, smap = (cnn_bundle / "model.tflite").read_bytes(), _smap(cnn_bundle)
    with pytest.raises(SectionError, match="smaller than the slot map's alignment 4096"):
        c_sources(model, smap, section=".m", section_align=2048)
    with pytest.raises(SectionError, match="needs --section"):
        c_sources(model, smap, section_align=4096)


def test_section_error_is_an_export_error() -> None:
    assert issubclass(SectionError, ExportError) and issubclass(SectionError, TinySwapError)
    assert bundle.SectionError is SectionError and SectionError.__module__ == "tinyswap.export.errors"


@pytest.mark.parametrize("argv,words", [
    (["--section", "tinyswap_model"], "section name 'tinyswap_model'"),
    (["--section", ".m", "--section-align", "1000"], "power of two"),
    (["--section", ".m", "--section-align", "2048"], "smaller than the slot map's alignment"),
    (["--section-align", "4096"], "needs --section"),
])
def test_the_command_line_refuses_in_one_line_and_writes_nothing(tmp_path: Path, capsys, argv: list[str],
                                                                 words: str) -> None:
    out = tmp_path / "out"
    assert main(["export", str(EXAMPLES / "cnn.json"), "--plan", str(EXAMPLES / "cnn.plan.json"), "-o", str(out),
                 *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinyswap: error:") and words in err and err.count("\n") == 1, err
    assert not out.exists()


def test_the_command_line_writes_a_placed_bundle(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["export", str(EXAMPLES / "mlp.json"), "--plan", str(EXAMPLES / "mlp.plan.json"), "-o", str(out),
                 "--section", ".tinyswap_model", "--section-align", "4096"]) == 0
    assert '#define TINYSWAP_MODEL_SECTION ".tinyswap_model"' in (out / "model_data.h").read_text()
    source = (out / "model_data.cc").read_text()
    assert '__attribute__((section(".tinyswap_model"), aligned(4096))) const unsigned char g_model[]' in source
