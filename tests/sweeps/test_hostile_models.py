"""Hostile inputs built on purpose: each gives a typed error or a correct run, quickly.

- flatbuffers whose vectors point at one shared table many times (subgraphs, tensors,
  operators, quantization, index vectors), built with `flatbuffers.Builder`;
- pooling windows far larger than the image (up to 2^31 - 1), odd strides;
- JSON nested thousands deep, integers of thousands of digits.

Every case must finish in under a second on a quiet machine; the assertion allows 2 s so a
loaded CI runner stays green, and each test prints its slowest case. CI runs a bounded seeded
sample; `TINYSWAP_FULL=1` runs more.
"""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from pathlib import Path
from typing import Callable

import flatbuffers
import numpy as np
import pytest

from tinyswap import Interpreter
from tinyswap.errors import InputFileError, KernelError, ModelError, TinySwapError
from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap.files import MAX_JSON_DEPTH, MAX_JSON_INT_DIGITS, parse_json_bounded, read_json
from tinyswap.kernels.pooling import MAX_POOL_WORK
from tinyswap.reader import MAX_OPERATORS, MAX_SUBGRAPHS, MAX_TENSORS, read_model
from tinyswap.schema import ModelField, OperatorCodeField, OperatorField, QuantizationField, SubGraphField, TensorField

from tests.conftest import FULL

TIME_LIMIT = 2.0  # seconds; the target is 1 s, the margin is for a loaded machine
MEMORY_LIMIT = 256 << 20
RESHAPE, RELU = 22, 19
INT8 = 9


SLOWEST: list[tuple[float, str]] = []  # (seconds, test) of every timed case


@pytest.fixture(autouse=True, scope="module")
def _report_slowest():
    yield
    if SLOWEST:
        seconds, test = max(SLOWEST)
        print(f"\nhostile inputs: {len(SLOWEST)} timed cases, slowest {seconds * 1e3:.1f} ms ({test})")


def timed(fn: Callable[[], str]) -> tuple[str, float]:
    start = time.perf_counter()
    outcome = fn()
    elapsed = time.perf_counter() - start
    SLOWEST.append((elapsed, os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]))
    return outcome, elapsed


def timed_and_traced(fn: Callable[[], str]) -> tuple[str, float, int]:
    """(outcome, seconds, peak bytes): timed on a plain run, memory from a second, traced run
    (tracing slows Python several times over, so it must not count against the time)."""
    outcome, elapsed = timed(fn)
    tracemalloc.start()
    try:
        assert fn() == outcome
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return outcome, elapsed, peak


def run_model(data: bytes) -> str:
    """'ran' after a full invoke, 'refused' for a ModelError-family error; anything else raises."""
    try:
        interp = Interpreter(model_content=data)  # the default arena bound is part of the rule
        interp.allocate_tensors()
        for d in interp.get_input_details():
            interp.set_tensor(d["index"], np.zeros(tuple(d["shape"]), np.dtype(d["dtype"])))
        interp.invoke()
        return "ran"
    except KernelError:
        raise  # prepare accepted something the kernel could not do: a bug
    except TinySwapError:
        return "refused"


# -- flatbuffers with shared tables -----------------------------------------------------------

def _i32_vector(b: flatbuffers.Builder, values: list[int]) -> int:
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependInt32(v)
    return b.EndVector()


