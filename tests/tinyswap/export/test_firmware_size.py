"""A size guard for the C install code on a real target: the bundle's C files, built for a
Cortex-M4 as a firmware would build them, stay within a stated flash and RAM budget.

This is a guard, not an oracle: it fails when the install code grows well past what it was when
the bound was set, so that growth is a decision rather than an accident. The model itself
(`model_data.cc`) is data, not code, and is left out. Where `arm-none-eabi-gcc` is not
installed (`apt-get install gcc-arm-none-eabi`) the test is skipped.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tinyswap.cli import main

from tests.conftest import REPO

EXAMPLES = REPO / "models" / "examples"
FIRMWARE = REPO / "tinyswap" / "export" / "firmware"
CC = "arm-none-eabi-gcc"
SIZE = "arm-none-eabi-size"
CFLAGS = ["-mcpu=cortex-m4", "-mthumb", "-Os", "-std=c99", "-Wall", "-Wextra", "-Werror", "-ffunction-sections",
          "-fdata-sections", "-fstack-usage", "-c"]

# Bounds: the measurement when they were set, times 1.25, rounded up to a multiple of 16 or 256
# (arm-none-eabi-gcc 12.2.1, the flags above, the cnn example's bundle). Raise them on purpose,
# with the new measurement, when the install code grows.
# Measured: tinyswap_fw.c 9688 B text, tinyswap_layout.c 1303 B (the cnn slot layout: frames,
# tensor tables, gates), no .data: 10991 B in all; x 1.25 = 13739 -> 13824.
MAX_TEXT_DATA = 13824
# Measured: 0 B. The install code keeps no static state (the caller passes the context and the
# workspace), so any .bss at all is a change of design, not growth.
MAX_BSS = 0
# Measured: 344 B, `verify` (the largest frame of one function, -fstack-usage); x 1.25 -> 432.
# Every frame must be static (no VLA, no alloca).
MAX_FRAME = 432


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> list[Path]:
    """The bundle's C files (the install code and the generated layout source; the C++ model
    array is data and stays out), each compiled once with CFLAGS, beside its `.su` file."""
    if not (FIRMWARE / "tinyswap_fw.c").exists():
        pytest.skip("no firmware sources yet")
    if shutil.which(CC) is None or shutil.which(SIZE) is None:
        pytest.skip(f"{CC} is not installed: the Cortex-M size guard needs it (apt-get install gcc-arm-none-eabi)")
    bundle = tmp_path_factory.mktemp("bundle") / "cnn"
    assert main(["export", str(EXAMPLES / "cnn.json"), "--plan", str(EXAMPLES / "cnn.plan.json"), "-o", str(bundle)]) == 0
    sources = sorted(bundle.glob("*.c"))
    assert "tinyswap_fw.c" in {p.name for p in sources}, sorted(p.name for p in bundle.iterdir())
    jobs = [(src.with_suffix(".o"), subprocess.Popen([CC, *CFLAGS, "-I", str(bundle), str(src), "-o",
                                                      str(src.with_suffix(".o"))],
                                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for src in sources]  # compiled side by side
    for obj, job in jobs:
        _, err = job.communicate(timeout=300)
        assert job.returncode == 0, err
    return [obj for obj, _ in jobs]


def test_the_install_code_fits_its_cortex_m4_budget(objects: list[Path]) -> None:
    # Berkeley format, one row per object and a total: "text data bss dec hex filename"
    # (.rodata counts in text).
    done = subprocess.run([SIZE, "-t", *map(str, objects)], capture_output=True, text=True, check=True, timeout=60)
    text, data, bss = (int(v) for v in done.stdout.splitlines()[-1].split()[:3])
    assert text + data <= MAX_TEXT_DATA, f"text+data {text + data} B > {MAX_TEXT_DATA} B:\n{done.stdout}"
    assert bss <= MAX_BSS, f"bss {bss} B > {MAX_BSS} B:\n{done.stdout}"


def test_no_function_of_the_install_code_has_a_large_or_dynamic_stack_frame(objects: list[Path]) -> None:
    # One row per function: "tinyswap_fw.c:590:22:verify\t344\tstatic".
    frames = []
    for obj in objects:
        for row in obj.with_suffix(".su").read_text().splitlines():
            where, size, kind = row.rsplit("\t", 2)
            frames.append((int(size), kind, where))
    assert frames
    assert all(kind == "static" for _, kind, _ in frames), [f for f in frames if f[1] != "static"]
    assert max(frames)[0] <= MAX_FRAME, sorted(frames)[-3:]
