"""A float PyTorch mirror of an int8 `.tflite`, for training PEFT LoRA adapters on the very base
that slot injection keeps.

Weighted operators become `nn.Linear` / `nn.Conv2d` modules (`layers.op<index>`, frozen) holding
the weights `tinyswap.export.inject.base_weights` dequantized from the file; every other operator
is evaluated in float. Each int8 tensor's value is clamped to the real range its quantization can
hold, so the float model saturates where the int8 graph does (as the slot's last ADD clamps the
adapted pre-activation to the output's range). Activations stay NHWC as in the file; convolutions
pad the way TensorFlow's SAME does (the extra row and column after, not before).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tinyswap.export.inject import LORA_OPS, base_weights
from tinyswap.kernels.resize_nearest_neighbor import nearest_indices
from tinyswap.reader import read_model


def _same_pad(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class TfliteMirror(nn.Module):
    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.md = read_model(data)
        sg = self.md.main
        self.sg = sg
        self.layers = nn.ModuleDict()
        self.consts: dict[int, torch.Tensor] = {}
        for t in sg.tensors:
            raw = self.md.tensor_data(t)
            if raw is not None:
                value = raw.astype(np.float64)
                if t.quantization is not None and t.quantization.scale.size == 1:
                    value = (value - float(t.quantization.zero_point[0])) * float(t.quantization.scale[0])
                self.consts[t.index] = torch.tensor(value, dtype=torch.float32)
        for op in sg.operators:
            if op.op_name not in LORA_OPS:
                continue
            w = base_weights(data, f"#{op.index}")
            k = torch.tensor(w.kernel, dtype=torch.float32)
            b = None if w.bias is None else torch.tensor(w.bias, dtype=torch.float32)
            if op.op_name == "FULLY_CONNECTED":
                module: nn.Module = nn.Linear(k.shape[1], k.shape[0], bias=b is not None)
                module.weight.data = k
            else:
                o = op.options
                stride = (int(o["stride_h"]), int(o["stride_w"]))
                dilation = (int(o["dilation_h_factor"]), int(o["dilation_w_factor"]))
                if op.op_name == "CONV_2D":
                    module = nn.Conv2d(k.shape[3], k.shape[0], tuple(k.shape[1:3]), stride, 0, dilation, bias=b is not None)
                    module.weight.data = k.permute(0, 3, 1, 2).contiguous()
                else:
                    channels = sg.tensors[op.inputs[0]].shape[3]
                    module = nn.Conv2d(channels, k.shape[3], tuple(k.shape[1:3]), stride, 0, dilation,
                                       groups=channels, bias=b is not None)
                    module.weight.data = k[0].permute(2, 0, 1)[:, None].contiguous()
            if b is not None:
                module.bias.data = b
            module.requires_grad_(False)
            self.layers[f"op{op.index}"] = module

    def _clamp(self, index: int, value: torch.Tensor) -> torch.Tensor:
        t = self.sg.tensors[index]
        q = t.quantization
        if q is None or t.dtype != np.int8 or q.scale.size != 1:
            return value
        scale, zp = float(q.scale[0]), int(q.zero_point[0])
        return value.clamp(scale * (-128 - zp), scale * (127 - zp))

    def _value(self, values: dict[int, torch.Tensor], index: int) -> torch.Tensor:
        return values[index] if index in values else self.consts[index]

    @staticmethod
    def _activate(value: torch.Tensor, code: int) -> torch.Tensor:
        if code == 1:
            return F.relu(value)
        if code == 3:
            return value.clamp(0.0, 6.0)
        assert code == 0, f"fused activation {code}"
        return value

    def forward(self, x: torch.Tensor, logits: bool = False) -> torch.Tensor:
        """`x`: the input's real values (the int8 input dequantized), batch first. `logits`: stop
        before a final SOFTMAX (what a cross-entropy loss wants)."""
        sg = self.sg
        values = {sg.inputs[0]: x}
        for op in sg.operators:
            name, o = op.op_name, op.options
            if logits and name == "SOFTMAX" and op.outputs[0] in sg.outputs:
                return values[op.inputs[0]]
            a = self._value(values, op.inputs[0])
            act = int(o.get("fused_activation_function", 0))
            if name == "FULLY_CONNECTED":
                y = self._activate(self.layers[f"op{op.index}"](a.reshape(-1, self.consts[op.inputs[1]].shape[1])), act)
            elif name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                module = self.layers[f"op{op.index}"]
                h = a.permute(0, 3, 1, 2)
                if int(o["padding"]) == 0:  # SAME
                    conv = getattr(module, "base_layer", module)  # PEFT wraps the Conv2d
                    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
                    top, bottom = _same_pad(h.shape[2], kh, sh, dh)
                    left, right = _same_pad(h.shape[3], kw, sw, dw)
                    h = F.pad(h, (left, right, top, bottom))
                y = self._activate(module(h).permute(0, 2, 3, 1), act)
            elif name in ("ADD", "SUB", "MUL"):
                b = self._value(values, op.inputs[1])
                y = self._activate(a + b if name == "ADD" else a - b if name == "SUB" else a * b, act)
            elif name == "MEAN":
                axes = [int(v) for v in self.md.tensor_data(sg.tensors[op.inputs[1]]).reshape(-1)]
                y = a.mean(dim=axes, keepdim=bool(o.get("keep_dims", False)))
            elif name == "RESHAPE":
                y = a.reshape(-1, *sg.tensors[op.outputs[0]].shape[1:])
            elif name == "RESIZE_NEAREST_NEIGHBOR":
                height, width = (int(v) for v in self.md.tensor_data(sg.tensors[op.inputs[1]]))
                align, half = bool(o.get("align_corners")), bool(o.get("half_pixel_centers"))
                rows = torch.tensor(nearest_indices(a.shape[1], height, align, half))
                cols = torch.tensor(nearest_indices(a.shape[2], width, align, half))
                y = a[:, rows][:, :, cols]
            elif name == "SOFTMAX":
                y = torch.softmax(a * float(o.get("beta", 1.0)), dim=-1)
            elif name == "LOGISTIC":
                y = torch.sigmoid(a)
            elif name == "RELU":
                y = F.relu(a)
            elif name in ("QUANTIZE", "DEQUANTIZE"):
                y = a
            else:
                raise NotImplementedError(f"mirror has no {name}")
            values[op.outputs[0]] = self._clamp(op.outputs[0], y)
        return values[sg.outputs[0]]