def _offset_vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def shared_model(n_subgraphs: int = 1, n_tensors: int = 1, n_ops: int = 0, distinct_ops: int = 0,
                 op_inputs: int = 1, scales: int = 0, opcode: int = RESHAPE) -> bytes:
    """A model whose subgraph vector lists one subgraph `n_subgraphs` times, whose tensor vector
    lists one [1] int8 tensor `n_tensors` times, and whose operator vector lists one operator
    `n_ops` times, or `distinct_ops` operators sharing one input vector of `op_inputs` entries.
    `scales` > 0 gives the tensor a shared quantization table of that many scales."""
    b = flatbuffers.Builder(1024)
    quant = None
    if scales:
        scale = _i32_vector(b, [0x3DCCCCCD] * scales)  # 0.1f as raw bits
        b.StartVector(8, scales, 8)
        for _ in range(scales):
            b.PrependInt64(0)
        zero = b.EndVector()
        b.StartObject(7)
        b.PrependUOffsetTRelativeSlot(QuantizationField.SCALE, scale, 0)
        b.PrependUOffsetTRelativeSlot(QuantizationField.ZERO_POINT, zero, 0)
        quant = b.EndObject()
    shape = _i32_vector(b, [1] if scales <= 1 else [scales])
    b.StartObject(9)
    b.PrependUOffsetTRelativeSlot(TensorField.SHAPE, shape, 0)
    b.PrependInt8Slot(TensorField.TYPE, INT8, 0)
    if quant is not None:
        b.PrependUOffsetTRelativeSlot(TensorField.QUANTIZATION, quant, 0)
    tensor = b.EndObject()
    tensors = _offset_vector(b, [tensor] * n_tensors)
    ops = []
    if n_ops or distinct_ops:
        inputs = _i32_vector(b, [0] * op_inputs)
        for k in range(max(1 if n_ops else 0, distinct_ops)):
            outputs = _i32_vector(b, [min(k + 1, n_tensors - 1)])
            b.StartObject(9)
            b.PrependUOffsetTRelativeSlot(OperatorField.INPUTS, inputs, 0)
            b.PrependUOffsetTRelativeSlot(OperatorField.OUTPUTS, outputs, 0)
            ops.append(b.EndObject())
        ops = ops * n_ops if n_ops else ops
    operators = _offset_vector(b, ops) if ops else None
    io = _i32_vector(b, [0])
    b.StartObject(5)
    b.PrependUOffsetTRelativeSlot(SubGraphField.TENSORS, tensors, 0)
    b.PrependUOffsetTRelativeSlot(SubGraphField.INPUTS, io, 0)
    b.PrependUOffsetTRelativeSlot(SubGraphField.OUTPUTS, io, 0)
    if operators is not None:
        b.PrependUOffsetTRelativeSlot(SubGraphField.OPERATORS, operators, 0)
    subgraph = b.EndObject()
    subgraphs = _offset_vector(b, [subgraph] * n_subgraphs)
    b.StartObject(4)
    b.PrependInt32Slot(OperatorCodeField.BUILTIN_CODE, opcode, 0)
    code = b.EndObject()
    codes = _offset_vector(b, [code])
    b.StartObject(3)
    buffer = b.EndObject()
    buffers = _offset_vector(b, [buffer])
    b.StartObject(8)
    b.PrependUint32Slot(ModelField.VERSION, 3, 0)
    b.PrependUOffsetTRelativeSlot(ModelField.OPERATOR_CODES, codes, 0)
    b.PrependUOffsetTRelativeSlot(ModelField.SUBGRAPHS, subgraphs, 0)
    b.PrependUOffsetTRelativeSlot(ModelField.BUFFERS, buffers, 0)
    b.Finish(b.EndObject(), b"TFL3")
    return bytes(b.Output())


def test_many_subgraphs_sharing_one_are_refused_before_parsing() -> None:
    # 1,000 subgraph entries, one subgraph listing one tensor 1,000 times: 8 KB (was 45 s).
    data = shared_model(n_subgraphs=1000, n_tensors=1000)
    assert len(data) < 10_000
    with pytest.raises(ModelError, match=f"1000 subgraphs, over the supported maximum of {MAX_SUBGRAPHS}"):
        read_model(data)
    outcome, elapsed = timed(lambda: run_model(data))
    print(f"1000 shared subgraphs: {outcome} in {elapsed * 1e3:.1f} ms")
    assert outcome == "refused" and elapsed < TIME_LIMIT


SHARED_CASES = [
    dict(n_tensors=1000),
    dict(n_tensors=MAX_TENSORS),
    dict(n_tensors=MAX_TENSORS + 1),
    dict(n_tensors=2, n_ops=100_000),  # 400 KB of one operator (was 17 s to refuse)
    dict(n_tensors=2, n_ops=MAX_OPERATORS),
    dict(n_tensors=MAX_OPERATORS + 1, distinct_ops=MAX_OPERATORS, scales=1, opcode=RELU),  # runs
    dict(n_tensors=8, distinct_ops=500, op_inputs=20_000),  # distinct operators, one shared vector
    dict(n_tensors=MAX_TENSORS, scales=10_000),  # one big quantization table shared by every tensor
]
if FULL:
    rng = np.random.default_rng(7)
    SHARED_CASES += [
        dict(n_tensors=int(rng.integers(1, MAX_TENSORS + 8)), n_ops=int(rng.integers(0, 50_000)),
             op_inputs=int(rng.integers(1, 5000)), scales=int(rng.integers(0, 3000)))
        for _ in range(20)
    ]


