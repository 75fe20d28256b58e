"""Sweep: mutated packages through the device C code's parser and verifier, built with ASan and
UBSan (`firmware_fuzz_worker.py` says how the cases are made). The worker runs in a child
process with the sanitizer runtimes preloaded: any out-of-bounds access or undefined behaviour
aborts it, which fails this test; so does a package the C accepts and Python refuses.
CI runs 600 cases; `TINYSWAP_FULL=1` runs 10,200."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tinyswap.export.fw_host import FirmwareBuildError, compiler, sanitizer_preload

from tests.conftest import FULL, REPO

CASES = 10_200 if FULL else 600


def _worker(*args: str) -> subprocess.CompletedProcess[str]:
    if compiler() is None:
        pytest.skip("no C compiler on this machine: the device code cannot be built")
    try:
        preload = sanitizer_preload()
    except FirmwareBuildError as exc:
        pytest.skip(f"the sanitizer runtimes are not installed: {exc}")
    env = {**os.environ, "LD_PRELOAD": preload, "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tests.sweeps.firmware_fuzz_worker", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=3000)


def test_the_sanitizers_are_live() -> None:
    """Control: told that a package's heap block is 100 bytes longer than it is, the C reads
    past it (the digest and signature at the end) and AddressSanitizer must stop the process."""
    proc = _worker("canary", "0")
    assert proc.returncode not in (0, 4) and "AddressSanitizer: heap-buffer-overflow" in proc.stderr, proc.stderr[-2000:]


def test_mutated_packages_are_refused_with_a_status_and_no_memory_error() -> None:
    proc = _worker(str(CASES), "20261201")
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    print(summary)
    statuses = summary["statuses"]
    assert summary["cases"] >= CASES * 0.95  # a few metadata edits cannot be written as JSON and are skipped
    # Refusals dominate; acceptances are metadata edits Python accepts too (the worker checks).
    refused = sum(n for k, n in statuses.items() if not k.endswith("TSFW_OK"))
    assert refused >= summary["cases"] * 0.75
    # The structure-aware generators must get past the signature into the JSON and layout checks.
    deep = {k.split(":")[1] for k in statuses if k.startswith(("metadata:", "table:"))}
    assert deep & {"TSFW_E_FORMAT", "TSFW_E_SHAPE", "TSFW_E_UNKNOWN_LAYER", "TSFW_E_MISSING_TENSORS"}, statuses
