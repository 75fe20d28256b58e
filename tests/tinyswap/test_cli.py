"""The command line as a user meets it: wrong input files, `--version`, and a closed pipe.

Every command given a wrong file (missing, a directory, binary bytes where JSON or a model is
expected, empty, truncated) must exit non-zero with ONE line on stderr that names the file,
and no traceback. Bugs are a different matter: an unexpected exception keeps its traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version as dist_version
from pathlib import Path

import pytest

from tinyswap import cli
from tinyswap.resources import models_dir

MODELS = models_dir()
HELLO = MODELS / "tflm" / "hello_world_int8.tflite"
PERSON = MODELS / "tflm" / "person_detect.tflite"
MLP_SPEC = MODELS / "digits" / "mlp.json"
ADAPTER = MODELS / "digits" / "adapters" / "cnn" / "rot90"
# Not UTF-8 from the first byte, no file's magic number, no JSON: what a user gets by passing the wrong file.
BINARY = bytes([0xFF, 0xFE, 0x00, 0x93]) + bytes(range(256)) * 4


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    """Wrong inputs, plus the few right ones a command needs before it reaches the wrong one."""
    f = {
        "missing": tmp_path / "missing.json",
        "dir": tmp_path / "a_directory",
        "binary": tmp_path / "binary.bin",
        "empty": tmp_path / "empty.json",
        "truncated": tmp_path / "truncated.tflite",
        "bundle": tmp_path / "bundle",  # a slot map good enough for `pack` to reach the key
        "badmap": tmp_path / "bundle_with_binary_slotmap",
        "models_binary": tmp_path / "models_binary",  # bench --models: the right names, wrong bytes
        "out": tmp_path / "out",
    }
    f["dir"].mkdir()
    f["binary"].write_bytes(BINARY)
    f["empty"].write_bytes(b"")
    f["truncated"].write_bytes(HELLO.read_bytes()[:100])
    f["bundle"].mkdir()
    (f["bundle"] / "slotmap.json").write_text("{}")
    f["badmap"].mkdir()
    (f["badmap"] / "model.tflite").write_bytes(HELLO.read_bytes())
    (f["badmap"] / "slotmap.json").write_bytes(BINARY)
    f["models_binary"].mkdir()
    for name in ("micro_speech_quantized", "person_detect", "hello_world_int8"):
        (f["models_binary"] / f"{name}.tflite").write_bytes(BINARY)
    return f


# (case id, argv with {name} placeholders for the `files` fixture, the file the message must name)
CASES = [
    ("run-missing", ["run", "{missing}"], "missing"),
    ("run-directory", ["run", "{dir}"], "dir"),
    ("run-binary", ["run", "{binary}"], "binary"),
    ("run-empty", ["run", "{empty}"], "empty"),
    ("run-truncated", ["run", "{truncated}"], "truncated"),
    ("run-input-binary", ["run", str(HELLO), "--input", "{binary}"], "binary"),
    ("run-input-directory", ["run", str(HELLO), "--input", "{dir}"], "dir"),
    ("inspect-missing", ["inspect", "{missing}"], "missing"),
    ("inspect-directory", ["inspect", "{dir}"], "dir"),
    ("inspect-binary", ["inspect", "{binary}"], "binary"),
    ("inspect-truncated", ["inspect", "--json", "{truncated}"], "truncated"),
    ("inspect-binary-slotmap", ["inspect", "{badmap}"], "badmap"),
    ("export-missing", ["export", "{missing}", "-o", "{out}"], "missing"),
    ("export-directory", ["export", "{dir}", "-o", "{out}"], "dir"),
    ("export-binary", ["export", "{binary}", "-o", "{out}"], "binary"),
    ("export-empty", ["export", "{empty}", "-o", "{out}"], "empty"),
    ("export-plan-binary", ["export", str(MLP_SPEC), "--plan", "{binary}", "-o", "{out}"], "binary"),
    ("export-plan-directory", ["export", str(MLP_SPEC), "--plan", "{dir}", "-o", "{out}"], "dir"),
    ("export-calibration-binary", ["export", str(MLP_SPEC), "--calibration", "{binary}", "-o", "{out}"], "binary"),
    ("export-weights-binary", ["export", str(MLP_SPEC), "--weights", "{binary}", "-o", "{out}"], "binary"),
    ("keygen-out-is-a-file", ["keygen", "-o", "{binary}"], "binary"),
    ("keygen-out-below-a-file", ["keygen", "-o", "{binary}/keys"], "binary"),
    ("pack-adapter-missing", ["pack", "{missing}", "--bundle", "{bundle}", "--key", "{binary}", "-o", "{out}/a.tsap"],
     "missing"),
    ("pack-adapter-binary", ["pack", "{binary}", "--bundle", "{bundle}", "--key", "{binary}", "-o", "{out}/a.tsap"],
     "binary"),
    ("pack-adapter-empty-directory", ["pack", "{dir}", "--bundle", "{bundle}", "--key", "{binary}",
                                      "-o", "{out}/a.tsap"], "dir"),
    ("pack-bundle-missing", ["pack", str(ADAPTER), "--bundle", "{missing}", "--key", "{binary}", "-o", "{out}/a.tsap"],
     "missing"),
    ("pack-bundle-binary-slotmap", ["pack", str(ADAPTER), "--bundle", "{badmap}", "--key", "{binary}",
                                    "-o", "{out}/a.tsap"], "badmap"),
    ("pack-key-binary", ["pack", str(ADAPTER), "--bundle", "{bundle}", "--key", "{binary}", "-o", "{out}/a.tsap"],
     "binary"),
    ("pack-key-missing", ["pack", str(ADAPTER), "--bundle", "{bundle}", "--key", "{missing}", "-o", "{out}/a.tsap"],
     "missing"),
    ("pack-key-directory", ["pack", str(ADAPTER), "--bundle", "{bundle}", "--key", "{dir}", "-o", "{out}/a.tsap"],
     "dir"),
    ("sim-missing", ["sim", "{missing}", "--out", "{out}"], "missing"),
    ("sim-directory", ["sim", "{dir}", "--out", "{out}"], "dir"),
    ("sim-binary", ["sim", "{binary}", "--out", "{out}"], "binary"),
    ("sim-empty", ["sim", "{empty}", "--out", "{out}"], "empty"),
    ("demo-out-is-a-file", ["demo", "--out", "{binary}"], "binary"),
    ("demo-out-below-a-file", ["demo", "--out", "{binary}/demo"], "binary"),
    ("bench-models-missing", ["bench", "--models", "{missing}", "--out", "{out}", "--repeats", "1"], "missing"),
    ("bench-models-is-a-file", ["bench", "--models", "{binary}", "--out", "{out}", "--repeats", "1"], "binary"),
    ("bench-models-empty-directory", ["bench", "--models", "{dir}", "--out", "{out}", "--repeats", "1"], "dir"),
    ("bench-models-binary", ["bench", "--models", "{models_binary}", "--out", "{out}", "--repeats", "1"],
     "models_binary"),
]


@pytest.mark.parametrize("argv,names", [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_a_wrong_input_file_gives_one_line_naming_it(argv: list[str], names: str, files: dict[str, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    args = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    status = cli.main(args)
    err = capsys.readouterr().err
    assert status != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tinyswap: error: "), lines[0]
    assert str(files[names]) in lines[0], lines[0]


def test_messages_say_what_is_wrong(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """The problem in words, not only the path: what a user reads to fix the call."""
    expected = {
        ("export", str(files["missing"]), "-o", str(files["out"])): "no such file",
        ("export", str(files["dir"]), "-o", str(files["out"])): "is a directory",
        ("export", str(files["binary"]), "-o", str(files["out"])): "not a text file (byte 0xff at offset 0",
        ("export", str(files["empty"]), "-o", str(files["out"])): "the file is empty, expected JSON",
        ("run", str(files["truncated"])): "not a valid .tflite model",
        ("run", str(files["binary"])): "expected b'TFL3'",
        ("run", str(HELLO), "--input", str(files["binary"])): "not a .npy array",
    }
    for argv, words in expected.items():
        assert cli.main(list(argv)) == 2
        err = capsys.readouterr().err
        assert words in err, (argv, err)


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only refusals and the environment's errors become one line; anything else is a bug to report."""
    def broken(args: object) -> int:
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "cmd_inspect", broken)
    with pytest.raises(KeyError, match="a bug"):
        cli.main(["inspect", str(HELLO)])