@pytest.mark.parametrize("case", SHARED_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_shared_tables_cost_linear_time(case: dict) -> None:
    data = shared_model(**case)
    outcome, elapsed, peak = timed_and_traced(lambda: run_model(data))
    print(f"{case}: {len(data)} bytes, {outcome} in {elapsed * 1e3:.1f} ms, peak {peak >> 20} MB")
    assert elapsed < TIME_LIMIT and peak < MEMORY_LIMIT


def test_shared_tensor_entries_are_separate_tensors() -> None:
    model = read_model(shared_model(n_tensors=5))
    assert [t.index for t in model.main.tensors] == [0, 1, 2, 3, 4]
    assert [t.name for t in model.main.tensors] == [f"tensor_{i}" for i in range(5)]
    model = read_model(shared_model(n_tensors=3, n_ops=4))
    assert [op.index for op in model.main.operators] == [0, 1, 2, 3]


def test_distinct_tables_sharing_a_big_vector_exhaust_the_budget() -> None:
    data = shared_model(n_tensors=8, distinct_ops=500, op_inputs=20_000)
    with pytest.raises(ModelError, match="table visits and vector elements"):
        read_model(data)


# -- pooling windows -------------------------------------------------------------------------

def pool_model(op: str, shape: tuple[int, ...], out_shape: tuple[int, ...], filt: tuple[int, int],
               stride: tuple[int, int], same: bool) -> bytes:
    q = Quant(0.1, 3)
    x = Tensor("x", shape, np.int8, quant=q)
    y = Tensor("y", out_shape, np.int8, quant=q)
    opts = {"padding": 0 if same else 1, "stride_h": stride[0], "stride_w": stride[1],
            "filter_height": filt[0], "filter_width": filt[1]}
    return build_model(Model([Operator(op, [x], [y], opts)], [x], [y]))


def _out(size: int, filt: int, stride: int, same: bool) -> int:
    return (size + stride - 1) // stride if same else max((size - filt + stride) // stride, 1)


def reference_pool(op: str, x: np.ndarray, filt, stride, same: bool) -> np.ndarray:
    """Output by output over the in-image taps, as the TFLM reference loops do."""
    b, h, w, c = x.shape
    oh, ow = _out(h, filt[0], stride[0], same), _out(w, filt[1], stride[1], same)
    pad_h = max((oh - 1) * stride[0] + filt[0] - h, 0) // 2 if same else 0
    pad_w = max((ow - 1) * stride[1] + filt[1] - w, 0) // 2 if same else 0
    out = np.zeros((b, oh, ow, c), np.int8)
    for i in range(oh):
        y0 = i * stride[0] - pad_h
        for j in range(ow):
            x0 = j * stride[1] - pad_w
            taps = x[:, max(y0, 0) : max(min(y0 + filt[0], h), 0), max(x0, 0) : max(min(x0 + filt[1], w), 0), :]
            taps = taps.reshape(b, -1, c).astype(np.int64)
            if op == "MAX_POOL_2D":
                out[:, i, j] = taps.max(axis=1)
            else:
                n, acc = taps.shape[1], taps.sum(axis=1)
                out[:, i, j] = np.where(acc > 0, (acc + n // 2) // n, -((n // 2 - acc) // n))
    return out


FILTERS = [1, 2, 3, 7, 97, 16384, 1 << 20, 2**31 - 1]
STRIDES = [1, 2, 3, 1 << 20]
POOL_CASES = 60 if FULL else 16


def _pool_cases() -> list[tuple]:
    rng = np.random.default_rng(11)
    cases = [("MAX_POOL_2D", (1, 12, 12, 4), (16384, 16384), (1, 1), True),
             ("AVERAGE_POOL_2D", (1, 12, 12, 4), (16384, 16384), (1, 1), True),
             ("AVERAGE_POOL_2D", (1, 9, 7, 3), (2**31 - 1, 2**31 - 1), (1, 1), True),
             ("MAX_POOL_2D", (1, 96, 96, 32), (96, 96), (1, 1), True)]
    for _ in range(POOL_CASES - len(cases)):
        op = ["MAX_POOL_2D", "AVERAGE_POOL_2D"][int(rng.integers(0, 2))]
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 17)), int(rng.integers(1, 17)), int(rng.integers(1, 5)))
        filt = tuple(FILTERS[int(rng.integers(0, len(FILTERS)))] for _ in range(2))
        stride = tuple(STRIDES[int(rng.integers(0, len(STRIDES)))] for _ in range(2))
        cases.append((op, shape, filt, stride, bool(rng.integers(0, 2))))
    return cases


