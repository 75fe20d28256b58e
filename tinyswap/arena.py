"""The tensor arena TFLite Micro needs for a model: measured with the `tflite_micro` wheel.

Our interpreter's `arena_bytes` is the activation plan only: the non-persistent tensors TFLM's
greedy planner places at the head of the arena. TFLite Micro also keeps, in the same arena,
persistent structures at its tail: one `TfLiteEvalTensor` per tensor, a node and registration
per operator, each kernel's op data (per-channel multipliers and shifts, ...), the parsed
builtin options, scratch buffer handles and the allocator itself. A `kArenaSize` sized from the
plan alone fails at `AllocateTensors`.

`tflm_arena_figure(model)` returns the figure to give `kArenaSize`:

* with the wheel installed (it is a dependency of the package), it is measured: the smallest
  arena, in multiples of 16 bytes, in which the wheel allocates the model, found by a capped
  binary search, then checked by one invoke at that size and at the recommended size. The
  recommendation adds a small margin (`ARENA_MARGIN_FRACTION` of the smallest, at most
  `ARENA_MARGIN_MAX_BYTES`, rounded up to 16 bytes) for an arena whose start is not 16-byte
  aligned (TFLM aligns it, losing up to 15 bytes) and for small differences between TFLM builds.
  The wheel is a 64-bit host build: pointers are 8 bytes, so the persistent structures are
  larger than on a 32-bit MCU and the figure is an upper bound there, for TFLM's reference
  kernels. Optimized kernels (CMSIS-NN) may request extra scratch buffers: add what their
  `*_get_buffer_size` functions report.
* without the wheel, it is an estimate, labelled as such: our activation plan plus per-tensor,
  per-operator and per-output-channel overheads (`ESTIMATE_*` below) fitted on the repository's
  models with the wheel and rounded up so that the estimate covers every one of them.

The wheel segfaults (instead of raising) when the arena cannot even hold its allocator, so the
search runs in a child process; a try that kills the child counts as "too small" and the child
is restarted above it. Results are cached per model digest for the life of the process.

This module is runtime-level: it imports no compiler and no simulator.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from tinyswap.errors import TinySwapError

ARENA_GRANULE = 16  # the wheel and a firmware's `alignas(16)` arena: sizes are searched in 16-byte steps
ARENA_MARGIN_FRACTION = 0.05  # the recommendation: smallest + 5% ...
ARENA_MARGIN_MAX_BYTES = 1024  # ... but never more than 1 KiB over the smallest
MAX_TRIES = 48  # allocations tried per model (a binary search over 16-byte steps up to 4 GiB needs ~28)
MAX_CHILD_RESTARTS = 4  # children the wheel may crash before the measurement gives up
CHILD_TIMEOUT_S = 300.0

# Estimate without the wheel: plan + FIXED + PER_TENSOR x tensors + PER_OPERATOR x operators
# + PER_CHANNEL x (output channels of per-channel quantized weights) + PER_INPUT x graph inputs.
# Chosen with tflite_micro 0.dev20261023182759 (64-bit) on the 16 models of models/tflm,
# models/keras, models/digits and models/examples as the round constants that cover every
# measured smallest arena with the least worst-case excess (1.0-1.3x; some exactly), then
# multiplied by ESTIMATE_SAFETY for models unlike these: the estimate is 1.1-1.42x the measured
# smallest arena on all of them (tests/tinyswap/test_arena.py checks the models it measures).
# A model with other kernels or many more inputs may still need more: measure it with the wheel.
ESTIMATE_FIXED_BYTES = 512
ESTIMATE_PER_TENSOR_BYTES = 32
ESTIMATE_PER_OPERATOR_BYTES = 160
ESTIMATE_PER_CHANNEL_BYTES = 8
ESTIMATE_PER_INPUT_BYTES = 768
ESTIMATE_SAFETY = 1.10


class ArenaMeasurementError(TinySwapError):
    """The wheel could not allocate or invoke the model at any arena size tried."""


@dataclass(frozen=True)
class ArenaFigure:
    """How much RAM TFLite Micro's tensor arena needs for one model.

    tflm_bytes: the figure to give `kArenaSize` (`TINYSWAP_ARENA_BYTES`): the wheel allocated
        and invoked the model in it (measured), or the estimate (not measured).
    smallest_bytes: the smallest 16-byte multiple the wheel allocated and invoked the model in
        (None when estimated): 16 bytes fewer fails.
    plan_bytes: our interpreter's activation plan (TFLM's arena head), for comparison.
    measured: True if the wheel measured it, False for the estimate.
    method: one line saying how the figure was obtained, for manifests and headers.
    wheel_version: the `tflite_micro` version that measured it (None for an estimate).
    tries: allocations tried by the search (0 for an estimate).
    """

    tflm_bytes: int
    smallest_bytes: int | None
    plan_bytes: int
    measured: bool
    method: str
    wheel_version: str | None
    tries: int = 0

    def to_json(self) -> dict[str, Any]:
        """The manifest's `arena` object."""
        return {"tflm_bytes": self.tflm_bytes, "tflm_smallest_bytes": self.smallest_bytes,
                "measured": self.measured, "method": self.method, "tinyswap_plan_bytes": self.plan_bytes}


