"""A bundle's `model_data.cc` runs in a real TensorFlow Lite Micro build, and agrees with the
`tflite_micro` wheel.

Where `TINYSWAP_TFLM_SRC` names a TFLM source tree, this builds TFLM's library with the tree's
own Makefile (`microlite`, host target, reference kernels), links a small host program
(`tflm_host/runner.cc`) with the bundle's C++ model array, runs it, and compares every output
with the wheel's interpreter on the same inputs. The bundle is exported with `--section`, so the
placed array is the one that runs, and the arena is the bundle's `TINYSWAP_ARENA_BYTES`.

The tree needs TFLM's third-party downloads (flatbuffers, gemmlowp, ruy, kissfft, and a pigweed
folder) under `tensorflow/lite/micro/tools/make/downloads/`, as
`make -f tensorflow/lite/micro/tools/make/Makefile third_party_downloads` leaves them. The
first run builds the library (minutes); later runs reuse it through `gen/tinyswap_host.flags`,
which records the build's flags; delete that file to rebuild. Without the variable the test is
skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyswap.cli import main
from tinyswap.oracles import run_tflm
from tinyswap.reader import read_model

from tests.conftest import REPO

EXAMPLES = REPO / "models" / "examples"
RUNNER = Path(__file__).parent / "tflm_host" / "runner.cc"
TFLM_ENV = "TINYSWAP_TFLM_SRC"
MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"
DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"
FLAGS_FILE = "gen/tinyswap_host.flags"
# The library build needs none of the examples, benchmarks and tools, whose Makefile fragments
# generate test data with Python (and PIL) while make reads them.
NOT_NEEDED = ["MICRO_LITE_EXAMPLE_TESTS=", "MICRO_LITE_BENCHMARKS=", "OLD_MICRO_LITE_BENCHMARKS=",
              "MICRO_LITE_INTEGRATION_TESTS=", "MICRO_LITE_GEN_MUTABLE_OP_RESOLVER_TEST=",
              "MICRO_LITE_LAYER_BY_LAYER_OUTPUT="]
# Written beside the Makefile's targets: the flags a program linked with the library must use.
FLAGS_RULE = """
tinyswap_host_flags:
\t$(file >$(TINYSWAP_FLAGS_OUT),$(CXXFLAGS))
\t$(file >>$(TINYSWAP_FLAGS_OUT),$(INCLUDES))
\t$(file >>$(TINYSWAP_FLAGS_OUT),$(MICROLITE_LIB_PATH))
\t$(file >>$(TINYSWAP_FLAGS_OUT),$(LDFLAGS) $(MICROLITE_LIBS))
"""
# TFLite builtin operator -> MicroMutableOpResolver method, where CamelCase of the name is not it.
RESOLVER_METHODS = {"CONV_2D": "AddConv2D", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
                    "AVERAGE_POOL_2D": "AddAveragePool2D", "MAX_POOL_2D": "AddMaxPool2D"}


def _tflm_tree() -> Path:
    src = os.environ.get(TFLM_ENV)
    if not src:
        pytest.skip(f"{TFLM_ENV} is not set: point it at a TensorFlow Lite Micro source tree with its "
                    f"third-party downloads to build and run a bundle in TFLM")
    tree = Path(src).resolve()
    for need in (MAKEFILE, "tensorflow/lite/micro/micro_interpreter.h", f"{DOWNLOADS}/flatbuffers/include",
                 f"{DOWNLOADS}/gemmlowp/fixedpoint", f"{DOWNLOADS}/ruy", f"{DOWNLOADS}/kissfft",
                 f"{DOWNLOADS}/pigweed"):
        if not (tree / need).exists():
            pytest.fail(f"{TFLM_ENV}={src} is not a TFLM tree with its downloads: {need} is missing "
                        f"(make -f {MAKEFILE} third_party_downloads)")
    for tool in ("make", "g++"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    return tree


@pytest.fixture(scope="module")
def tflm(tmp_path_factory) -> dict[str, object]:
    """TFLM's host library, built once per tree: its path and the flags to compile against it."""
    tree = _tflm_tree()
    flags_file = tree / FLAGS_FILE
    if not flags_file.exists():
        rule = tmp_path_factory.mktemp("make") / "flags.mk"
        rule.write_text(FLAGS_RULE)
        env = dict(os.environ)
        # The Makefile's own Python steps run `python3`: this interpreter has what they import.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        pending = tree / (FLAGS_FILE + ".new")
        pending.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["make", "-f", MAKEFILE, "-f", str(rule), f"-j{os.cpu_count() or 2}", *NOT_NEEDED,
                               f"TINYSWAP_FLAGS_OUT={pending}", "microlite", "tinyswap_host_flags"],
                              cwd=tree, env=env, capture_output=True, text=True, timeout=3600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        pending.replace(flags_file)
    cxxflags, includes, lib, ldflags = flags_file.read_text().splitlines()[:4]
    assert (tree / lib).is_file(), f"{lib} is missing: delete {FLAGS_FILE} to rebuild"
    return {"tree": tree, "cxxflags": cxxflags.split(), "includes": includes.split(), "lib": tree / lib,
            "ldflags": ldflags.split()}