@pytest.mark.parametrize("op,shape,filt,stride,same", _pool_cases())
def test_huge_pooling_windows_run_correctly_or_are_refused(op, shape, filt, stride, same) -> None:
    out_shape = (shape[0], _out(shape[1], filt[0], stride[0], same), _out(shape[2], filt[1], stride[1], same), shape[3])
    model = pool_model(op, shape, out_shape, filt, stride, same)
    x = np.random.default_rng(sum(shape)).integers(-128, 128, shape).astype(np.int8)
    result: list[np.ndarray] = []

    def run() -> str:
        result.clear()
        try:
            result.extend(Interpreter(model_content=model).run(x))
            return "ran"
        except KernelError:
            raise
        except ModelError:
            return "refused"

    outcome, elapsed, peak = timed_and_traced(run)
    print(f"{op} {shape} filter {filt} stride {stride} {'SAME' if same else 'VALID'}: {outcome} "
          f"in {elapsed * 1e3:.1f} ms, peak {peak >> 20} MB")
    assert elapsed < TIME_LIMIT and peak < MEMORY_LIMIT
    fits = same or (filt[0] <= shape[1] and filt[1] <= shape[2])
    if outcome == "ran":
        assert fits
        np.testing.assert_array_equal(result[0], reference_pool(op, x, filt, stride, same))
    else:
        # Only windows that do not fit, overflow TFLM's int arithmetic or exceed the work bound.
        assert not fits or max(filt) + max(stride) * 16 > 2**31 - 1 or shape[0] * shape[3] * 16**4 > MAX_POOL_WORK


def test_pooling_over_the_work_bound_is_refused_naming_the_op() -> None:
    shape = (1, 512, 512, 64)  # 16M elements: a 512x512 MAX_POOL window reads over 2^27 of them
    model = pool_model("MAX_POOL_2D", shape, (1, 512, 512, 64), (512, 512), (1, 1), True)
    with pytest.raises(ModelError, match=r"MAX_POOL_2D.*over the bound"):
        Interpreter(model_content=model).allocate_tensors()


# -- JSON --------------------------------------------------------------------------------------

JSON_DEPTHS = [1, 2, 10, MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 1000, 5000, 100_000] + ([250_000, 1_000_000] if FULL else [])
INT_DIGITS = [1, 19, 20, MAX_JSON_INT_DIGITS, MAX_JSON_INT_DIGITS + 1, 4300, 5000, 100_000] + (
    [1_000_000] if FULL else [])


@pytest.mark.parametrize("depth", JSON_DEPTHS)
@pytest.mark.parametrize("kind", ["list", "object", "string-brackets"])
def test_deep_json_is_refused_or_parsed(depth: int, kind: str) -> None:
    if kind == "list":
        text = "[" * depth + "]" * depth
    elif kind == "object":
        text = '{"a":' * depth + "1" + "}" * depth
    else:  # brackets inside strings do not nest
        inner = min(depth, MAX_JSON_DEPTH - 1)  # plus the outer list: at the limit, not over it
        text = '["' + "[{" * depth + '\\"", ' + "[" * inner + "]" * inner + "]"
    outcome, elapsed = timed(lambda: _parse(text))
    print(f"{kind} depth {depth}: {outcome} in {elapsed * 1e3:.1f} ms")
    assert elapsed < TIME_LIMIT
    deep = depth > MAX_JSON_DEPTH and kind != "string-brackets"
    assert outcome == ("deep" if deep else "parsed")


@pytest.mark.parametrize("digits", INT_DIGITS)
@pytest.mark.parametrize("sign", ["", "-"])
def test_huge_json_integers_are_refused_or_parsed(digits: int, sign: str) -> None:
    token = sign + "9" * digits
    text = '{"offset": ' + token + "}"
    outcome, elapsed = timed(lambda: _parse(text))
    print(f"{sign}{digits}-digit integer: {outcome} in {elapsed * 1e3:.1f} ms")
    assert elapsed < TIME_LIMIT
    if digits > MAX_JSON_INT_DIGITS:
        assert outcome == "long"
    else:
        assert outcome == "parsed" and parse_json_bounded(text)["offset"] == int(token)


def _parse(text: str) -> str:
    try:
        parse_json_bounded(text.encode(), "scenario")
        return "parsed"
    except InputFileError as exc:
        assert exc.what == "scenario"
        if "levels deep" in exc.problem:
            return "deep"
        if "digits" in exc.problem:
            return "long"
        raise


