"""The IF operator (TFLM `kernels/if.cc`): branch choice, copies in and out, and the checks
TFLite Micro makes at prepare and at invoke; cyclic files end with an error."""

from __future__ import annotations

import numpy as np
import pytest

from tinyswap import Interpreter
from tinyswap.errors import InterpreterError, ModelError
from tinyswap.export.errors import GraphError
from tinyswap.export.tflite_builder import Model, Operator, Quant, Subgraph, Tensor, build_model
from tinyswap.oracles import run_tflm

Q = Quant(np.float32(0.05), -3)
GQ = Quant(np.float32(1 / 255), -128)


def _if_model(else_inputs: int = 2, cond_shape=(1, 1), cond_dtype=np.bool_) -> bytes:
    """y = IF(gate > off, then: x + w, else: x). The else-subgraph takes `else_inputs` inputs."""
    x, g = Tensor("x", (1, 4), np.int8, quant=Q), Tensor("g", (1, 1), np.int8, quant=GQ)
    off = Tensor("off", (1, 1), np.int8, data=np.full((1, 1), -128, np.int8), quant=GQ)
    y = Tensor("y", (1, 4), np.int8, quant=Q)
    ops = []
    if cond_dtype == np.bool_ and cond_shape == (1, 1):
        c = Tensor("c", cond_shape, np.bool_)
        ops.append(Operator("GREATER", [g, off], [c]))
    else:  # a condition TFLM refuses, fed straight from a graph input
        c = Tensor("c", cond_shape, cond_dtype, quant=GQ if cond_dtype == np.int8 else None)
    tx, tg = Tensor("t/x", (1, 4), np.int8, quant=Q), Tensor("t/g", (1, 1), np.int8, quant=GQ)
    w = Tensor("t/w", (1, 4), np.int8, data=np.array([[5, -7, 9, 100]], np.int8), quant=Q)
    ty = Tensor("t/y", (1, 4), np.int8, quant=Q)
    then = Subgraph([Operator("ADD", [tx, w], [ty], {"fused_activation_function": 0})], [tx, tg], [ty])
    ein = [Tensor("e/x", (1, 4), np.int8, quant=Q), Tensor("e/g", (1, 1), np.int8, quant=GQ)][:else_inputs]
    ops.append(Operator("IF", [c, x, g], [y], {"then_subgraph_index": 1, "else_subgraph_index": 2}))
    inputs = [x, g] if c.name in {t.name for op in ops for t in op.outputs} else [x, g, c]
    return build_model(Model(ops, inputs, [y], subgraphs=[then, Subgraph([], ein, ein[:1])]))


X = np.array([[1, -50, 20, 60]], np.int8)


@pytest.mark.parametrize("gate", [-128, -127, 0, 127])
def test_branch_choice_and_copies_match_tflite_micro(gate) -> None:
    model = _if_model()
    inputs = [X, np.array([[gate]], np.int8)]
    ours = Interpreter(model_content=model).run(*inputs)[0]
    np.testing.assert_array_equal(ours, run_tflm(model, inputs)[0])
    expected = X if gate == -128 else np.clip(X.astype(np.int32) + [[5 + 3, -7 + 3, 9 + 3, 100 + 3]], -128, 127)
    np.testing.assert_array_equal(ours, expected)  # x + w in one quantization: q_x + q_w - zp


def test_one_interpreter_switching_branches_invoke_after_invoke_matches_tflite_micro() -> None:
    # The plan binds each branch's copies the first time it is taken: later invokes of the same
    # interpreter, with new inputs and the gate flipping, must still copy the current bytes.
    model = _if_model()
    ours = Interpreter(model_content=model)
    rng = np.random.default_rng(3)
    for gate in (-128, 0, 0, -128, -128, 127, -128, 5):
        inputs = [rng.integers(-128, 128, (1, 4)).astype(np.int8), np.array([[gate]], np.int8)]
        np.testing.assert_array_equal(ours.run(*inputs)[0], run_tflm(model, inputs)[0])


def test_an_else_branch_with_other_inputs_fails_when_taken_as_in_tflite_micro() -> None:
    model = _if_model(else_inputs=1)
    on = [X, np.array([[0]], np.int8)]
    off = [X, np.array([[-128]], np.int8)]
    np.testing.assert_array_equal(Interpreter(model_content=model).run(*on)[0], run_tflm(model, on)[0])
    with pytest.raises(InterpreterError, match="subgraph 2 has 1 inputs, the operator passes 2"):
        Interpreter(model_content=model).run(*off)
    switching = Interpreter(model_content=model)  # the then-branch bound first, then the bad one taken
    switching.run(*on)
    switching.run(*on)
    for _ in range(2):
        with pytest.raises(InterpreterError, match="subgraph 2 has 1 inputs"):
            switching.run(*off)
    np.testing.assert_array_equal(switching.run(*on)[0], run_tflm(model, on)[0])
    with pytest.raises(RuntimeError):
        run_tflm(model, off)


@pytest.mark.parametrize("shape, dtype", [((1, 2), np.bool_), ((1, 1), np.int8)])
def test_the_condition_must_be_one_bool(shape, dtype) -> None:
    model = _if_model(cond_shape=shape, cond_dtype=dtype)
    with pytest.raises(ModelError, match="condition .* must be a bool tensor of one element"):
        Interpreter(model_content=model).allocate_tensors()


def test_subgraph_references_are_checked() -> None:
    x = Tensor("x", (1,), np.bool_)
    y = Tensor("y", (1,), np.bool_)
    with pytest.raises(GraphError, match="then_subgraph_index 0 names no other subgraph"):
        build_model(Model([Operator("IF", [x, x], [y], {"then_subgraph_index": 0, "else_subgraph_index": 0})],
                          [x], [y]))


def test_ifs_that_call_each_other_end_with_an_error() -> None:
    """Subgraph 1 runs subgraph 2 runs subgraph 1 ...: TFLM would recurse until the stack ends."""
    def sub(k: int, other: int) -> Subgraph:
        c, v, o = Tensor(f"s{k}/c", (1,), np.bool_), Tensor(f"s{k}/v", (1,), np.bool_), Tensor(f"s{k}/o", (1,), np.bool_)
        return Subgraph([Operator("IF", [c, c, v], [o], {"then_subgraph_index": other, "else_subgraph_index": other})],
                        [c, v], [o])
    c, y = Tensor("c", (1,), np.bool_), Tensor("y", (1,), np.bool_)
    model = build_model(Model([Operator("IF", [c, c, c], [y], {"then_subgraph_index": 1, "else_subgraph_index": 1})],
                              [c], [y], subgraphs=[sub(1, 2), sub(2, 1)]))
    with pytest.raises(ModelError, match="call each other in a cycle"):
        Interpreter(model_content=model).run(np.array([True]))