def _resolver_method(op: str) -> str:
    return RESOLVER_METHODS.get(op) or "Add" + "".join(p.capitalize() for p in op.split("_"))


def _build_runner(tflm: dict, bundle: Path, work: Path) -> Path:
    ops = sorted({op.op_name for op in read_model((bundle / "model.tflite").read_bytes()).main.operators})
    (work / "ops.inc").write_text("".join(f"TINYSWAP_OP({_resolver_method(op)})\n" for op in ops))
    exe = work / "runner"
    cmd = ["g++", *tflm["cxxflags"], "-Werror", *tflm["includes"], f"-I{bundle}", f"-I{work}", str(RUNNER),
           str(bundle / "model_data.cc"), str(tflm["lib"]), *tflm["ldflags"], "-o", str(exe)]
    done = subprocess.run(cmd, cwd=tflm["tree"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return exe


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_the_bundle_runs_in_a_tflm_build_as_in_the_wheel(tflm: dict, tmp_path: Path, name: str) -> None:
    bundle = tmp_path / name
    assert main(["export", str(EXAMPLES / f"{name}.json"), "--plan", str(EXAMPLES / f"{name}.plan.json"),
                 "-o", str(bundle), "--section", ".tinyswap_model"]) == 0
    model = (bundle / "model.tflite").read_bytes()
    smap = json.loads((bundle / "slotmap.json").read_text())
    exe = _build_runner(tflm, bundle, tmp_path)
    graph = read_model(model).main
    rng = np.random.default_rng(7)
    for case in range(3):
        inputs = [rng.integers(-128, 128, size=graph.tensors[i].shape, dtype=np.int8) for i in graph.inputs]
        for gate in smap["gates"]:
            if case == 0:  # every gate off: the base model
                inputs[gate["input_index"]][:] = gate["zero_point"]
        (tmp_path / "in.bin").write_bytes(b"".join(x.tobytes() for x in inputs))
        done = subprocess.run([str(exe), "in.bin", "out.bin"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert re.fullmatch(r"arena_used_bytes \d+\n", done.stdout), done.stdout
        expected = run_tflm(model, inputs)
        got = (tmp_path / "out.bin").read_bytes()
        assert got == b"".join(np.ascontiguousarray(e).tobytes() for e in expected), f"{name} case {case}"


INSTALL_RUNNER = Path(__file__).parent / "tflm_host" / "install_runner.cc"


def test_a_package_installed_by_the_c_code_changes_the_live_model_as_in_the_wheel(tflm: dict, tmp_path: Path) -> None:
    """The firmware path end to end in a real TFLM build: the model runs from a writable flash
    buffer, the bundle's C install code (OpenSSL behind the port) installs a signed package into
    a slot of that buffer under the live interpreter, and the next Invoke() equals the wheel on
    the image the Python swap manager writes."""
    from cryptography.hazmat.primitives import serialization

    from tinyswap.image import RamImage
    from tinyswap.package import parse_package
    from tinyswap.slotmap import SlotMap
    from tinyswap.swap.slot_bytes import SlotBytes

    from tests.adapter_cases import KEY, gate_value, package

    for tool in ("gcc", "g++"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    plan = json.loads((EXAMPLES / "cnn.plan.json").read_text())
    plan["alignment"] = 4096  # slots in whole 4 KB sectors, as the install code's port declares
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    bundle = tmp_path / "cnn"
    assert main(["export", str(EXAMPLES / "cnn.json"), "--plan", str(tmp_path / "plan.json"), "-o", str(bundle),
                 "--section", ".tinyswap_model"]) == 0
    model = (bundle / "model.tflite").read_bytes()
    smap_json = json.loads((bundle / "slotmap.json").read_text())
    smap = SlotMap.from_json(smap_json)
    pkg = package(smap_json, 5, "A", 1)
    (tmp_path / "a.tsap").write_bytes(pkg)
    (tmp_path / "key.raw").write_bytes(KEY.public_key().public_bytes(serialization.Encoding.Raw,
                                                                        serialization.PublicFormat.Raw))
    # The device C code is C99: compiled as C, linked with the C++ program and TFLM.
    objects = []
    for name in ("tinyswap_fw.c", "tinyswap_layout.c"):
        obj = tmp_path / (name + ".o")
        done = subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-c", str(bundle / name),
                               f"-I{bundle}", "-o", str(obj)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        objects.append(str(obj))
    ops = sorted({op.op_name for op in read_model(model).main.operators})
    (tmp_path / "ops.inc").write_text("".join(f"TINYSWAP_OP({_resolver_method(op)})\n" for op in ops))
    exe = tmp_path / "install_runner"
    cmd = ["g++", *tflm["cxxflags"], "-Werror", *tflm["includes"], f"-I{bundle}", f"-I{tmp_path}",
           str(INSTALL_RUNNER), str(bundle / "model_data.cc"), *objects, str(tflm["lib"]), *tflm["ldflags"],
           "-lcrypto", "-o", str(exe)]
    done = subprocess.run(cmd, cwd=tflm["tree"], capture_output=True, text=True, timeout=600)
    if done.returncode != 0 and "openssl/evp.h" in done.stderr:
        pytest.skip("OpenSSL's headers (libssl-dev) are not installed: the host port's crypto comes from libcrypto")
    assert done.returncode == 0, done.stderr[-4000:]

    graph = read_model(model).main
    rng = np.random.default_rng(11)
    for slot in range(smap.num_slots):
        inputs = [rng.integers(-128, 128, size=graph.tensors[i].shape, dtype=np.int8) for i in graph.inputs]
        for gate in smap_json["gates"]:  # this slot fully on, the others off
            inputs[gate["input_index"]][:] = gate_value(smap_json, gate["slot"], 1.0 if gate["slot"] == slot else 0.0)
        (tmp_path / "in.bin").write_bytes(b"".join(x.tobytes() for x in inputs))
        done = subprocess.run([str(exe), "key.raw", "a.tsap", str(slot), "in.bin", "before.bin", "in.bin", "after.bin"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout == f"installed {slot}\n", done.stdout + done.stderr
        image = RamImage(model)
        SlotBytes(image, smap).write(slot, parse_package(pkg))
        flat = lambda outs: b"".join(np.ascontiguousarray(o).tobytes() for o in outs)  # noqa: E731
        before, after = flat(run_tflm(model, inputs)), flat(run_tflm(bytes(image.buffer), inputs))
        assert before != after, "the adapter changed nothing: the check would prove nothing"
        assert (tmp_path / "before.bin").read_bytes() == before, f"slot {slot}: before the install"
        assert (tmp_path / "after.bin").read_bytes() == after, f"slot {slot}: after the install, live"
