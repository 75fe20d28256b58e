"""Hostile graphs built with the model builder: each case gives a typed error or a run equal
to TFLite Micro.

Families (each drawn from a seeded generator, a bounded sample in CI, more with
`TINYSWAP_FULL=1`):

- declared output shapes one dimension off the computed one (PAD, CONV_2D, RELU, SOFTMAX,
  FULLY_CONNECTED, CONCATENATION): refused at `allocate_tensors()`. Of these TFLM itself
  refuses only PAD; the others run on the declared shape (out of bounds), so the wheel is only
  asked about PAD (ADD with such a shape aborts the wheel's process, so it is not generated);
- CONCATENATION of 1 to 16 inputs: up to 10 equal TFLM, more are refused by both;
- CONV_2D / DEPTHWISE_CONV_2D strides and dilations from 1 up to 2^31 - 1: values on which
  TFLM's int32 window arithmetic would overflow, or that its int16 `ConvParams` fields would
  truncate (strides, dilations, paddings above 32767), are refused; the rest equal TFLM;
- PAD sizes near and past int32 (int32 and int64 paddings): refused;
- a graph input backed by a constant buffer: refused (TFLM runs it, writing into the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import pytest

from tinyswap import Interpreter
from tinyswap.errors import TinySwapError
from tinyswap.export.tflite_builder import Model, Operator, Quant, Tensor, build_model
from tinyswap.oracles import run_tflm

from tests.conftest import FULL
from tests.oracle_check import assert_matches_tflm
from tests.tinyswap.test_interpreter import with_graph_input

CASES_PER_FAMILY = 400 if FULL else 25
INT32_MAX = 2**31 - 1
INT16_MAX = 2**15 - 1  # TFLM's ConvParams hold strides, dilations and paddings as int16
Q = Quant(0.1, 0)


@dataclass
class Case:
    name: str
    model: bytes
    inputs: list[np.ndarray]
    refused: str | None  # a fragment of the expected error message, or None: must equal TFLM
    tflm_refuses: bool = False  # ask the wheel too: it must refuse


def _ints(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.integers(-128, 128, size=tuple(shape), dtype=np.int8)


def _off_by_one(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[int, ...]:
    out = list(shape)
    d = int(rng.integers(len(out)))
    out[d] = out[d] + 1 if out[d] == 1 or rng.random() < 0.5 else out[d] - 1
    return tuple(out)


def declared_shape_cases(rng: np.random.Generator) -> Iterator[Case]:
    ops = ["PAD", "CONV_2D", "RELU", "SOFTMAX", "FULLY_CONNECTED", "CONCATENATION"]
    for i in range(CASES_PER_FAMILY):
        op = ops[i % len(ops)]
        if op == "PAD":
            shape = tuple(int(d) for d in rng.integers(1, 5, size=int(rng.integers(1, 5))))
            pairs = rng.integers(0, 3, size=(len(shape), 2)).astype(np.int32)
            computed = tuple(d + a + b for d, (a, b) in zip(shape, pairs.tolist()))
            x = Tensor("x", shape, np.int8, quant=Q)
            extra = [Tensor("p", pairs.shape, np.int32, data=pairs)]
            ins, opts = [x], {}
        elif op == "CONV_2D":
            h, w, c = (int(v) for v in rng.integers(1, 6, size=3))
            shape, computed = (1, h, w, c), (1, h, w, 2)
            x = Tensor("x", shape, np.int8, quant=Q)
            extra = [Tensor("w", (2, 1, 1, c), np.int8, data=_ints(rng, (2, 1, 1, c)), quant=Q)]
            ins = [x]
            opts = dict(padding=int(rng.integers(2)), stride_w=1, stride_h=1, fused_activation_function=0,
                        dilation_w_factor=1, dilation_h_factor=1)
        elif op == "FULLY_CONNECTED":
            n, units = (int(v) for v in rng.integers(1, 6, size=2))
            shape, computed = (1, n), (1, units)
            x = Tensor("x", shape, np.int8, quant=Q)
            extra = [Tensor("w", (units, n), np.int8, data=_ints(rng, (units, n)), quant=Q)]
            ins, opts = [x], dict(fused_activation_function=0, keep_num_dims=False, weights_format=0)
        elif op == "CONCATENATION":
            shape = (1, int(rng.integers(1, 5)))
            computed = (1, 2 * shape[1])
            x, x2 = Tensor("x", shape, np.int8, quant=Q), Tensor("x2", shape, np.int8, quant=Q)
            ins, extra, opts = [x, x2], [], dict(axis=1, fused_activation_function=0)
        else:  # RELU, SOFTMAX
            shape = tuple(int(d) for d in rng.integers(1, 5, size=2))
            computed = shape
            ins, extra = [Tensor("x", shape, np.int8, quant=Q)], []
            opts = dict(beta=1.0) if op == "SOFTMAX" else {}
        declared = _off_by_one(rng, computed)
        y_q = Quant(1 / 256, -128) if op == "SOFTMAX" else Q
        y = Tensor("y", declared, np.int8, quant=y_q)
        model = build_model(Model([Operator(op, ins + extra, [y], opts)], ins, [y]))
        yield Case(f"{op} declared {declared} computed {computed}", model,
                   [_ints(rng, t.shape) for t in ins],
                   f"declared with shape {declared}, but the operator computes {computed}",
                   tflm_refuses=op == "PAD")


def concatenation_cases(rng: np.random.Generator) -> Iterator[Case]:
    for i in range(CASES_PER_FAMILY):
        n = 1 + i % 16
        width = int(rng.integers(1, 4))
        xs = [Tensor(f"x{k}", (1, width), np.int8, quant=Q) for k in range(n)]
        y = Tensor("y", (1, n * width), np.int8, quant=Q)
        model = build_model(Model([Operator("CONCATENATION", xs, [y], dict(axis=1, fused_activation_function=0))],
                                  xs, [y]))
        refused = None if n <= 10 else f"has {n} inputs; TFLM concatenates at most 10"
        yield Case(f"CONCATENATION of {n}", model, [_ints(rng, (1, width)) for _ in xs], refused,
                   tflm_refuses=refused is not None)


def _window_value(rng: np.random.Generator, mode: int) -> int:
    """Mode 0: ordinary values; 1: around TFLM's int16 limit; 2: anything up to 2^31 - 1."""
    if mode == 0 or rng.random() < 0.25:
        return int(rng.integers(1, 4))
    if mode == 1:
        return int(rng.choice([2**14, INT16_MAX - 1, INT16_MAX, INT16_MAX + 1, 2**16]))
    kind = int(rng.integers(3))
    if kind == 0:
        return INT32_MAX - int(rng.integers(0, 8))
    if kind == 1:
        return 2 ** int(rng.integers(8, 31)) - int(rng.integers(0, 2))
    return int(rng.integers(1, INT32_MAX))


