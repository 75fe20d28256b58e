"""Vela's cost figures for an NPU bundle, the base alone and the recompile-per-adapter model."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ethosu.vela")

from tinyswap.export.npu.cost import npu_cost, with_dense_adapter  # noqa: E402

from tests.npu_cases import base_only, npu_bundle, source  # noqa: E402


def test_dense_adapter_fills_slot_0_int8_tensors_only():
    compiled = source("digits-cnn")
    data = with_dense_adapter(compiled)
    changed = np.flatnonzero(np.frombuffer(data, np.uint8) != np.frombuffer(compiled.data, np.uint8))
    spans = [compiled.built.buffer_ranges[st.tensor] for st in compiled.slot_tensors
             if st.slot == 0 and np.dtype(st.tensor.dtype) == np.int8]
    assert changed.size > 0.9 * sum(n for _, n in spans)  # random int8: about 1/256 equal by chance
    assert all(any(o <= i < o + n for o, n in spans) for i in changed)


@pytest.mark.parametrize("name", ["digits-cnn", "examples-cnn"])
def test_the_bundle_keeps_the_base_weights_and_the_recompiled_model_computes_every_slot(name):
    cost = npu_cost(npu_bundle(name), base_only(name))
    segments = cost.bundle.operators
    # Vela encodes exactly the base's weights, no more: the same compressed bytes as the base alone.
    assert sum(n.run.summary.encoded_weight_bytes for n in segments) == cost.base.summary.encoded_weight_bytes
    assert cost.segments_macs == cost.base.summary.macs
    # Recompiled with an adapter, every slot is on the NPU: more MACs, more weights, more cycles.
    assert cost.recompiled.cpu_operators == 0
    assert cost.recompiled.summary.macs > cost.base.summary.macs
    assert cost.recompiled.summary.encoded_weight_bytes > cost.base.summary.encoded_weight_bytes
    assert cost.recompiled.summary.cycles_npu > cost.segments_cycles_npu
    assert cost.slot_bytes == cost.bundle.source.plan.alignment  # these slots fit one 4 KiB sector
    assert cost.windows_bytes == sum(n.window for n in segments)