def test_a_good_call_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["inspect", str(HELLO)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{HELLO}: ") and "FULLY_CONNECTED" in out


# ------------------------------------------------------------------------- real processes

def _tinyswap(*args: str) -> list[str]:
    return [sys.executable, "-m", "tinyswap.cli", *args]


def test_version_prints_the_installed_version() -> None:
    done = subprocess.run(_tinyswap("--version"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"tinyswap {dist_version('tinyswap')}"
    assert done.stderr == ""


def test_version_from_the_console_script() -> None:
    script = Path(sys.executable).with_name("tinyswap")
    if not script.exists():
        pytest.skip("no console script beside this interpreter (not an installed environment)")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("tinyswap "), done


def test_a_closed_pipe_ends_quietly() -> None:
    """`tinyswap inspect M | head -1`, made deterministic: the reader is gone before the first write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(_tinyswap("inspect", str(PERSON)), stdout=write_end, stderr=subprocess.PIPE,
                              timeout=120)
    finally:
        os.close(write_end)
    assert done.stderr.decode() == ""
    assert done.returncode == 141


def test_head_of_a_pipeline_gets_its_line() -> None:
    done = subprocess.run(" ".join(_tinyswap("inspect", "--json", f"'{PERSON}'")) + " | head -1", shell=True,
                          capture_output=True, text=True, timeout=120, executable="/bin/bash")
    assert done.returncode == 0
    assert done.stdout == "{\n"
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr


def test_a_wrong_file_in_a_real_process_prints_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(BINARY)
    done = subprocess.run(_tinyswap("export", str(bad), "-o", str(tmp_path / "out")), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == f"tinyswap: error: spec {bad}: not a text file (byte 0xff at offset 0 is not UTF-8)"


def test_the_package_version_is_the_distribution_version() -> None:
    import tinyswap

    assert tinyswap.__version__ == dist_version("tinyswap") == cli.version()
