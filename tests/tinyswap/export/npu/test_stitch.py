"""The stitched model: Vela's operators verbatim, each segment in its own arena window."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ethosu.vela")

from tinyswap.export.npu.config import NpuConfig  # noqa: E402
from tinyswap.export.npu.errors import StitchError  # noqa: E402
from tinyswap.export.npu.stitch import OFFLINE_PLAN, npu_operator  # noqa: E402
from tinyswap.export.npu.vela import VelaRun  # noqa: E402
from tinyswap.export.tflite_builder import build_model  # noqa: E402
from tinyswap.reader import read_model  # noqa: E402

from tests.npu_cases import MODELS, npu_bundle  # noqa: E402


@pytest.mark.parametrize("name", list(MODELS))
def test_each_segment_has_its_own_window_and_vela_s_offsets_inside_it(name):
    b = npu_bundle(name)
    parsed = read_model(b.data)
    plan = np.frombuffer(bytes(parsed.metadata_bytes(OFFLINE_PLAN)), "<i4")
    assert list(plan[:3]) == [0, 1, len(parsed.main.tensors)]
    index = {t.name: t.index for t in parsed.main.tensors}
    windows = []
    for n, start in zip(b.operators, b.windows.starts):
        vela = read_model(n.run.output)
        vela_plan = np.frombuffer(bytes(vela.metadata_bytes(OFFLINE_PLAN)), "<i4")
        for t in vela.main.tensors:
            if vela_plan[3 + t.index] < 0:
                continue
            mine = t.name if t.name in index else f"npu{n.segment.index}/{t.name}"
            assert plan[3 + index[mine]] == start + vela_plan[3 + t.index]
        windows.append((start, start + n.window))
    assert all(a[1] <= b_[0] for a, b_ in zip(windows, windows[1:]))  # disjoint, in order
    # Every tensor no segment planned is left to TFLite Micro's online planner.
    planned = {index[t.name] for n in b.operators for t, _ in n.offsets}
    assert all(plan[3 + i] == -1 for i in range(len(index)) if i not in planned)


@pytest.mark.parametrize("config", [c.value for c in NpuConfig])
def test_every_configuration_stitches_with_vela_s_operator_verbatim(config):
    b = npu_bundle("digits-cnn", config)
    stitched = read_model(b.data)
    customs = [op for op in stitched.main.operators if op.op_name == "CUSTOM:ethos-u"]
    assert len(customs) == len(b.operators) == 4
    for op, n in zip(customs, b.operators):
        vela = read_model(n.run.output)
        (theirs,) = vela.main.operators
        lo, length = op.custom_options_span
        vlo, vlength = theirs.custom_options_span
        assert b.data[lo : lo + length] == n.run.output[vlo : vlo + vlength]
        # Same tensors in the same input positions (scratch shared as Vela shares it).
        names = [stitched.main.tensors[i].name.removeprefix(f"npu{n.segment.index}/") for i in op.inputs]
        assert names == [vela.main.tensors[i].name for i in theirs.inputs]


def test_output_that_is_not_one_ethos_u_operator_is_refused():
    b = npu_bundle("digits-cnn")
    seg = b.operators[0].segment
    builtin = build_model(seg.model())  # what Vela would return had it placed nothing on the NPU
    fake = VelaRun(b.config, "0" * 64, builtin, b.operators[0].run.summary, 0, 1, "test")
    with pytest.raises(StitchError, match="not one ethos-u operator"):
        npu_operator(seg, fake)
