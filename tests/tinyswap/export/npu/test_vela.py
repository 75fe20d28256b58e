"""The Vela driver: one compile per input and configuration, Vela's failures as typed errors."""

from __future__ import annotations

import pytest

pytest.importorskip("ethosu.vela")

from tinyswap.export.npu.config import NpuConfig  # noqa: E402
from tinyswap.export.npu.errors import VelaCompileError  # noqa: E402
from tinyswap.export.npu.vela import compile_with_vela, vela_version  # noqa: E402
from tinyswap.export.tflite_builder import build_model  # noqa: E402

from tests.npu_cases import npu_bundle  # noqa: E402


def test_a_segment_compiles_once_per_configuration_and_reports_vela_s_figures():
    b = npu_bundle("digits-cnn")
    segment = build_model(b.operators[1].segment.model())  # conv2: 8x8x8 -> 8x8x16, 3x3
    run = compile_with_vela(segment, NpuConfig.U55_128, "conv2")
    assert run is compile_with_vela(segment, NpuConfig.U55_128, "other-name")  # cached by digest
    assert run.version == vela_version() and run.npu_operators == 1 and run.cpu_operators == 0
    assert run.summary.macs == 8 * 8 * 16 * 3 * 3 * 8  # Vela's count equals the convolution's
    assert run.summary.cycles_npu > 0 and run.summary.system_config.startswith("Ethos_U55")
    assert compile_with_vela(segment, NpuConfig.U85_256, "conv2").summary.system_config.startswith("Ethos_U85")


def test_bytes_that_are_no_model_are_a_typed_error_with_vela_s_words():
    with pytest.raises(VelaCompileError, match="Vela .* failed|exited"):
        compile_with_vela(b"TFL3 but not a model" * 4, NpuConfig.U55_128, "junk")