def _round_up(value: int, granule: int = ARENA_GRANULE) -> int:
    return -(-int(value) // granule) * granule


def recommended_bytes(smallest: int) -> int:
    """The recommended arena for a measured smallest arena: + min(5%, 1 KiB), 16-byte multiple."""
    margin = min(_round_up(math.ceil(smallest * ARENA_MARGIN_FRACTION)), ARENA_MARGIN_MAX_BYTES)
    return _round_up(smallest) + margin


@functools.lru_cache(maxsize=1)
def wheel_version() -> str | None:
    """The installed `tflite_micro` version, or None when the wheel is absent."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("tflite_micro") is None:
        return None
    for dist in ("tflite-micro", "tflite_micro"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def _model_facts(model: bytes) -> dict[str, int]:
    """Our activation plan and the counts the estimate uses."""
    from tinyswap.interpreter import Interpreter

    interp = Interpreter(model_content=model)
    interp.allocate_tensors()
    graph = interp.model.main
    channels = 0
    for op in graph.operators:
        for i in op.inputs[1:2]:  # the filter / weights: per-channel multipliers and shifts
            if i < 0:
                continue
            q = graph.tensors[i].quantization
            if q is not None and q.scale.size > 1:
                channels += int(q.scale.size)
    return {"plan": int(interp.arena_bytes), "tensors": len(graph.tensors), "operators": len(graph.operators),
            "channels": channels, "inputs": len(graph.inputs)}


def estimate_tflm_arena(model: bytes | bytearray) -> ArenaFigure:
    """The arena estimate used when the wheel is absent (see the module docstring)."""
    facts = _model_facts(bytes(model))
    total = (facts["plan"] + ESTIMATE_FIXED_BYTES + ESTIMATE_PER_TENSOR_BYTES * facts["tensors"]
             + ESTIMATE_PER_OPERATOR_BYTES * facts["operators"] + ESTIMATE_PER_CHANNEL_BYTES * facts["channels"]
             + ESTIMATE_PER_INPUT_BYTES * facts["inputs"])
    method = ("ESTIMATE without tflite_micro: (tinyswap plan + per-tensor/operator/channel/input overheads) x 1.1, "
              "fitted on 64-bit tflite_micro; install tflite-micro to measure it")
    return ArenaFigure(_round_up(math.ceil(total * ESTIMATE_SAFETY)), None, facts["plan"], False, method, None, 0)


# The child: reads the model on stdin, prints one line per allocation it is about to try
# ("try N", flushed first, so that a crash names the size that killed it), then "done {json}".
# After the search it invokes once (zero inputs) at the smallest and at the recommended size.
_CHILD = r"""
import json, math, sys
import numpy as np
from tflite_micro import runtime
args = json.loads(sys.argv[1])
model = sys.stdin.buffer.read()
G = args["granule"]
tries = 0
def say(text):
    sys.stdout.write(text + "\n"); sys.stdout.flush()
def make(n):
    global tries
    tries += 1
    say("try %d" % n)
    try:
        return runtime.Interpreter.from_bytes(model, arena_size=n)
    except Exception:
        return None
def invoke(n):
    say("invoke %d" % n)
    it = runtime.Interpreter.from_bytes(model, arena_size=n)
    for i in range(args["inputs"]):
        d = it.get_input_details(i)
        it.set_input(np.zeros([int(s) for s in d["shape"]], dtype=d["dtype"]), i)
    it.invoke()
lo = args["floor"]  # known to fail (0: nothing known)
n = max(args["hint"], lo + G)
hi = None
while tries < args["max_tries"]:
    if make(n) is not None:
        hi = n
        break
    lo = n
    n *= 2
if hi is None:
    say("done " + json.dumps({"error": "no arena up to %d bytes allocated the model" % lo, "tries": tries}))
    sys.exit(0)
while hi - lo > G and tries < args["max_tries"]:
    mid = (lo + hi) // 2 // G * G
    if make(mid) is not None:
        hi = mid
    else:
        lo = mid
result = {"smallest": hi, "exact": hi - lo <= G, "tries": tries}
rec = -(-hi // G) * G + min(-(-int(math.ceil(hi * args["fraction"])) // G) * G, args["margin_max"])
result["recommended"] = rec
try:
    invoke(hi)
    invoke(rec)
except Exception as exc:
    result["invoke_error"] = repr(exc)[:300]
say("done " + json.dumps(result))
"""


def _run_child(model: bytes, params: dict[str, Any]) -> tuple[dict[str, Any] | None, int | None, str]:
    """One child run: (its result or None, the size it was trying when it died, stderr tail)."""
    # -I (isolated): the child must import the installed wheel, never a `tflite_micro.py` that
    # happens to sit in the current directory (a TFLite Micro source checkout has one).
    proc = subprocess.run([sys.executable, "-I", "-c", _CHILD, json.dumps(params)], input=model,
                          capture_output=True, timeout=CHILD_TIMEOUT_S)
    err = proc.stderr.decode("utf-8", "replace")[-300:]
    lines = proc.stdout.decode("utf-8", "replace").splitlines()
    for line in lines:
        if line.startswith("done "):
            return json.loads(line[5:]), None, ""
    last = lines[-1] if lines else ""
    if last.startswith("invoke "):  # it allocated, then the invoke died: not a size problem
        return {"smallest": int(last[7:]), "invoke_error": f"the wheel crashed invoking the model: {err}"}, None, ""
    return None, (int(last[4:]) if last.startswith("try ") else None), err


def measure_tflm_arena(model: bytes | bytearray, *, max_tries: int = MAX_TRIES, hint: int | None = None) -> ArenaFigure:
    """Measure the smallest arena the `tflite_micro` wheel allocates and invokes `model` in.

    `hint`: the first size tried (default: the estimate, at least 1 KiB); the search doubles it
    until the model allocates, then bisects. A size that crashes the wheel counts as too small:
    the child is restarted at twice that size. Raises `OracleUnavailable` without the wheel and
    `ArenaMeasurementError` if no arena works.
    """
    from tinyswap.oracles import OracleUnavailable

    version = wheel_version()
    if version is None:
        raise OracleUnavailable("TFLite Micro is not installed: pip install tflite-micro")
    data = bytes(model)
    facts = _model_facts(data)
    if hint is None:
        hint = max(estimate_tflm_arena(data).tflm_bytes, 1024)
    hint = max(_round_up(hint), ARENA_GRANULE)
    floor = 0
    tries = 0
    result = None
    for _ in range(MAX_CHILD_RESTARTS + 1):
        params = {"granule": ARENA_GRANULE, "floor": floor, "hint": max(hint, floor + ARENA_GRANULE),
                  "max_tries": max(1, max_tries - tries), "inputs": facts["inputs"],
                  "fraction": ARENA_MARGIN_FRACTION, "margin_max": ARENA_MARGIN_MAX_BYTES}
        result, crashed_at, err = _run_child(data, params)
        if result is not None:
            tries += int(result.get("tries", 0))
            break
        if crashed_at is None:
            raise ArenaMeasurementError(f"the tflite_micro child process failed before trying an arena: {err}")
        tries += 1
        floor = max(floor, crashed_at)  # the wheel died allocating this size: too small
        hint = max(hint, 2 * crashed_at)  # the crashes happen below the allocator's own size: step over them
    if result is None:
        raise ArenaMeasurementError(f"tflite_micro crashed {MAX_CHILD_RESTARTS + 1} times measuring the arena")
    if "error" in result:
        raise ArenaMeasurementError(f"tflite_micro: {result['error']}")
    if "invoke_error" in result:
        raise ArenaMeasurementError(f"tflite_micro allocated the model in {result['smallest']} bytes but could not "
                                    f"invoke it: {result['invoke_error']}")
    smallest = int(result["smallest"])
    recommended = recommended_bytes(smallest)
    if int(result["recommended"]) != recommended:  # the child invoked at its own figure: they must agree
        raise ArenaMeasurementError(f"child recommended {result['recommended']} B, expected {recommended} B")
    exact = "" if result.get("exact", True) else f" (search capped at {max_tries} tries: not minimal)"
    method = (f"measured with tflite_micro {version}: smallest arena {smallest} B + min(5%, 1 KiB){exact}; "
              "64-bit host, an upper bound for 32-bit MCUs with reference kernels")
    return ArenaFigure(recommended, smallest, facts["plan"], True, method, version, tries)


_CACHE: dict[str, ArenaFigure] = {}


def tflm_arena_figure(model: bytes | bytearray, *, measure: bool = True) -> ArenaFigure:
    """The TFLite Micro arena for `model`: measured with the wheel when it is installed (and
    `measure`), else the labelled estimate. Cached per model digest for the process."""
    data = bytes(model)
    use_wheel = measure and wheel_version() is not None
    key = hashlib.sha256(data).hexdigest() + (":measured" if use_wheel else ":estimated")
    found = _CACHE.get(key)
    if found is None:
        found = measure_tflm_arena(data) if use_wheel else estimate_tflm_arena(data)
        _CACHE[key] = found
    return found


__all__ = [
    "ARENA_MARGIN_FRACTION", "ARENA_MARGIN_MAX_BYTES", "ArenaFigure", "ArenaMeasurementError",
    "estimate_tflm_arena", "measure_tflm_arena", "recommended_bytes", "tflm_arena_figure", "wheel_version",
]