def test_read_json_refuses_deep_and_long_json_naming_the_file(tmp_path) -> None:
    deep, long = tmp_path / "deep.json", tmp_path / "long.json"
    deep.write_text("[" * 5000 + "]" * 5000)
    long.write_text("[" + "1" * 5000 + "]")
    with pytest.raises(InputFileError, match=r"slot map .*deep\.json: JSON nested 5000 levels deep"):
        read_json(deep, "slot map")
    with pytest.raises(InputFileError, match=r"plan .*long\.json: JSON integer of 5000 digits"):
        read_json(long, "plan")


# -- one generator over every kind: the bounded-time rule ------------------------------------
#
# Each case is one hostile file under 1 MB: a flatbuffer with shared tables or huge declared
# sizes, a pooling window, or JSON (deep, long integers, overflowing floats, NaN literals, big
# flat arrays) for every reader of JSON from outside: packages (with a valid digest and
# signature, so only the bounds can refuse them), slot maps, scenarios, adapter configs, slot
# plans and model specs. Every case must end in a typed refusal or a correct run within 1 s and
# 256 MB. A case over the time limit is timed once more before it fails: the rule is about
# the work a file causes, not about a neighbour process taking the CPU for a moment.

GENERATED_CASES = 1200 if FULL else 80
GENERATED_TIME_LIMIT = 1.0
FILE_LIMIT = 1 << 20


def _json_value(rng: np.random.Generator) -> str:
    """One hostile JSON value (text), under 1 MB."""
    kind = int(rng.integers(0, 7))
    if kind == 0:  # deep
        depth = int(rng.choice([MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH + 1, 1000, 100_000, 400_000]))
        return ("[" * depth + "]" * depth) if rng.integers(0, 2) else ('{"a":' * depth + "1" + "}" * depth)
    if kind == 1:  # long integers
        return ("-" if rng.integers(0, 2) else "") + "9" * int(rng.choice([19, 20, 64, 65, 4300, 100_000, 900_000]))
    if kind == 2:  # floats that overflow, or constants strict JSON does not have
        return str(rng.choice(["1e999", "-1e999", "NaN", "Infinity", "-Infinity", "1e-999", "4.9e-324"]))
    if kind == 3:  # a big flat array of numbers
        return "[" + ",".join(["0"] * int(rng.integers(1, 200_000))) + "]"
    if kind == 4:  # brackets inside strings (do not nest) and long strings
        return '"' + "[{" * int(rng.integers(1, 300_000)) + '"'
    if kind == 5:
        return str(rng.choice(["null", "true", "{}", "[]", '""', "-0", "0.0"]))
    return "[" + ",".join(['{"a":[1,{"b":null}]}'] * int(rng.integers(1, 20_000))) + "]"


def _json_case(rng: np.random.Generator, tmp: Path) -> tuple[str, Callable[[], str]]:
    from tinyswap.export.adapter_source import load_adapter
    from tinyswap.export.slot_plan import SlotPlan
    from tinyswap.export.spec import load_spec
    from tinyswap.firmware_sim.scenario import validate_scenario
    from tinyswap.firmware_sim.scenario.files import parse_scenario_text
    from tinyswap.package import build_package, parse_package
    from tinyswap.slotmap import SlotMap

    from tests.adapter_cases import KEY, example_bundle

    value = _json_value(rng)
    consumer = str(rng.choice(["package", "slotmap", "scenario", "adapter", "plan", "spec"]))
    if consumer == "package":
        smap = example_bundle("mlp").smap
        field = str(rng.choice(["performance", "tags", "source", "sequence", "extra"]))
        head = json.dumps({"name": "A", "version": "1", "kind": "lora", "base_digest": smap["base_digest"],
                           "sequence": 1, "tensors": []})[:-1]
        meta_text = head + f', "{field}": ' + value + "}"
        try:
            meta = json.loads(meta_text)
        except (ValueError, RecursionError):
            meta = None
        if meta is None or len(meta_text) > FILE_LIMIT:
            return consumer, lambda: "skipped"
        # A valid digest and signature: only the parser's bounds stand between the JSON and the swap path.
        try:
            data = build_package({k: v for k, v in meta.items() if k != "tensors"}, [], KEY)
        except (ValueError, RecursionError):
            return consumer, lambda: "skipped"  # json.dumps refuses what it cannot write back

        def run() -> str:
            try:
                parse_package(data)
                return "parsed"
            except TinySwapError:
                return "refused"
        return consumer, run
    text = {"slotmap": '{"format": 1, "slots": ' + value + "}",
            "scenario": '{"format": "tinyswap-scenario", "steps": ' + value + "}",
            "adapter": '{"name": "a", "version": "1", "sequence": 1, "kind": "lora", "targets": ' + value + "}",
            "plan": '{"layers": ' + value + "}",
            "spec": '{"name": "m", "input_shape": ' + value + "}"}[consumer]
    if len(text) > FILE_LIMIT:
        return consumer, lambda: "skipped"
    path = tmp / f"{consumer}.json"
    if consumer == "adapter":
        path = tmp / "adapter"
        path.mkdir(exist_ok=True)
        (path / "adapter.json").write_text(text)
        np.savez(path / "adapter.npz", **{"fc2/A": np.zeros((4, 128), np.float32), "fc2/B": np.zeros((64, 4), np.float32)})
    else:
        path.write_text(text)
    load = {"slotmap": lambda: SlotMap.load(path), "scenario": lambda: validate_scenario(parse_scenario_text(text)),
            "adapter": lambda: load_adapter(path), "plan": lambda: SlotPlan.load(path),
            "spec": lambda: load_spec(path)}[consumer]

    def run() -> str:
        try:
            load()
            return "parsed"
        except TinySwapError:
            return "refused"
    return consumer, run