def _out(size: int, k: int, stride: int, dilation: int, same: bool) -> tuple[int, int] | None:
    """(output size, padding before), or None when a step of TFLM's int32 window arithmetic
    (`padding.h`) overflows."""
    effective = (k - 1) * dilation + 1
    numerator = size + stride - 1 if same else size - effective + stride
    out = numerator // stride
    total = (out - 1) * stride + effective - size
    if max(effective, numerator, abs(total), (out - 1) * stride) > INT32_MAX:
        return None
    return out, max(total, 0) // 2


def window_cases(rng: np.random.Generator) -> Iterator[Case]:
    for i in range(CASES_PER_FAMILY):
        op = "CONV_2D" if i % 2 == 0 else "DEPTHWISE_CONV_2D"
        h, w, c = (int(v) for v in rng.integers(1, 7, size=3))
        kh, kw = (int(v) for v in rng.integers(1, 4, size=2))
        sh, sw, dh, dw = (_window_value(rng, i % 3) for _ in range(4))
        same = bool(rng.integers(2))
        rows, cols = _out(h, kh, sh, dh, same), _out(w, kw, sw, dw, same)
        overflow = rows is None or cols is None
        (oh, pad_top), (ow, pad_left) = rows or (1, 0), cols or (1, 0)
        x = Tensor("x", (1, h, w, c), np.int8, quant=Q)
        f_shape = (2, kh, kw, c) if op == "CONV_2D" else (1, kh, kw, c)
        f = Tensor("w", f_shape, np.int8, data=_ints(rng, f_shape), quant=Q)
        opts = dict(padding=0 if same else 1, stride_w=sw, stride_h=sh, fused_activation_function=0,
                    dilation_w_factor=dw, dilation_h_factor=dh)
        if op == "DEPTHWISE_CONV_2D":
            opts["depth_multiplier"] = 1
        out_c = 2 if op == "CONV_2D" else c
        declared = (1, max(oh, 1), max(ow, 1), out_c)
        if overflow:
            refused: str | None = "overflow TFLM's int32 window arithmetic"
        elif oh < 1 or ow < 1:
            refused = "does not fit"
        elif max(sh, sw, dh, dw, pad_top, pad_left) > INT16_MAX:
            refused = "exceed the int16 fields of TFLM's ConvParams"
        else:
            refused = None
        y = Tensor("y", declared, np.int8, quant=Quant(1.0, 0))
        model = build_model(Model([Operator(op, [x, f], [y], opts)], [x], [y]))
        yield Case(f"{op} {h}x{w} k{kh}x{kw} s{sh},{sw} d{dh},{dw} {'SAME' if same else 'VALID'}", model,
                   [_ints(rng, (1, h, w, c))], refused)


