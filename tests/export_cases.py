"""Helpers the import tests share: a bundle's outputs with every slot switched off, and random
slot bytes checked against TFLite Micro."""

from __future__ import annotations

import numpy as np

from tinyswap import Interpreter
from tinyswap.oracles import run_tflm, tflm_interpreter
from tinyswap.quantize import quantize_int8

from tests.tinyswap.export.test_compiler import patch_random_slots, random_inputs


def gates_off_outputs(built, x: np.ndarray) -> np.ndarray:
    """Our interpreter on an exported bundle, real rows `x` quantized to its input, every gate
    at int8 -128 (gate 0.0), one row at a time (the bundles' batch is 1)."""
    interp = Interpreter(model_content=built.data)
    interp.allocate_tensors()
    details = interp.get_input_details()
    q = built.compiled.input_quant
    rows = []
    for row in x:
        interp.set_tensor(details[0]["index"], quantize_int8(row[None], q.scale, q.zero_point))
        for gate in details[1:]:
            interp.set_tensor(gate["index"], np.full(gate["shape"], -128, np.int8))
        interp.invoke()
        rows.append(interp.get_tensor(interp.get_output_details()[0]["index"])[0].copy())
    return np.array(rows)


def tflm_gates_off_outputs(built, x: np.ndarray) -> np.ndarray:
    """`gates_off_outputs` run by TFLite Micro (the golden, and a tenth of our interpreter's time
    per row), for accuracy over many held-out rows."""
    interp = tflm_interpreter(built.data)
    q = built.compiled.input_quant
    gates = [np.full(g.shape, -128, np.int8) for g in built.compiled.gates]
    rows = []
    for row in x:
        for i, value in enumerate([quantize_int8(row[None], q.scale, q.zero_point), *gates]):
            interp.set_input(value, i)
        interp.invoke()
        rows.append(np.array(interp.get_output(0)[0], copy=True))
    return np.array(rows)


def check_random_slot_bytes(built, seed: int) -> None:
    """Random bytes in every slot tensor and random inputs and gates: our interpreter's output
    equals TFLite Micro's byte for byte."""
    rng = np.random.default_rng(seed)
    data = bytearray(built.data)
    patch_random_slots(data, built.slotmap, rng)
    inputs = random_inputs(built.compiled, rng)
    interp = Interpreter(model_content=bytes(data))
    interp.allocate_tensors()
    for detail, x in zip(interp.get_input_details(), inputs):
        interp.set_tensor(detail["index"], x)
    interp.invoke()
    ours = interp.get_tensor(interp.get_output_details()[0]["index"])
    np.testing.assert_array_equal(ours, run_tflm(bytes(data), inputs)[0])
