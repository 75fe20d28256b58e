"""What one inference costs a model: multiply-accumulates and the constant bytes it streams.

Why: `profiles.estimate_inference_seconds` turns MACs and weight bytes into seconds for a
device profile; the device needs the two numbers for the model it runs. They are read from
the `.tflite` graph (tensor shapes, operator kinds), so the slot branches compiled into the
model are included: a static graph computes them whatever the gates say.

MAC counts follow the usual definition (one per weight use):
CONV_2D: output elements x kernel height x kernel width x input channels;
DEPTHWISE_CONV_2D: output elements x kernel height x kernel width;
FULLY_CONNECTED / BATCH_MATMUL: output elements x reduction length.
Other operators (element-wise, pooling, softmax) are not counted as MACs; they are covered by
the per-MAC overhead folded into the CMSIS-NN cycles-per-MAC figure (`profiles.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyswap.reader import read_model


@dataclass(frozen=True)
class ModelCost:
    macs_per_row: int
    weight_bytes: int  # constant bytes one inference reads (all constant buffers)
    per_op: tuple[tuple[str, int], ...]  # (operator name, MACs) in graph order


def model_cost(model: bytes | bytearray | memoryview) -> ModelCost:
    """MACs of one row (batch 1) and constant bytes of a `.tflite` model."""
    m = read_model(model)
    g = m.main
    shapes = {t.index: t.shape for t in g.tensors}
    per_op: list[tuple[str, int]] = []
    for op in g.operators:
        out = shapes.get(op.outputs[0], ()) if op.outputs else ()
        out_elems = int(np.prod(out[1:], dtype=np.int64)) if len(out) > 1 else int(np.prod(out, dtype=np.int64))
        macs = 0
        if op.op_name == "CONV_2D":
            w = shapes[op.inputs[1]]  # [out_c, kh, kw, in_c]
            macs = out_elems * w[1] * w[2] * w[3]
        elif op.op_name == "DEPTHWISE_CONV_2D":
            w = shapes[op.inputs[1]]  # [1, kh, kw, out_c]
            macs = out_elems * w[1] * w[2]
        elif op.op_name == "FULLY_CONNECTED":
            w = shapes[op.inputs[1]]  # [out, in]
            macs = out_elems * w[-1]
        elif op.op_name == "BATCH_MATMUL":
            a = shapes[op.inputs[0]]
            adj_x = bool(op.options.get("adj_x", False))
            macs = out_elems * (a[-2] if adj_x else a[-1])
        per_op.append((op.op_name, int(macs)))
    weight_bytes = sum(b.length for b in m.buffers)
    return ModelCost(sum(n for _, n in per_op), int(weight_bytes), tuple(per_op))


__all__ = ["ModelCost", "model_cost"]