def _model_case(rng: np.random.Generator) -> tuple[str, Callable[[], str]]:
    kind = int(rng.integers(0, 3))
    if kind == 0:
        case = dict(n_subgraphs=int(rng.choice([1, 1, 2, 1000])), n_tensors=int(rng.integers(1, MAX_TENSORS + 8)),
                    n_ops=int(rng.choice([0, 1, 1000, 50_000, MAX_OPERATORS + 1])),
                    op_inputs=int(rng.integers(1, 5000)), scales=int(rng.choice([0, 1, 100, 10_000])),
                    opcode=int(rng.choice([RESHAPE, RELU])))
        data = shared_model(**case)
        return "shared tables", lambda: run_model(data) if len(data) <= FILE_LIMIT else "skipped"
    if kind == 1:
        op = str(rng.choice(["MAX_POOL_2D", "AVERAGE_POOL_2D"]))
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 65)), int(rng.integers(1, 65)), int(rng.integers(1, 9)))
        filt = tuple(int(rng.choice(FILTERS)) for _ in range(2))
        stride = tuple(int(rng.choice(STRIDES)) for _ in range(2))
        same = bool(rng.integers(0, 2))
        out_shape = (shape[0], _out(shape[1], filt[0], stride[0], same), _out(shape[2], filt[1], stride[1], same), shape[3])
        data = pool_model(op, shape, out_shape, filt, stride, same)
        return "pooling", lambda: run_model(data)
    # huge declared sizes: an elementwise op over a tensor of up to the arena bound, or beyond
    dims = tuple(int(rng.choice([1, 7, 1 << 16, 2**31 - 1])) for _ in range(int(rng.integers(1, 6))))
    op = str(rng.choice(["RELU", "RELU6", "SOFTMAX"]))
    x = Tensor("x", dims, np.int8, quant=Quant(0.1, 0))
    y = Tensor("y", dims, np.int8, quant=Quant(1 / 256, -128) if op == "SOFTMAX" else Quant(0.1, 0))
    data = build_model(Model([Operator(op, [x], [y], {"beta": 1.0} if op == "SOFTMAX" else {})], [x], [y]))
    return f"huge shapes {op}", lambda: run_model(data)


def _generated_cases() -> list[int]:
    return list(range(GENERATED_CASES))


@pytest.mark.parametrize("seed", _generated_cases())
def test_generated_hostile_files_are_refused_or_run_within_one_second_and_256_mb(seed: int, tmp_path) -> None:
    rng = np.random.default_rng([20261201, seed])
    kind, run = _json_case(rng, tmp_path) if rng.integers(0, 2) else _model_case(rng)
    outcome, elapsed, peak = timed_and_traced(run)
    for _ in range(2):  # at most twice more: the work a file causes, not a moment of CPU contention
        if elapsed < GENERATED_TIME_LIMIT:
            break
        outcome, again = timed(run)
        elapsed = min(elapsed, again)
    print(f"case {seed} ({kind}): {outcome} in {elapsed * 1e3:.1f} ms, peak {peak >> 20} MB")
    assert outcome in ("ran", "refused", "parsed", "skipped")
    assert elapsed < GENERATED_TIME_LIMIT and peak < MEMORY_LIMIT, (kind, outcome, elapsed, peak)