def pad_size_cases(rng: np.random.Generator) -> Iterator[Case]:
    for i in range(CASES_PER_FAMILY):
        dtype = np.int64 if i % 2 else np.int32
        top = INT32_MAX if dtype == np.int32 else 2 ** int(rng.integers(31, 63))
        big = int(top - rng.integers(0, 4))
        pairs = np.array([[0, 0], [big, int(rng.integers(0, big))]], dtype)
        x, y = Tensor("x", (1, 3), np.int8, quant=Q), Tensor("y", (1, 3), np.int8, quant=Q)
        p = Tensor("p", (2, 2), dtype, data=pairs)
        model = build_model(Model([Operator("PAD", [x, p], [y])], [x], [y]))
        yield Case(f"PAD {pairs.tolist()} {np.dtype(dtype).name}", model, [_ints(rng, (1, 3))],
                   "beyond TFLM's int32 dimensions")


def constant_input_cases(rng: np.random.Generator) -> Iterator[Case]:
    for _ in range(min(CASES_PER_FAMILY, 5)):
        shape = tuple(int(d) for d in rng.integers(1, 5, size=2))
        x, y = Tensor("x", shape, np.int8, quant=Q), Tensor("y", shape, np.int8, quant=Q)
        c = Tensor("c", shape, np.int8, quant=Q, data=_ints(rng, shape))
        model = build_model(Model([Operator("ADD", [x, c], [y], dict(fused_activation_function=0))], [x], [y]))
        yield Case(f"ADD with constant input {shape}", with_graph_input(model, 0, 1), [_ints(rng, shape)],
                   "is backed by a constant buffer")


FAMILIES: dict[str, Callable[[np.random.Generator], Iterator[Case]]] = {
    "declared_shape": declared_shape_cases,
    "concatenation": concatenation_cases,
    "window": window_cases,
    "pad_size": pad_size_cases,
    "constant_input": constant_input_cases,
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_hostile_graphs_give_a_typed_error_or_equal_tflm(family: str) -> None:
    rng = np.random.default_rng(sum(map(ord, family)))
    counts = {"refused": 0, "ran": 0}
    for case in FAMILIES[family](rng):
        if case.refused is None:
            assert_matches_tflm(case.model, case.inputs)
            counts["ran"] += 1
            continue
        with pytest.raises(TinySwapError) as info:
            Interpreter(model_content=case.model).allocate_tensors()
        message = str(info.value)
        assert case.refused in message, f"{case.name}: {message}"
        assert message.startswith("operator 0 (") or "graph input" in message, f"{case.name}: {message}"
        if case.tflm_refuses:
            with pytest.raises(RuntimeError):
                run_tflm(case.model, case.inputs)
        counts["refused"] += 1
    assert counts["refused"] > 0
    print(f"\n{family}: {counts}")
