"""The compiler's errors live beside it (`tinyswap.export.errors`), all under `ExportError` and
`TinySwapError`; the modules that raise them still export them under their old names."""

from __future__ import annotations

import pytest

import tinyswap
import tinyswap.errors
from tinyswap.errors import TinySwapError
from tinyswap.export import adapter_quant, adapter_source, errors, pack, slot_plan, spec, tflite_builder, tflite_graph

from tests.conftest import REPO

RAISED_BY = {
    "SpecError": spec, "SlotPlanError": slot_plan, "AdapterSourceError": adapter_source,
    "AdapterQuantError": adapter_quant, "PackError": pack, "BuilderError": tflite_builder,
    "GraphError": tflite_builder, "OptionError": tflite_graph, "LayoutError": tflite_builder,
}


@pytest.mark.parametrize("name", sorted(RAISED_BY))
def test_every_compiler_error_is_an_export_error_importable_where_it_is_raised(name: str) -> None:
    cls = getattr(errors, name)
    assert issubclass(cls, errors.ExportError) and issubclass(cls, TinySwapError)
    assert getattr(RAISED_BY[name], name) is cls
    assert cls.__module__ == "tinyswap.export.errors"


def test_the_builders_errors_keep_their_hierarchy() -> None:
    for cls in (errors.GraphError, errors.OptionError, errors.LayoutError):
        assert issubclass(cls, errors.BuilderError)


def test_the_runtime_error_module_holds_no_compiler_error() -> None:
    # The runtime never raises them, and it must not depend on the compiler.
    for name in (*RAISED_BY, "ExportError"):
        assert not hasattr(tinyswap.errors, name) and not hasattr(tinyswap, name), name


def test_a_refusal_reaches_the_command_line_as_a_tinyswap_error(tmp_path, capsys) -> None:
    from tinyswap.cli import main

    bad = tmp_path / "plan.json"
    bad.write_text('{"num_slots": 1, "targets": [{"layer": "fc1", "kind": "lora", "max_rank": 4}]}')
    spec = REPO / "models" / "examples" / "mlp.json"
    assert main(["export", str(spec), "--plan", str(bad), "-o", str(tmp_path / "o")]) == 2  # a SlotPlanError
    err = capsys.readouterr().err
    assert err.startswith("tinyswap: error:") and "num_slots" in err
    assert not (tmp_path / "o").exists()
